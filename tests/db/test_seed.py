"""Deterministic, idempotent demo customers."""

from __future__ import annotations

import re
import subprocess
import sys
from datetime import date, timedelta

import pytest
from sqlalchemy import func, select

from demobank.db.engine import get_engine, session_scope
from demobank.db.models import DemoCustomer
from demobank.db.seed import MAX_CUSTOMERS, generate_demo_customers, seed_demo_customers

TODAY = date(2026, 11, 26)
E164_FICTIONAL = re.compile(r"^\+1[2-9]\d{2}55501\d{2}$")  # NPA-555-0100..0199: reserved for fiction.


def _stored(url: str) -> list[dict[str, object]]:
    with session_scope(get_engine(url)) as session:
        customers = session.scalars(select(DemoCustomer).order_by(DemoCustomer.customer_id)).all()
    return [
        {column: getattr(customer, column) for column in DemoCustomer.__table__.columns.keys()}
        for customer in customers
    ]


def test_generation_is_deterministic() -> None:
    first = generate_demo_customers(50, seed=7, today=TODAY)

    assert first == generate_demo_customers(50, seed=7, today=TODAY)
    assert first != generate_demo_customers(50, seed=8, today=TODAY)


def test_generated_customers_are_realistic_and_fictional() -> None:
    customers = generate_demo_customers(250, seed=1, today=TODAY)

    assert len({customer["customer_id"] for customer in customers}) == 250
    assert len({customer["phone"] for customer in customers}) == 250
    assert all(E164_FICTIONAL.match(customer["phone"]) for customer in customers)
    assert all(re.fullmatch(r"[a-z0-9.]+@example\.com", customer["email"]) for customer in customers)
    assert all(len(customer["currency"]) == 3 for customer in customers)
    due = [customer["payment_due_date"] for customer in customers]
    assert due.count(TODAY) >= 50
    assert due.count(TODAY + timedelta(days=1)) >= 50
    assert None in due
    for customer in customers:
        assert (customer["amount_due"] is None) == (customer["payment_due_date"] is None)
        if customer["amount_due"] is not None:
            assert customer["amount_due"] > 0
            assert customer["amount_due"].as_tuple().exponent == -2


@pytest.mark.parametrize("count", [0, MAX_CUSTOMERS + 1])
def test_count_out_of_range_is_rejected(count: int) -> None:
    with pytest.raises(ValueError, match=f"got {count}"):
        generate_demo_customers(count)


def test_seeding_is_deterministic_across_databases(migrated_url: str, sqlite_url: str) -> None:
    from demobank.db.migrate import upgrade

    other = sqlite_url.replace("demobank.db", "other.db")
    upgrade(other)

    seed_demo_customers(get_engine(migrated_url), 30, seed=42, today=TODAY)
    seed_demo_customers(get_engine(other), 30, seed=42, today=TODAY)

    assert _stored(migrated_url) == _stored(other)
    assert len(_stored(migrated_url)) == 30


def test_seeding_is_idempotent(migrated_url: str) -> None:
    engine = get_engine(migrated_url)

    first = seed_demo_customers(engine, 20, seed=3, today=TODAY)
    snapshot = _stored(migrated_url)
    second = seed_demo_customers(engine, 20, seed=3, today=TODAY + timedelta(days=5))
    larger = seed_demo_customers(engine, 25, seed=3, today=TODAY)

    assert (first.inserted, first.updated, first.unchanged) == (20, 0, 0)
    assert (second.inserted, second.updated, second.unchanged) == (0, 0, 20)
    assert _stored(migrated_url)[:20] == snapshot  # Existing customers left alone.
    assert (larger.inserted, larger.unchanged) == (5, 20)
    with session_scope(engine) as session:
        assert session.scalar(select(func.count()).select_from(DemoCustomer)) == 25


def test_refresh_moves_due_dates(migrated_url: str) -> None:
    engine = get_engine(migrated_url)
    seed_demo_customers(engine, 10, seed=3, today=TODAY)

    result = seed_demo_customers(engine, 10, seed=3, today=TODAY + timedelta(days=1), refresh=True)

    assert (result.inserted, result.updated, result.unchanged) == (0, 10, 0)
    with session_scope(engine) as session:
        first = session.get(DemoCustomer, "CUST-00001")
    assert first is not None
    assert first.payment_due_date == TODAY + timedelta(days=1)


def test_cli_seed_refuses_unmigrated_database(sqlite_url: str, cli_env: dict[str, str]) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "demobank.db", "--url", sqlite_url, "seed"],
        env=cli_env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert result.returncode == 1
    assert "run `python -m demobank.db upgrade` first" in result.stderr


def test_cli_seed_twice(migrated_url: str, cli_env: dict[str, str]) -> None:
    def seed() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "demobank.db", "--url", migrated_url, "seed", "--count", "12"],
            env=cli_env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    first, second = seed(), seed()

    assert first.returncode == 0, first.stderr
    assert "12 inserted, 0 refreshed, 0 already present" in first.stdout
    assert "0 inserted, 0 refreshed, 12 already present" in second.stdout
