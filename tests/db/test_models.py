"""The delivery ledger and demo customers on a migrated database (SQLite and PostgreSQL)."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.exc import IntegrityError, StatementError

from demobank.db.engine import get_engine, session_scope
from demobank.db.models import Channel, Delivery, DeliveryStatus, DemoCustomer, Provider


def _delivery(key: str = "connect_reminders/run-1/send_sms/+1202***0100", **overrides: object) -> Delivery:
    values: dict[str, object] = {
        "idempotency_key": key,
        "channel": Channel.SMS.value,
        "provider": Provider.TWILIO.value,
        "recipient_masked": "+1202*****00",
        "dag_id": "connect_reminders",
        "run_id": "manual__2026-11-26",
        "task_id": "send_sms",
    }
    values.update(overrides)
    return Delivery(**values)


def test_delivery_defaults(migrated_url: str) -> None:
    before = datetime.now(UTC)
    with session_scope(get_engine(migrated_url)) as session:
        session.add(_delivery())
    with session_scope(get_engine(migrated_url)) as session:
        stored = session.scalars(select(Delivery)).one()

    assert stored.status == DeliveryStatus.PENDING
    assert stored.attempts == 0
    assert stored.provider_message_id is None
    assert stored.created_at.tzinfo is not None
    assert stored.created_at.utcoffset() == timedelta(0)
    assert before - timedelta(seconds=1) <= stored.created_at <= datetime.now(UTC) + timedelta(seconds=1)


def test_idempotency_key_is_unique(migrated_url: str) -> None:
    engine = get_engine(migrated_url)
    with session_scope(engine) as session:
        session.add(_delivery("same-key"))

    with pytest.raises(IntegrityError, match=r"(?i)unique"), session_scope(engine) as session:
        session.add(_delivery("same-key", recipient_masked="other"))

    with session_scope(engine) as session:
        assert session.scalar(select(func.count()).select_from(Delivery)) == 1


@pytest.mark.parametrize(
    ("column", "value"),
    [("channel", "fax"), ("provider", "carrier-pigeon"), ("status", "sent"), ("attempts", -1)],
)
def test_check_constraints_reject_unknown_values(migrated_url: str, column: str, value: object) -> None:
    with pytest.raises(IntegrityError, match=r"(?i)check"), session_scope(get_engine(migrated_url)) as session:
        session.add(_delivery(**{column: value}))


def test_timestamps_are_stored_in_utc_and_read_back_aware(migrated_url: str) -> None:
    paris_noon = datetime(2026, 11, 26, 12, 0, tzinfo=timezone(timedelta(hours=1)))
    with session_scope(get_engine(migrated_url)) as session:
        session.add(_delivery(created_at=paris_noon, updated_at=paris_noon))
    with session_scope(get_engine(migrated_url)) as session:
        stored = session.scalars(select(Delivery)).one()

    assert stored.created_at == datetime(2026, 11, 26, 11, 0, tzinfo=UTC)
    assert stored.created_at.tzinfo == UTC


def test_updated_at_moves_on_update(migrated_url: str) -> None:
    old = datetime(2020, 1, 1, tzinfo=UTC)
    engine = get_engine(migrated_url)
    with session_scope(engine) as session:
        session.add(_delivery(created_at=old, updated_at=old))
    with session_scope(engine) as session:
        delivery = session.scalars(select(Delivery)).one()
        delivery.status = DeliveryStatus.ACCEPTED.value
        delivery.provider_message_id = "SM123"
        delivery.attempts += 1
    with session_scope(engine) as session:
        stored = session.scalars(select(Delivery)).one()

    assert stored.created_at == old
    assert stored.updated_at > old
    assert (stored.status, stored.provider_message_id, stored.attempts) == ("accepted", "SM123", 1)


def test_server_defaults_fill_rows_written_by_raw_sql(migrated_url: str) -> None:
    with get_engine(migrated_url).begin() as connection:
        connection.execute(
            text(
                "INSERT INTO deliveries (idempotency_key, channel, provider, recipient_masked, status) "
                "VALUES ('raw', 'email', 'sendgrid', 'a***@example.com', 'pending')"
            )
        )
    with session_scope(get_engine(migrated_url)) as session:
        stored = session.scalars(select(Delivery)).one()

    assert stored.attempts == 0
    assert stored.created_at.tzinfo == UTC
    assert abs(stored.created_at - datetime.now(UTC)) < timedelta(minutes=5)


def test_naive_datetime_is_rejected(migrated_url: str) -> None:
    engine = get_engine(migrated_url)
    with pytest.raises(StatementError, match="naive datetime") as info, session_scope(engine) as session:
        session.add(_delivery(created_at=datetime(2026, 1, 1, 12, 0)))
        session.flush()

    assert isinstance(info.value.orig, ValueError)


def test_demo_customer_round_trip(migrated_url: str) -> None:
    with session_scope(get_engine(migrated_url)) as session:
        session.add(
            DemoCustomer(
                customer_id="CUST-1",
                full_name="Grace Hopper",
                phone="+12025550101",
                email="grace@example.com",
                amount_due=Decimal("1234.56"),
            )
        )
    with session_scope(get_engine(migrated_url)) as session:
        stored = session.get(DemoCustomer, "CUST-1")

    assert stored is not None
    assert (stored.amount_due, stored.currency, stored.payment_due_date) == (Decimal("1234.56"), "USD", None)


def test_demo_customer_phone_must_look_like_e164(migrated_url: str) -> None:
    with pytest.raises(IntegrityError), session_scope(get_engine(migrated_url)) as session:
        session.add(DemoCustomer(customer_id="C", full_name="X", phone="2025550101", email="x@example.com"))


# Like the connectors: look the idempotency key up, then write, in one transaction.
_WRITER = """
import sys
from sqlalchemy import func, select
from demobank.db.engine import get_engine, session_scope
from demobank.db.models import Delivery
engine = get_engine(sys.argv[1])
for i in range(100):
    with session_scope(engine) as session:
        session.scalar(select(func.count()).select_from(Delivery))
        delivery = Delivery(idempotency_key=f"{sys.argv[2]}-{i}", channel="sms", provider="twilio",
                            recipient_masked="+1***", status="pending")
        session.add(delivery)
        session.flush()
        delivery.attempts += 1
"""


def test_several_processes_write_at_once(migrated_url: str, cli_env: dict[str, str]) -> None:
    """Airflow runs tasks in several processes: concurrent writers wait for each other, none fails."""
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", _WRITER, migrated_url, f"writer{n}"],
            env=cli_env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for n in range(4)
    ]
    for process in processes:
        _, stderr = process.communicate(timeout=180)
        assert process.returncode == 0, stderr[-2000:]

    with session_scope(get_engine(migrated_url)) as session:
        assert session.scalar(select(func.count()).select_from(Delivery)) == 400
        assert session.scalar(select(func.sum(Delivery.attempts))) == 400
