"""Recipients: validation (E.164 numbers, e-mail addresses); the masks used wherever they are logged are in
:mod:`demobank.masking` (re-exported here for the workflow steps).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from demobank.masking import mask, mask_email, mask_phone, scrub

__all__ = ["E164", "EMAIL", "MAX_SMS_BODY", "as_list", "invalid_email_addresses", "invalid_phone_numbers", "mask",
           "mask_email", "mask_phone", "scrub"]

E164 = re.compile(r"^\+[1-9]\d{7,14}$")
# Deliberately plain: one @, a dot in the domain, no spaces. SendGrid does the final check.
EMAIL = re.compile(r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
                   r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+$")
MAX_SMS_BODY = 1600
"""Twilio refuses longer bodies (error 21617)."""


def as_list(value: str | Iterable[str] | None) -> list[str]:
    """One recipient, a comma-separated string or an iterable of recipients, as a clean list."""
    if value is None:
        return []
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return [str(part).strip() for part in value if str(part).strip()]


def invalid_phone_numbers(numbers: Iterable[str]) -> list[str]:
    """The numbers that are not E.164, masked, in order."""
    return [mask_phone(n) for n in numbers if not isinstance(n, str) or not E164.match(n)]


def invalid_email_addresses(addresses: Iterable[str]) -> list[str]:
    """The addresses that are not valid, masked, in order."""
    return [mask_email(a) for a in addresses if not isinstance(a, str) or len(a) > 320 or not EMAIL.match(a)]
