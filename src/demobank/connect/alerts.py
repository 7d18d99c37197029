"""Transaction alerts: the conf of the ``connect_transaction_alert`` workflow, validated, and money formatting.

A transaction alert is triggered through Airflow's REST API, or by a ``transaction.created`` event, with a conf
such as::

    {"customer_id": "CUST-00042", "amount": 1234.5, "currency": "USD", "merchant": "Blue Bottle Coffee"}

The customer's phone number and e-mail address are looked up by customer id when the task needs them
(:func:`alert_recipient`), so they never sit in the run's conf or in XCom. A caller may still pass ``phone`` and
``email`` in the conf (they then take precedence): that conf is theirs, and Airflow keeps it as given.

:func:`validate_alert_conf` checks every field at once and raises one :class:`ValueError` that lists every bad
field, with its value (phone numbers and e-mail addresses masked) and the form that is expected.
:meth:`TransactionAlert.to_template_data` is what the message templates in ``include/templates/connect/``
receive (JSON-safe, so it can travel through XCom; no contact details).

Airflow-free: the DAG file only calls these functions.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

from pydantic import BaseModel, ConfigDict, EmailStr, Field, ValidationError, ValidationInfo, field_validator

from demobank.connect.recipients import E164, EMAIL, mask_email, mask_phone
from demobank.events.airflow_dag import NoRunNeeded

CURRENCY_MINOR_UNITS: dict[str, int] = {
    "AED": 2, "AUD": 2, "BRL": 2, "CAD": 2, "CHF": 2, "CNY": 2, "CZK": 2, "DKK": 2, "EUR": 2, "GBP": 2,
    "HKD": 2, "HUF": 2, "ILS": 2, "INR": 2, "JPY": 0, "KRW": 0, "MXN": 2, "NOK": 2, "NZD": 2, "PLN": 2,
    "SEK": 2, "SGD": 2, "TRY": 2, "USD": 2, "ZAR": 2,
}  # fmt: skip
"""The ISO 4217 currencies the suite accepts, with their minor units (decimal places) per ISO 4217."""

SUPPORTED_CURRENCIES: tuple[str, ...] = tuple(sorted(CURRENCY_MINOR_UNITS))
"""The accepted currency codes, sorted (the DAG's ``currency`` param offers exactly these)."""

MAX_AMOUNT = Decimal("1000000000000")
"""Amounts must be below this (10^12): a sanity bound, far above any card or account transaction."""

MAX_MERCHANT_LENGTH = 100
MAX_CUSTOMER_ID_LENGTH = 64

PHONE_PATTERN = E164.pattern
"""The E.164 pattern (JSON-schema compatible) shared with the "Send SMS" step and the DAG's ``phone`` param."""

_CONTROL_CHARS = re.compile(r"[\x00-\x1f\x7f]")

EXPECTED: dict[str, str] = {
    "customer_id": f"the customer's id, a non-empty text of at most {MAX_CUSTOMER_ID_LENGTH} characters, "
    "e.g. CUST-00042",
    "phone": "an E.164 number: '+', country code and number, 8 to 15 digits, no spaces, e.g. +14155550142",
    "email": "an e-mail address, e.g. jane.doe@example.com",
    "amount": "a number greater than 0 and below 10^12, with at most as many decimals as the currency has "
    "(2 for USD, 0 for JPY), e.g. 1234.50",
    "currency": f"an ISO 4217 code in upper case, one of {', '.join(SUPPORTED_CURRENCIES)}",
    "merchant": f"the merchant's name, a non-empty text of at most {MAX_MERCHANT_LENGTH} characters, "
    "without line breaks",
}
"""For each field of the conf, the form it must have (quoted in error messages)."""


def _reject_control_chars(value: str) -> str:
    if _CONTROL_CHARS.search(value):
        raise ValueError("contains a line break or another control character")
    return value


class TransactionAlert(BaseModel):
    """A validated transaction alert.

    :ivar customer_id: the customer's id (non-empty, at most 64 characters).
    :ivar phone: the customer's mobile number, E.164.
    :ivar email: the customer's e-mail address (domain lower-cased).
    :ivar currency: ISO 4217 code from :data:`SUPPORTED_CURRENCIES`.
    :ivar amount: the amount, greater than 0, with at most the currency's decimal places.
    :ivar merchant: the merchant's name (non-empty, at most 100 characters, no control characters).
    """

    # ``currency`` comes before ``amount``: the amount's check needs the currency's decimal places.
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)

    customer_id: str = Field(min_length=1, max_length=MAX_CUSTOMER_ID_LENGTH)
    phone: str
    email: EmailStr
    currency: str
    amount: Decimal = Field(gt=0, lt=MAX_AMOUNT, allow_inf_nan=False)
    merchant: str = Field(min_length=1, max_length=MAX_MERCHANT_LENGTH)

    @field_validator("customer_id", "merchant")
    @classmethod
    def _no_control_chars(cls, value: str) -> str:
        return _reject_control_chars(value)

    @field_validator("phone")
    @classmethod
    def _e164(cls, value: str) -> str:
        if not E164.match(value):
            raise ValueError("is not an E.164 number")
        return value

    @field_validator("email")
    @classmethod
    def _sendable_email(cls, value: str) -> str:
        # The "Send Email" step accepts plain ASCII addresses only: refuse here what it would refuse later.
        if not EMAIL.match(value):
            raise ValueError("is not a plain ASCII address (international addresses are not supported)")
        return value

    @field_validator("currency")
    @classmethod
    def _known_currency(cls, value: str) -> str:
        if value not in CURRENCY_MINOR_UNITS:
            if value.upper() in CURRENCY_MINOR_UNITS:
                raise ValueError(f"must be upper case ({value.upper()})")
            raise ValueError("is not a supported ISO 4217 currency code")
        return value

    @field_validator("amount", mode="before")
    @classmethod
    def _not_a_bool(cls, value: Any) -> Any:
        # JSON's true would otherwise be read as 1.
        if isinstance(value, bool):
            raise ValueError("is a boolean, not a number")
        return value

    @field_validator("amount")
    @classmethod
    def _decimal_places(cls, value: Decimal, info: ValidationInfo) -> Decimal:
        currency = info.data.get("currency")
        places = CURRENCY_MINOR_UNITS.get(currency, 2) if isinstance(currency, str) else 2
        exponent = value.normalize().as_tuple().exponent
        if isinstance(exponent, int) and -exponent > places:
            unit = f"{currency} has" if currency in CURRENCY_MINOR_UNITS else "amounts have"
            raise ValueError(f"has more decimal places than {unit} ({places})")
        return value

    @property
    def amount_display(self) -> str:
        """The amount with its currency, as the messages show it (``USD 1,234.50``)."""
        return format_amount(self.amount, self.currency)

    def to_template_data(self) -> dict[str, str]:
        """The alert as the message templates (and XCom) receive it: JSON-safe, every value a string, and no
        phone number or e-mail address (the sending tasks look them up: :func:`alert_recipient`).

        ``amount`` keeps the currency's decimal places (``"1234.50"``); ``amount_display`` is formatted for
        people (``"USD 1,234.50"``).
        """
        return {
            "customer_id": self.customer_id,
            "amount": str(_quantize(self.amount, self.currency)),
            "currency": self.currency,
            "amount_display": self.amount_display,
            "merchant": self.merchant,
        }

    def masked(self) -> str:
        """A one-line description for logs, with the phone number and e-mail address masked."""
        return (
            f"customer {self.customer_id}: {self.amount_display} at {self.merchant!r}, "
            f"SMS to {mask_phone(self.phone)}, e-mail to {mask_email(str(self.email))}"
        )


