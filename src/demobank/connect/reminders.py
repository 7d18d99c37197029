"""Payment reminders: who has a payment due on a day, and the SMS each of them gets, in batches.

Used by the ``connect_payment_reminders`` DAG, which sends every batch with one mapped "Send SMS" task. Airflow-free:
the caller passes the engine of the suite's database and the template's text.

* :func:`due_customers` reads ``demo_customers`` whose ``payment_due_date`` is the given day and who owe
  something (``amount_due`` > 0), ordered by ``customer_id`` so that the same data give the same batches.
* :func:`reminder_batches` renders one SMS per customer from the template (Jinja, sandboxed, every variable
  required) and splits them into batches. A customer whose phone number is not E.164 cannot be texted: they
  are left out and named (masked) in a warning, so that one bad row does not hold back everyone else's reminder.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import Engine, select

from demobank.connect.alerts import format_amount
from demobank.connect.recipients import E164, MAX_SMS_BODY, mask_phone
from demobank.db.engine import session_scope
from demobank.db.models import DemoCustomer

log = logging.getLogger(__name__)

DEFAULT_BATCH_SIZE = 100
"""Messages per "Send SMS" task: one mapped task instance per batch."""

TEMPLATE_NAME = "connect/payment_reminder.sms.j2"
"""The reminder's template, relative to the project's ``include/templates`` folder."""

_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def reminder_due_date(run_date: date, days_ahead: int = 1) -> date:
    """The due date whose customers a run reminds: ``days_ahead`` days after the run's date.

    :param run_date: the day the run is for (its data interval's end, or when it was triggered).
    :param days_ahead: 0 reminds payments due that very day, 1 (the DAG's default) those due the next day.
    :raises ValueError: when ``days_ahead`` is negative.
    """
    if days_ahead < 0:
        raise ValueError(
            f"days_ahead={days_ahead} is negative: reminders are for payments still to come; use 0 (due on the "
            "run's day) or more."
        )
    return run_date + timedelta(days=days_ahead)


def format_due_date(value: date) -> str:
    """``date(2026, 1, 3)`` → ``"3 Jan 2026"`` (English month names, whatever the process's locale)."""
    return f"{value.day} {_MONTHS[value.month - 1]} {value.year}"


def due_customers(engine: Engine, on_date: date) -> list[dict[str, str]]:
    """Return the customers whose payment is due on ``on_date`` and who owe something.

    :param engine: an engine on the suite's database, migrated to head.
    :param on_date: the due date.
    :return: one JSON-safe dict per customer, ordered by ``customer_id``: ``customer_id``, ``full_name``,
        ``phone``, ``email``, ``amount_due`` (decimal string), ``currency``, ``payment_due_date`` (ISO date).
    """
    query = (
        select(DemoCustomer)
        .where(DemoCustomer.payment_due_date == on_date, DemoCustomer.amount_due > 0)
        .order_by(DemoCustomer.customer_id)
    )
    with session_scope(engine) as session:
        return [
            {
                "customer_id": row.customer_id,
                "full_name": row.full_name,
                "phone": row.phone,
                "email": row.email,
                "amount_due": str(row.amount_due),
                "currency": row.currency,
                "payment_due_date": row.payment_due_date.isoformat() if row.payment_due_date else "",
            }
            for row in session.scalars(query)
        ]


def _template_data(customer: Mapping[str, Any]) -> dict[str, str]:
    due = customer["payment_due_date"]
    due_date = due if isinstance(due, date) else date.fromisoformat(str(due))
    full_name = str(customer.get("full_name") or "").strip()
    return {
        "customer_id": str(customer["customer_id"]),
        "first_name": full_name.split()[0] if full_name else "there",
        "full_name": full_name,
        "amount_display": format_amount(Decimal(str(customer["amount_due"])), str(customer["currency"])),
        "due_date": due_date.isoformat(),
        "due_date_display": format_due_date(due_date),
    }


def render_reminders(customers: Iterable[Mapping[str, Any]], template: str) -> list[dict[str, str]]:
    """Render one ``{"to", "body", "key"}`` message per customer (as "Send SMS" takes them in ``messages``).

    :param customers: dicts as :func:`due_customers` returns them.
    :param template: the text of a Jinja template that uses ``customer`` (``first_name``, ``full_name``,
        ``amount_display``, ``due_date``, ``due_date_display``, ``customer_id``).
    :return: the messages, in the customers' order; customers whose phone number is not E.164 are left out
        (and logged, masked).
    :raises ValueError: when the template uses a variable that does not exist, or renders an empty or too long
        text for a customer.
    """
    from jinja2 import StrictUndefined, TemplateError
    from jinja2.sandbox import SandboxedEnvironment

    environment = SandboxedEnvironment(undefined=StrictUndefined, autoescape=False, keep_trailing_newline=False)
    try:
        compiled = environment.from_string(template)
    except TemplateError as exc:
        raise ValueError(f"the reminder template does not compile: {exc}. Fix {TEMPLATE_NAME}.") from exc

    messages: list[dict[str, str]] = []
    skipped: list[str] = []
    for customer in customers:
        phone = str(customer.get("phone") or "")
        if not E164.match(phone):
            skipped.append(f"{customer.get('customer_id')} ({mask_phone(phone)})")
            continue
        data = _template_data(customer)
        try:
            body = compiled.render(customer=data).strip()
        except TemplateError as exc:
            raise ValueError(
                f"the reminder template failed for customer {data['customer_id']}: {exc}. It may use only "
                f"customer.{', customer.'.join(sorted(data))}; fix {TEMPLATE_NAME}."
            ) from exc
        if not body or len(body) > MAX_SMS_BODY:
            raise ValueError(
                f"the reminder template rendered {len(body)} characters for customer {data['customer_id']}: an "
                f"SMS needs 1 to {MAX_SMS_BODY}; fix {TEMPLATE_NAME}."
            )
        # A business key: one reminder per customer and due date, whichever run or batch sends it.
        messages.append({"to": phone, "body": body,
                         "key": f"payment_reminder:{data['customer_id']}:{data['due_date']}"})
    if skipped:
        log.warning(
            "%d customer(s) with a payment due get no reminder because their phone number is not E.164 "
            "(fix them in demo_customers): %s",
            len(skipped),
            ", ".join(skipped),
        )
    return messages


def batched(items: Sequence[Any], batch_size: int = DEFAULT_BATCH_SIZE) -> list[list[Any]]:
    """Split ``items`` into lists of at most ``batch_size``, in order.

    :raises ValueError: when ``batch_size`` is less than 1.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size={batch_size} must be at least 1 (messages per Send SMS task).")
    return [list(items[start : start + batch_size]) for start in range(0, len(items), batch_size)]


def reminder_batches(
    customers: Iterable[Mapping[str, Any]], template: str, batch_size: int = DEFAULT_BATCH_SIZE
) -> list[list[dict[str, str]]]:
    """Render the reminders of ``customers`` and split them into batches, one per "Send SMS" task.

    :param customers: dicts as :func:`due_customers` returns them.
    :param template: the reminder template's text (see :func:`render_reminders`).
    :param batch_size: messages per batch.
    :return: lists of ``{"to", "body"}``; an empty list when no one is due.
    """
    return batched(render_reminders(customers, template), batch_size)
