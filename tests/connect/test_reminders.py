"""Payment reminders without Airflow: who is due (a SQLite file migrated and seeded as `make run` does), the
rendered SMS (the real template of include/templates/connect) and the batches of the Send SMS fan-out."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import date
from decimal import Decimal

import pytest
from sqlalchemy import Engine, update

from demobank.connect.reminders import (
    TEMPLATE_NAME,
    batched,
    due_customers,
    format_due_date,
    reminder_batches,
    reminder_due_date,
    render_reminders,
)
from demobank.db.engine import dispose_engines, get_engine, session_scope
from demobank.db.migrate import upgrade
from demobank.db.models import DemoCustomer
from demobank.db.seed import generate_demo_customers, seed_demo_customers
from tests.conftest import PROJECT_DIR

TODAY = date(2026, 3, 10)
TEMPLATE = (PROJECT_DIR / "include" / "templates" / TEMPLATE_NAME).read_text(encoding="utf-8")


@pytest.fixture
def seeded(tmp_path, monkeypatch) -> Iterator[Engine]:
    """A SQLite file migrated to head and seeded with 300 demo customers, "today" being TODAY."""
    monkeypatch.delenv("DEMOBANK_DB_URL", raising=False)
    url = f"sqlite:///{tmp_path / 'demobank.db'}"
    upgrade(url)
    engine = get_engine(url)
    seed_demo_customers(engine, 300, today=TODAY)
    yield engine
    dispose_engines()


def expected_due(on: date, count: int = 300) -> list[dict]:
    return sorted(
        (c for c in generate_demo_customers(count, today=TODAY) if c["payment_due_date"] == on and c["amount_due"]),
        key=lambda c: c["customer_id"],
    )


def customer(index: int, **changes: str) -> dict[str, str]:
    return {
        "customer_id": f"CUST-{index:05d}",
        "full_name": "Olivia Smith",
        "phone": f"+1202555{index % 10000:04d}",
        "email": f"olivia.smith.{index}@example.com",
        "amount_due": "1234.50",
        "currency": "USD",
        "payment_due_date": "2026-03-11",
        **changes,
    }


# -- who is due ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("on", [TODAY, date(2026, 3, 11)])
def test_due_customers_are_those_due_that_day(seeded: Engine, on: date) -> None:
    due = due_customers(seeded, on)
    expected = expected_due(on)
    assert len(expected) >= 60  # every fifth customer is due today, every fifth (offset by one) tomorrow
    assert [c["customer_id"] for c in due] == [c["customer_id"] for c in expected]
    first, want = due[0], expected[0]
    assert first == {
        "customer_id": want["customer_id"],
        "full_name": want["full_name"],
        "phone": want["phone"],
        "email": want["email"],
        "amount_due": str(want["amount_due"]),
        "currency": want["currency"],
        "payment_due_date": on.isoformat(),
    }
    assert all(isinstance(value, str) for c in due for value in c.values())  # JSON-safe, for XCom


def test_a_day_with_no_one_due(seeded: Engine) -> None:
    assert due_customers(seeded, date(2030, 1, 1)) == []


def test_customers_who_owe_nothing_get_no_reminder(seeded: Engine) -> None:
    due = due_customers(seeded, TODAY)
    paid, cleared = due[0]["customer_id"], due[1]["customer_id"]
    with session_scope(seeded) as session:
        session.execute(update(DemoCustomer).where(DemoCustomer.customer_id == paid).values(amount_due=Decimal(0)))
        session.execute(update(DemoCustomer).where(DemoCustomer.customer_id == cleared).values(amount_due=None))
    assert [c["customer_id"] for c in due_customers(seeded, TODAY)] == [c["customer_id"] for c in due[2:]]


@pytest.mark.parametrize(("days_ahead", "expected"), [(0, date(2026, 3, 10)), (1, date(2026, 3, 11)),
                                                      (30, date(2026, 4, 9))])
def test_reminder_due_date(days_ahead: int, expected: date) -> None:
    assert reminder_due_date(TODAY, days_ahead) == expected


def test_reminder_due_date_refuses_the_past() -> None:
    with pytest.raises(ValueError, match="days_ahead=-1 is negative"):
        reminder_due_date(TODAY, -1)


@pytest.mark.parametrize(("value", "text"), [(date(2026, 1, 3), "3 Jan 2026"), (date(2026, 12, 31), "31 Dec 2026")])
def test_format_due_date(value: date, text: str) -> None:
    assert format_due_date(value) == text


# -- rendering and batching --------------------------------------------------------------------------------------


def test_the_real_template_renders_a_short_reminder() -> None:
    [message] = render_reminders([customer(7)], TEMPLATE)
    assert message == {
        "to": "+12025550007",
        "body": "Demo Bank: Hi Olivia, your payment of USD 1,234.50 is due on 11 Mar 2026. Pay in the app to avoid "
        "a late fee.",
        "key": "payment_reminder:CUST-00007:2026-03-11",
    }
    assert len(message["body"]) <= 160


def test_reminders_from_the_seeded_database(seeded: Engine) -> None:
    due = due_customers(seeded, TODAY)
    messages = render_reminders(due, TEMPLATE)
    assert [m["to"] for m in messages] == [c["phone"] for c in due]
    for message, row in zip(messages, due, strict=True):
        first_name = row["full_name"].split()[0]
        assert message["body"].startswith(f"Demo Bank: Hi {first_name}, your payment of {row['currency']} ")
        assert "is due on 10 Mar 2026." in message["body"]
        assert len(message["body"]) <= 160


def test_batches_of_100_in_order() -> None:
    customers = [customer(i) for i in range(250)]
    batches = reminder_batches(customers, TEMPLATE)
    assert [len(b) for b in batches] == [100, 100, 50]
    assert [m["to"] for b in batches for m in b] == [c["phone"] for c in customers]
    assert all(set(m) == {"to", "body", "key"} for b in batches for m in b)


def test_exactly_one_full_batch_and_a_custom_size() -> None:
    assert [len(b) for b in reminder_batches([customer(i) for i in range(100)], TEMPLATE)] == [100]
    assert [len(b) for b in reminder_batches([customer(i) for i in range(7)], TEMPLATE, batch_size=3)] == [3, 3, 1]


def test_no_one_due_means_no_batch() -> None:
    assert reminder_batches([], TEMPLATE) == []


def test_batch_size_must_be_positive() -> None:
    with pytest.raises(ValueError, match="batch_size=0 must be at least 1"):
        batched([1, 2], 0)


def test_a_customer_with_a_bad_phone_number_is_left_out_and_named_masked(caplog) -> None:
    customers = [customer(1), customer(2, phone="+1 202 555 0002"), customer(3, phone="")]
    with caplog.at_level(logging.WARNING, logger="demobank.connect.reminders"):
        messages = render_reminders(customers, TEMPLATE)
    assert [m["to"] for m in messages] == ["+12025550001"]
    assert "2 customer(s) with a payment due get no reminder" in caplog.text
    assert "CUST-00002 (+1*********0002)" in caplog.text and "CUST-00003" in caplog.text
    assert "202 555" not in caplog.text


def test_names_with_accents_and_a_missing_name() -> None:
    [accented, anonymous] = render_reminders(
        [customer(1, full_name="Tomás O'Brien", currency="JPY", amount_due="15000"), customer(2, full_name="")],
        TEMPLATE,
    )
    assert "Hi Tomás, your payment of JPY 15,000 is due" in accented["body"]
    assert "Hi there, your payment" in anonymous["body"]


def test_a_template_with_an_unknown_variable_fails_clearly() -> None:
    with pytest.raises(ValueError, match=r"failed for customer CUST-00001: .*customer\.amount_display"):
        render_reminders([customer(1)], "Hi {{ customer.nickname }}")


def test_a_template_that_does_not_compile_fails_clearly() -> None:
    with pytest.raises(ValueError, match="the reminder template does not compile"):
        render_reminders([customer(1)], "Hi {{ customer.first_name ")


def test_an_empty_text_is_refused() -> None:
    with pytest.raises(ValueError, match="rendered 0 characters for customer CUST-00001"):
        render_reminders([customer(1)], "{# nothing #}")
