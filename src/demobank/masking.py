"""Masks for phone numbers and e-mail addresses, wherever they would be logged, stored or shown.

Logs, error messages, rendered task fields and the delivery ledger's error texts never contain a full phone
number or e-mail address: ``+1******4567``, ``j***@example.com``. Layer-free (hooks and workflow steps use it).
"""

from __future__ import annotations

import re


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


_EMAIL_IN_TEXT = re.compile(r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+")
_PHONE_IN_TEXT = re.compile(r"(?<![\w+])\+?\d{8,15}(?!\w)")


def scrub(text: str) -> str:
    """A provider's error text with every e-mail address and phone-number-like run of 8 to 15 digits masked.

    Twilio and SendGrid quote the recipient in some errors ("The 'To' number +15551234567 is not a valid phone
    number"): their texts go through this before they are logged or stored in the delivery ledger.
    """
    text = _EMAIL_IN_TEXT.sub(lambda found: mask_email(found.group()), str(text))
    return _PHONE_IN_TEXT.sub(lambda found: mask_phone(found.group()), text)
