"""Transaction alerts without Airflow: conf validation (every bad field named, phone and e-mail masked), money
formatting, and the message templates of include/templates/connect rendered as Airflow renders them."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from jinja2 import FileSystemLoader, StrictUndefined
from jinja2.sandbox import SandboxedEnvironment

from demobank.connect.alerts import (
    EXPECTED,
    SUPPORTED_CURRENCIES,
    TransactionAlert,
    alert_recipient,
    format_amount,
    validate_alert_conf,
)
from tests.conftest import PROJECT_DIR

TEMPLATES = PROJECT_DIR / "include" / "templates"

GOOD: dict[str, Any] = {
    "customer_id": "CUST-00042",
    "phone": "+12025550173",
    "email": "Jane.Doe@Example.COM",
    "amount": 1234.5,
    "currency": "USD",
    "merchant": "Blue Bottle Coffee",
}

# GSM 03.38 basic character set (7-bit): a text of these fits 160 characters per SMS segment.
GSM7 = set(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿"
    "abcdefghijklmnopqrstuvwxyzäöñüà"
)


def invalid(conf: Any) -> str:
    with pytest.raises(ValueError) as raised:
        validate_alert_conf(conf)
    return str(raised.value)


# -- validation --------------------------------------------------------------------------------------------


def test_a_good_conf_gives_json_safe_template_data() -> None:
    alert = validate_alert_conf(GOOD)
    assert isinstance(alert, TransactionAlert)
    assert alert.amount == Decimal("1234.5")
    assert str(alert.email) == "Jane.Doe@example.com"  # the domain is case-insensitive: normalised
    assert alert.to_template_data() == {  # no contact details: this goes to XCom
        "customer_id": "CUST-00042",
        "amount": "1234.50",
        "currency": "USD",
        "amount_display": "USD 1,234.50",
        "merchant": "Blue Bottle Coffee",
    }


@pytest.mark.parametrize(
    ("amount", "currency", "display"),
    [
        ("12.50", "USD", "USD 12.50"),  # a string keeps money exact
        (12, "EUR", "EUR 12.00"),
        (0.01, "GBP", "GBP 0.01"),
        (1500, "JPY", "JPY 1,500"),
        (999999999999.99, "USD", "USD 999,999,999,999.99"),
    ],
)
def test_amounts_that_are_accepted(amount: Any, currency: str, display: str) -> None:
    alert = validate_alert_conf({**GOOD, "amount": amount, "currency": currency})
    assert alert.to_template_data()["amount_display"] == display


def test_surrounding_whitespace_is_ignored() -> None:
    alert = validate_alert_conf({**GOOD, "phone": " +12025550173 ", "merchant": "  Blue Bottle  "})
    assert (alert.phone, alert.merchant) == ("+12025550173", "Blue Bottle")


def test_every_bad_field_is_listed_with_its_value_and_the_expected_form() -> None:
    message = invalid(
        {
            "customer_id": "",
            "phone": "415-555-0142",
            "email": "jane.doe.example.com",
            "amount": 12.345,
            "currency": "XYZ",
            "merchant": "x" * 101,
        }
    )
    assert message.startswith("invalid transaction alert conf (6 problem(s)); fix these fields")
    lines = message.splitlines()[1:]
    assert [line.split(" ", 2)[1].rstrip(":") for line in lines] == [
        "customer_id",
        "phone",
        "email",
        "currency",
        "amount",
        "merchant",
    ]
    by_field = {line.split(" ", 2)[1].rstrip(":"): line for line in lines}
    assert "is not an E.164 number" in by_field["phone"]
    assert "e.g. +14155550142" in by_field["phone"]
    assert "valid email address" in by_field["email"]
    assert "12.345" in by_field["amount"] and "more decimal places" in by_field["amount"]
    assert "'XYZ'" in by_field["currency"] and "is not a supported ISO 4217 currency code" in by_field["currency"]
    assert "USD" in by_field["currency"]  # the accepted codes are listed
    assert "at most 100 characters" in by_field["merchant"]
    for field, line in by_field.items():
        assert f"Expected {EXPECTED[field]}." in line


def test_phone_numbers_and_email_addresses_are_masked_in_the_message() -> None:
    message = invalid({**GOOD, "phone": "+1 202 555 0173", "email": "maria.lopez@exa mple.com"})
    assert "+1 202 555 0173" not in message and "202" not in message
    assert "maria" not in message and "lopez" not in message
    assert "'+1*********0173' (masked, str)" in message
    assert "'m***@exa mple.com' (masked, str)" in message


def test_a_phone_number_sent_as_a_json_number_is_masked_too() -> None:
    message = invalid({**GOOD, "phone": 12025550173})
    assert "12025550173" not in message
    assert "(masked, int)" in message and "input should be a valid string" in message


def test_a_valid_phone_or_email_never_appears_in_a_message_about_other_fields() -> None:
    message = invalid({**GOOD, "amount": -5})
    assert GOOD["phone"] not in message and "jane" not in message.lower()
    assert message.count("\n- ") == 1 and "amount = -5: input should be greater than 0" in message


def test_missing_and_unexpected_fields() -> None:
    message = invalid({"phone": "+12025550173", "ammount": 10})
    assert "- customer_id: missing. Expected" in message
    assert "- amount: missing. Expected" in message
    assert "- ammount = 10: unexpected field. Remove it; the accepted fields are customer_id, phone" in message
    assert "(6 problem(s))" in message  # customer_id, email, currency, amount, merchant, ammount


RECORDS = {"CUST-00042": ("+14155550142", "jane.doe@example.com")}
WITHOUT_CONTACTS = {key: value for key, value in GOOD.items() if key not in ("phone", "email")}


def test_a_conf_without_contacts_takes_them_from_the_customers_record() -> None:
    alert = validate_alert_conf(WITHOUT_CONTACTS, RECORDS.get)
    assert (alert.phone, str(alert.email)) == RECORDS["CUST-00042"]
    assert validate_alert_conf({**WITHOUT_CONTACTS, "phone": None, "email": None}, RECORDS.get).phone == "+14155550142"
    # What the caller gives wins; what they leave out is looked up.
    mixed = validate_alert_conf({**WITHOUT_CONTACTS, "phone": "+12025550173"}, RECORDS.get)
    assert (mixed.phone, str(mixed.email)) == ("+12025550173", "jane.doe@example.com")


def test_a_customer_without_a_record_is_refused_with_what_to_do() -> None:
    with pytest.raises(ValueError, match="customer 'CUST-00042' has no phone and e-mail on record: add the customer"):
        validate_alert_conf(WITHOUT_CONTACTS, {}.get)


def test_a_bad_contact_on_record_is_refused_masked() -> None:
    with pytest.raises(ValueError) as raised:
        validate_alert_conf(WITHOUT_CONTACTS, {"CUST-00042": ("5550142", "jane.doe@example.com")}.get)
    assert "- phone = '55*0142' (masked, str): is not an E.164 number" in str(raised.value)


def test_alert_recipient_is_what_the_sending_tasks_render() -> None:
    assert alert_recipient(WITHOUT_CONTACTS, "phone", RECORDS.get) == "+14155550142"
    assert alert_recipient(WITHOUT_CONTACTS, "email", RECORDS.get) == "jane.doe@example.com"
    with pytest.raises(ValueError, match="field must be one of phone, email"):
        alert_recipient(WITHOUT_CONTACTS, "customer_id", RECORDS.get)


@pytest.mark.parametrize("conf", [None, [], "customer_id=1"])
def test_a_conf_that_is_not_an_object(conf: Any) -> None:
    message = invalid(conf)
    assert "must be a JSON object with the fields customer_id, phone, email, amount, currency, merchant" in message


@pytest.mark.parametrize(
    ("amount", "currency", "problem"),
    [
        (0, "USD", "greater than 0"),
        (-1, "USD", "greater than 0"),
        (10.001, "USD", "more decimal places than USD has (2)"),
        ("100.5", "JPY", "more decimal places than JPY has (0)"),
        (True, "USD", "is a boolean, not a number"),
        ("NaN", "USD", "finite number"),
        ("Infinity", "USD", "finite number"),
        ("twelve", "USD", "valid decimal"),
        (1e12, "USD", "less than 1000000000000"),
    ],
)
def test_amounts_that_are_refused(amount: Any, currency: str, problem: str) -> None:
    message = invalid({**GOOD, "amount": amount, "currency": currency})
    assert "- amount = " in message and problem in message


def test_currency_must_be_upper_case_and_supported() -> None:
    assert "must be upper case (USD)" in invalid({**GOOD, "currency": "usd"})
    assert "is not a supported ISO 4217 currency code" in invalid({**GOOD, "currency": "US"})
    assert "USD" in SUPPORTED_CURRENCIES and list(SUPPORTED_CURRENCIES) == sorted(SUPPORTED_CURRENCIES)


@pytest.mark.parametrize("merchant", ["Blue\nBottle", "Blue\rBottle", "Tab\there", "   "])
def test_merchant_names_that_would_break_a_subject_line_are_refused(merchant: str) -> None:
    assert "- merchant = " in invalid({**GOOD, "merchant": merchant})


def test_merchant_length_limit() -> None:
    assert validate_alert_conf({**GOOD, "merchant": "m" * 100}).merchant == "m" * 100


@pytest.mark.parametrize("phone", ["+1202555", "12025550173", "+02025550173", "+1202555017312345"])
def test_phone_numbers_that_are_not_e164(phone: str) -> None:
    assert "- phone = " in invalid({**GOOD, "phone": phone})


def test_international_email_addresses_are_refused_before_the_email_step_would() -> None:
    message = invalid({**GOOD, "email": "jürgen@example.com"})
    assert "is not a plain ASCII address" in message and "jürgen" not in message


def test_masked_summary_for_logs() -> None:
    summary = validate_alert_conf(GOOD).masked()
    assert summary == (
        "customer CUST-00042: USD 1,234.50 at 'Blue Bottle Coffee', SMS to +1******0173, e-mail to J***@example.com"
    )


# -- money formatting ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("amount", "currency", "expected"),
    [
        (Decimal("1234.5"), "USD", "USD 1,234.50"),
        (Decimal("0.005"), "EUR", "EUR 0.00"),  # half to even
        (Decimal("0.015"), "EUR", "EUR 0.02"),
        ("1000000", "GBP", "GBP 1,000,000.00"),
        (1500, "JPY", "JPY 1,500"),
        (Decimal("1500.5"), "JPY", "JPY 1,500"),
        (Decimal("7"), "XTS", "XTS 7.00"),  # unknown currency: 2 decimal places
    ],
)
def test_format_amount(amount: Any, currency: str, expected: str) -> None:
    assert format_amount(amount, currency) == expected


def test_format_amount_refuses_floats_and_non_numbers() -> None:
    with pytest.raises(ValueError, match="is a float, which cannot hold money exactly"):
        format_amount(12.5, "USD")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="is not a number"):
        format_amount("12,50", "USD")
    with pytest.raises(ValueError, match="not a finite number"):
        format_amount(Decimal("NaN"), "USD")


# -- templates -------------------------------------------------------------------------------------------------


class FakeTaskInstance:
    """What the templates use of Airflow's context: ``ti.xcom_pull(task_ids="validate_alert")``."""

    def __init__(self, validated: dict[str, str]) -> None:
        self.validated = validated

    def xcom_pull(self, task_ids: str) -> dict[str, str]:
        assert task_ids == "validate_alert"
        return self.validated