def _quantize(amount: Decimal, currency: str) -> Decimal:
    places = CURRENCY_MINOR_UNITS.get(currency, 2)
    return amount.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_EVEN)


def format_amount(amount: Decimal | int | str, currency: str) -> str:
    """Format an amount for people: ISO code, thousands separators, the currency's decimal places.

    ``format_amount(Decimal("1234.5"), "USD")`` → ``"USD 1,234.50"``; ``format_amount(1500, "JPY")`` →
    ``"JPY 1,500"``. Amounts with more decimals than the currency has are rounded half to even.

    :param amount: the amount (a :class:`~decimal.Decimal`, an int or a numeric string; not a float).
    :param currency: an ISO 4217 code; unknown codes are formatted with 2 decimal places.
    :raises ValueError: when ``amount`` is not a finite number.
    """
    if isinstance(amount, float):
        raise ValueError(
            f"amount {amount!r} is a float, which cannot hold money exactly: pass a Decimal or a string "
            f"such as '{amount:.2f}'."
        )
    try:
        value = Decimal(amount)
    except (ArithmeticError, ValueError, TypeError) as exc:
        raise ValueError(f"amount {amount!r} is not a number: pass a Decimal such as Decimal('1234.50').") from exc
    if not value.is_finite():
        raise ValueError(f"amount {amount!r} is not a finite number: pass a Decimal such as Decimal('1234.50').")
    places = CURRENCY_MINOR_UNITS.get(currency, 2)
    return f"{currency} {_quantize(value, currency):,.{places}f}"


