"""Recipients: validation (E.164 numbers, e-mail addresses) and the masks used wherever they are logged.

Logs and error messages never contain a full phone number or e-mail address: ``+1******4567``,
``j***@example.com``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

E164 = re.compile(r"^\+[1-9]\d{7,14}$")
# Deliberately plain: one @, a dot in the domain, no spaces. SendGrid does the final check.
EMAIL = re.compile(r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
                   r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+$")
MAX_SMS_BODY = 1600
"""Twilio refuses longer bodies (error 21617)."""


def mask_phone(number: str) -> str:
    """``+15551234567`` → ``+1******4567``: country code's first digit and the last four digits stay."""
    number = str(number).strip()
    if len(number) <= 6:
        return "*" * len(number)
    return number[:2] + "*" * (len(number) - 6) + number[-4:]


def mask_email(address: str) -> str:
    """``jane.doe@example.com`` → ``j***@example.com``."""
    address = str(address).strip()
    local, at, domain = address.rpartition("@")
    if not at:
        return mask_phone(address) if address.startswith("+") else (address[:1] + "***" if address else "")
    return f"{local[:1]}***@{domain}"


def mask(recipient: str) -> str:
    """Mask a phone number or an e-mail address, whichever it looks like."""
    return mask_email(recipient) if "@" in str(recipient) else mask_phone(recipient)


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