def render(name: str, conf: dict[str, Any], *, autoescape: bool = False) -> str:
    """Render a template as the DAG's fields do: ``{% include %}`` from the template search path."""
    env = SandboxedEnvironment(
        loader=FileSystemLoader(str(TEMPLATES)), undefined=StrictUndefined, autoescape=autoescape
    )
    ti = FakeTaskInstance(validate_alert_conf(conf).to_template_data())
    return env.from_string('{% include "' + name + '" %}').render(ti=ti)


@pytest.mark.parametrize(
    ("amount", "currency", "merchant"),
    [
        (1234.5, "USD", "Blue Bottle Coffee"),
        (99999.99, "EUR", "Amazon Marketplace EU SARL"),
        (250000, "JPY", "Shinkansen Tokyo Station"),
        (12.3, "GBP", "Tesco Express Camden High Street"),
    ],
)
def test_sms_fits_one_gsm7_segment_for_typical_values(amount: float, currency: str, merchant: str) -> None:
    text = render("connect/transaction_alert.sms.j2", {**GOOD, "amount": amount, "currency": currency,
                                                        "merchant": merchant})
    assert len(text) <= 160, (len(text), text)
    assert set(text) <= GSM7, set(text) - GSM7
    assert merchant in text and format_amount(Decimal(str(amount)), currency) in text
    assert text.startswith("Demo Bank: ") and "{" not in text and "\n" not in text


def test_sms_names_no_account_or_contact_details() -> None:
    text = render("connect/transaction_alert.sms.j2", GOOD)
    assert text == (
        "Demo Bank: USD 1,234.50 at Blue Bottle Coffee on your account. Not you? Call the number on the back of "
        "your card."
    )
    assert GOOD["customer_id"] not in text and GOOD["phone"] not in text


def test_subject_is_one_line() -> None:
    assert render("connect/transaction_alert.subject.j2", GOOD) == "Demo Bank: USD 1,234.50 at Blue Bottle Coffee"


@pytest.mark.parametrize("autoescape", [False, True])
def test_email_escapes_the_merchant_name(autoescape: bool) -> None:
    html = render("connect/transaction_alert.email.html.j2", {**GOOD, "merchant": "<script>alert(1)</script> & Co"},
                  autoescape=autoescape)
    assert "<script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; Co" in html  # escaped exactly once
    assert html.lstrip().startswith("<!DOCTYPE html>") and html.rstrip().endswith("</html>")
    assert "USD 1,234.50" in html and "CUST-00042" in html
    assert "{{" not in html and "{%" not in html and "{#" not in html