def _shown(field: str, value: Any) -> str:
    """A value as an error message may show it: phone numbers and e-mail addresses masked, long texts cut."""
    if field in ("phone", "email") and value is not None:
        masked = mask_phone(str(value)) if field == "phone" else mask_email(str(value))
        return f"'{masked}' (masked, {type(value).__name__})"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _problem(error: Mapping[str, Any]) -> str:
    message = str(error.get("msg", "is invalid")).rstrip(".")
    if error.get("type") == "value_error":
        # Our own checks: "Value error, is not an E.164 number" -> "is not an E.164 number".
        return message.split(", ", 1)[1] if message.startswith("Value error, ") else message
    return message[:1].lower() + message[1:]


Contacts = Callable[[str], tuple[str, str] | None]
"""customer id → (phone, e-mail), or ``None`` when the customer is unknown."""


def demo_customer_contacts(customer_id: str) -> tuple[str, str] | None:
    """A customer's phone and e-mail from the suite's ``demo_customers`` table."""
    from demobank.db.engine import session_scope
    from demobank.db.models import DemoCustomer

    with session_scope() as session:
        customer = session.get(DemoCustomer, customer_id)
        return None if customer is None else (customer.phone, customer.email)


CONTACT_FIELDS = ("phone", "email")
"""The conf's optional fields: when absent (or null), they come from the customer's record."""


