from __future__ import annotations

import pytest

from demobank.connect.recipients import as_list, invalid_email_addresses, invalid_phone_numbers, mask_email, mask_phone


def test_masks_match_the_documented_form() -> None:
    assert mask_phone("+15551234567") == "+1******4567"
    assert mask_email("jane.doe@example.com") == "j***@example.com"
    assert mask_phone("123") == "***"


@pytest.mark.parametrize("number", ["+15551234567", "+447911123456", "+4915112345678"])
def test_valid_e164(number: str) -> None:
    assert invalid_phone_numbers([number]) == []


@pytest.mark.parametrize("number", ["15551234567", "+1555", "+0123456789", "+1 555 123 4567", "phone", ""])
def test_invalid_e164_is_reported_masked(number: str) -> None:
    bad = invalid_phone_numbers([number])
    assert len(bad) == 1
    if len(number) > 6:
        assert number not in bad[0] and "*" in bad[0]


def test_invalid_emails() -> None:
    assert invalid_email_addresses(["a@example.com", "x@y", "no-at.example.com"]) == ["x***@y", "n***"]


def test_as_list_accepts_strings_lists_and_commas() -> None:
    assert as_list("+15551234567, +15557654321") == ["+15551234567", "+15557654321"]
    assert as_list(["a@x.com", " ", "b@x.com "]) == ["a@x.com", "b@x.com"]
    assert as_list(None) == []
