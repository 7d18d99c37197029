"""Masks and the scrubbing of provider error texts: no full phone number or e-mail address gets through."""

from __future__ import annotations

import pytest

from demobank.masking import mask, mask_email, mask_phone, scrub


def test_masks_keep_only_what_identifies_nobody() -> None:
    assert mask_phone("+15551234567") == "+1******4567"
    assert mask_email("jane.doe@example.com") == "j***@example.com"
    assert mask("+15551234567") == "+1******4567" and mask("a@b.example") == "a***@b.example"


@pytest.mark.parametrize(("text", "hidden", "shown"), [
    ("'To' and 'From' number cannot be the same: +15005550006", "+15005550006", "+1******0006"),
    ("The 'To' number 4155550142123 is not a valid phone number.", "4155550142123", "41*******2123"),
    ("personalizations.0.to.0.email: Does not contain a valid address (jane.doe@example.com)", "jane.doe@example.com",
     "j***@example.com"),
    ("bounced: <Jane.Doe+alerts@Mail.Example.co.uk>", "Jane.Doe+alerts@Mail.Example.co.uk", "J***@Mail.Example.co.uk"),
])
def test_scrub_masks_every_address_and_number_in_a_text(text: str, hidden: str, shown: str) -> None:
    scrubbed = scrub(text)
    assert hidden not in scrubbed and shown in scrubbed


@pytest.mark.parametrize("text", ["SendGrid HTTP 503: try again later", "Twilio error 20429 (HTTP 429)",
                                  "ReadTimeout: HTTPConnectionPool(host='127.0.0.1', port=18793): read timeout=10",
                                  "event 0190abcd-1234 at 2026-12-02T10:00:00Z"])
def test_scrub_leaves_codes_ports_ids_and_dates_alone(text: str) -> None:
    assert scrub(text) == text