def validate_alert_conf(conf: Mapping[str, Any] | None, contacts: Contacts | None = None) -> TransactionAlert:
    """Validate the conf of a transaction alert run, with the customer's contact details.

    :param conf: the run's conf (or the DAG's params): ``customer_id``, ``amount``, ``currency``, ``merchant``,
        and optionally ``phone`` and ``email``; nothing else.
    :param contacts: where a ``phone`` or ``email`` the conf does not give is looked up (default: the suite's
        customer records, :func:`demo_customer_contacts`).
    :return: the validated alert, contacts included.
    :raises ValueError: listing every bad, missing or unexpected field, each with its value (phone numbers
        and e-mail addresses masked) and the form that is expected; or the customer has no contact details.
    """
    if not isinstance(conf, Mapping):
        raise ValueError(
            f"the transaction alert conf must be a JSON object with the fields {', '.join(EXPECTED)}, "
            f"got {type(conf).__name__}: trigger the DAG with such a conf."
        )
    values = dict(conf)
    missing = [field for field in CONTACT_FIELDS if values.get(field) is None]
    if missing:
        for field in missing:
            values.pop(field, None)
        customer_id = values.get("customer_id")
        found = (contacts or demo_customer_contacts)(customer_id) if isinstance(customer_id, str) else None
        if isinstance(customer_id, str) and found is None:
            raise ValueError(f"customer {customer_id!r} has no phone and e-mail on record: add the customer's "
                             "contact details (or pass phone and email in the conf), then trigger the alert again")
        if found is not None:
            values.update({field: value for field, value in zip(CONTACT_FIELDS, found, strict=True)
                           if field in missing})
    try:
        return TransactionAlert.model_validate(values)
    except ValidationError as exc:
        lines = []
        for error in exc.errors(include_url=False):
            field = str(error["loc"][0]) if error["loc"] else "conf"
            if error["type"] == "missing":
                lines.append(f"- {field}: missing. Expected {EXPECTED[field]}.")
            elif error["type"] == "extra_forbidden":
                lines.append(
                    f"- {field} = {_shown(field, error.get('input'))}: unexpected field. Remove it; the "
                    f"accepted fields are {', '.join(EXPECTED)}."
                )
            else:
                expected = EXPECTED.get(field, "a valid value")
                lines.append(
                    f"- {field} = {_shown(field, error.get('input'))}: {_problem(error)}. Expected {expected}."
                )
        raise ValueError(
            f"invalid transaction alert conf ({len(lines)} problem(s)); fix these fields and trigger the "
            "DAG again:\n" + "\n".join(lines)
        ) from None


# -- event-driven alerts ------------------------------------------------------------------------------------------

def _merchant_of(data: Mapping[str, Any]) -> str:
    for key in ("merchant", "counterparty"):
        party = data.get(key)
        if isinstance(party, Mapping) and party.get("name"):
            return str(party["name"])[:MAX_MERCHANT_LENGTH]
    described = str(data.get("description") or "").strip()
    return described[:MAX_MERCHANT_LENGTH] or str(data.get("channel", "transaction")).replace("_", " ")


def alert_conf_from_event(envelope: Mapping[str, Any], contacts: Contacts = demo_customer_contacts) -> dict[str, Any]:
    """The ``connect_transaction_alert`` conf for a ``transaction.created`` event, validated: the customer's id,
    not their contact details (the sending tasks look those up, :func:`alert_recipient`).

    Registered for the ``airflow_dag`` targets under the ``demobank.airflow_dag_conf`` entry point.

    :raises NoRunNeeded: the customer is not enrolled in alerts (no contact details on record): no alert, and no
        dead letter either.
    :raises ValueError: the event is not a ``transaction.created``, or the alert would be invalid (a contact on
        record that is not sendable, a currency the alerts do not support); the message says which.
    """
    if envelope.get("type") != "transaction.created":
        raise ValueError(f"a transaction alert is started by transaction.created events, not {envelope.get('type')!r}")
    data = envelope.get("data") or {}
    customer_id = str(data.get("customer_id", ""))
    found = contacts(customer_id)
    if found is None:
        raise NoRunNeeded(f"customer {customer_id} is not enrolled in transaction alerts (no phone and e-mail on "
                          "record)")
    conf = {"customer_id": customer_id, "amount": float(Decimal(str(data["amount"]))),
            "currency": data.get("currency"), "merchant": _merchant_of(data)}
    try:
        validate_alert_conf(conf, lambda _customer_id: found)
    except ValueError as error:
        raise ValueError(f"transaction {data.get('transaction_id')!r} of customer {customer_id}: {error}") from None
    return conf


def alert_recipient(conf: Mapping[str, Any], field: str, contacts: Contacts | None = None) -> str:
    """The alert's ``phone`` or ``email`` (the conf's, else the customer's record), for the sending task.

    The DAG's ``to`` fields call it when they are rendered, so the address reaches the task that sends and nothing
    else: not the conf, not XCom; the operators keep it masked in the rendered fields.
    """
    if field not in CONTACT_FIELDS:
        raise ValueError(f"field must be one of {', '.join(CONTACT_FIELDS)}, got {field!r}")
    return str(getattr(validate_alert_conf(conf, contacts), field))
