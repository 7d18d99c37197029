"""The core banking generator: deterministic, realistic, schema-valid rows, exact shares of malformed ones, and a
seed command that is fast and idempotent."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from demobank.data_factory.core_banking import (
    DEFECTS,
    DEMO_PLAN,
    TRANSACTION_COLUMNS,
    DaySpec,
    demo_plan,
    generate_day,
    generate_reference,
)
from demobank.data_factory.transactions import event_data
from demobank.data_factory.transform import Movements, transform_chunk
from demobank.data_factory.validate import DuplicateTracker, ReferenceData, validate_chunk
from demobank.events.catalog import get_catalog
from tests.conftest import PROJECT_DIR

REF = generate_reference(customers_count=500)


def as_frame(columns: dict[str, np.ndarray]) -> pd.DataFrame:
    frame = pd.DataFrame({name: columns[name] for name in TRANSACTION_COLUMNS}).astype(object)
    frame["row_id"] = frame["row_id"].astype(str).astype(object)
    return frame


def reference_for(day: date) -> ReferenceData:
    from demobank.data_factory.core_banking import fx_rates_for
    from demobank.data_factory.transform import merchant_categories

    accounts = pd.DataFrame(REF.accounts).set_index("account_id")
    merchants = pd.DataFrame(REF.merchants).set_index("merchant_id")
    merchants["category"] = merchant_categories(merchants)
    return ReferenceData(day, {c: float(r) for c, r in fx_rates_for(day).items()}, accounts, merchants)


def test_the_same_seed_gives_the_same_rows_and_days_do_not_depend_on_each_other() -> None:
    spec = DaySpec(date(2026, 1, 5), 3_000, 0.05)
    first, second = generate_day(REF, spec), generate_day(generate_reference(customers_count=500), spec)
    for name in TRANSACTION_COLUMNS:
        assert first[name].tolist() == second[name].tolist(), name
    other = generate_day(REF, DaySpec(date(2026, 1, 6), 3_000, 0.05))
    assert not set(first["transaction_id"]) & set(other["transaction_id"])
    assert not set(first["row_id"].tolist()) & set(other["row_id"].tolist())


def test_the_demo_plan_covers_the_first_week_of_2026_with_hundreds_of_thousands_of_rows() -> None:
    days = {spec.day: spec for spec in DEMO_PLAN}
    week = [date(2026, 1, 1) + timedelta(days=n) for n in range(7)]
    assert all(day in days for day in week)
    assert sum(days[day].rows for day in week) >= 250_000
    assert (days[date(2026, 1, 8)].malformed_share, days[date(2026, 1, 9)].malformed_share) == (0.05, 0.5)


def test_clean_rows_are_realistic_and_become_valid_transaction_created_events() -> None:
    day = date(2026, 1, 5)
    columns = generate_day(REF, DaySpec(day, 4_000, 0.0))
    ref = reference_for(day)
    checked = validate_chunk(as_frame(columns), ref, DuplicateTracker())
    assert checked.bad.empty, checked.bad["reasons"].head().tolist()

    assert len(set(columns["currency"])) >= 5 and "JPY" in set(columns["currency"])
    assert len(set(columns["channel"])) == 8
    mccs = ref.merchants.loc[[m for m in columns["merchant_id"] if m], "mcc"]
    assert mccs.nunique() >= 10
    jpy = [a for a, c in zip(columns["amount"], columns["currency"], strict=True) if c == "JPY"]
    assert jpy and all("." not in a for a in jpy)
    booked = pd.to_datetime(pd.Series(columns["booked_at"]), format="%Y-%m-%dT%H:%M:%SZ")
    assert booked.is_monotonic_increasing and (booked.dt.hour.between(9, 18).mean() > 0.5)

    out = transform_chunk(checked.good, ref, Movements(ref.accounts.index))
    schema = get_catalog().get("transaction.created")
    accounts, merchants = ref.accounts, ref.merchants
    for position in range(0, 4_000, 7):
        row = {name: out.columns[name][position] for name in out.columns}
        row = {key: (None if isinstance(value, float) and np.isnan(value) else value) for key, value in row.items()}
        merchant = merchants.loc[row["merchant_id"]] if row["merchant_id"] else None
        row.update(customer_id=accounts.loc[row["account_id"], "customer_id"],
                   merchant_name=None if merchant is None else merchant["name"],
                   merchant_city=None if merchant is None else merchant["city"],
                   merchant_country=None if merchant is None else merchant["country"],
                   mcc=None if merchant is None else merchant["mcc"])
        assert schema.problems(event_data(row), "data") == [], row


@pytest.mark.parametrize("share", [0.05, 0.5])
def test_malformed_rows_are_exactly_the_share_asked_for_and_each_is_caught(share: float) -> None:
    day = date(2026, 1, 8)
    spec = DaySpec(day, 2_000, share)
    checked = validate_chunk(as_frame(generate_day(REF, spec)), reference_for(day), DuplicateTracker())
    assert len(checked.bad) == spec.malformed_rows == round(2_000 * share)
    per_defect = spec.malformed_rows // len(DEFECTS)
    assert checked.failures["unique_transaction_id"] == per_defect
    assert checked.failures["direction_valid"] == per_defect


def test_day_specs_are_parsed_and_checked() -> None:
    assert DaySpec.parse("2026-01-08:2000:0.05") == DaySpec(date(2026, 1, 8), 2_000, 0.05)
    assert DaySpec.parse("2026-01-03").rows == 40_000  # a Saturday
    with pytest.raises(ValueError, match="is not a date"):
        DaySpec.parse("2026-13-01:5")
    with pytest.raises(ValueError, match="between 0 and 1"):
        DaySpec(date(2026, 1, 1), 10, 5)


def test_the_seed_command_writes_the_source_once(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'core_banking.db'}"
    command = [sys.executable, "-m", "demobank.data_factory.core_banking", "seed", "--url", url,
               "--day", "2026-01-05:3000:0.05", "--day", "2026-01-06:1000", "--customers", "200"]
    first = subprocess.run(command, capture_output=True, text=True, check=True, cwd=PROJECT_DIR)
    assert "seeded" in first.stdout and "4,000 transactions" in first.stdout
    second = subprocess.run(command, capture_output=True, text=True, check=True, cwd=PROJECT_DIR)
    assert "already holds this data" in second.stdout

    with sqlite3.connect(tmp_path / "core_banking.db") as db:
        assert db.execute("SELECT business_date, row_count FROM export_batches ORDER BY 1").fetchall() == [
            ("2026-01-05", 3000), ("2026-01-06", 1000)]
        assert db.execute("SELECT count(*) FROM customers").fetchone()[0] == 200
        assert db.execute("SELECT count(DISTINCT currency) FROM fx_rates").fetchone()[0] == 7
        indexes = {row[1] for row in db.execute("SELECT * FROM sqlite_master WHERE type = 'index'")}
        assert "ix_transactions_business_date_row_id" in indexes


def test_make_runs_plan_adds_yesterday_so_the_daily_scheduled_run_finds_an_export() -> None:
    plan = demo_plan(date(2026, 11, 26))
    assert plan[: len(DEMO_PLAN)] == DEMO_PLAN
    assert plan[-1].day == date(2026, 11, 25) and 0 < plan[-1].rows <= 1_000
    assert demo_plan(date(2026, 1, 6)) == DEMO_PLAN  # yesterday is already a demo day: not given twice
    columns = generate_day(REF, plan[-1])
    assert set(columns["business_date"]) == {"2026-11-25"}
    assert all(value.startswith("2026-11-25") for value in columns["booked_at"] if value[:4].isdigit())


SMALL_PLAN = (DaySpec(date(2026, 1, 5), 300, 0.0),)


def _sqlite_tables(path: Path) -> set[str]:
    with sqlite3.connect(path) as db:
        return {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}


def test_the_seed_refuses_a_database_it_did_not_create_and_drops_nothing(tmp_path: Path) -> None:
    """A real core banking database has a `customers` table too: the seed names the database and the tables, writes
    nothing and drops nothing (it used to drop and re-create every table of its own names)."""
    path = tmp_path / "bank.db"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE customers (customer_id text PRIMARY KEY, name text)")
        db.execute("INSERT INTO customers VALUES ('C-1', 'Ada Real')")
        db.execute("CREATE TABLE general_ledger (id text)")
    command = [sys.executable, "-m", "demobank.data_factory.core_banking", "seed", "--url", f"sqlite:///{path}",
               "--day", "2026-01-05:300", "--customers", "20"]

    refused = subprocess.run(command, capture_output=True, text=True, check=False, cwd=PROJECT_DIR)

    assert refused.returncode == 1
    assert f"error: refusing to seed sqlite:///{path} with the core_banking demo data" in refused.stderr
    assert "holds 2 table(s) that this seed did not create (customers, general_ledger)" in refused.stderr
    assert _sqlite_tables(path) == {"customers", "general_ledger"}
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT * FROM customers").fetchall() == [("C-1", "Ada Real")]


def test_the_seed_marks_the_database_it_creates_and_reseeds_only_its_own_tables(tmp_path: Path) -> None:
    from sqlalchemy import create_engine

    from demobank.data_factory.core_banking import seed
    from demobank.db.seed_marker import MARKER_TABLE

    path = tmp_path / "core_banking.db"
    engine = create_engine(f"sqlite:///{path}")
    try:
        assert seed(engine, SMALL_PLAN, customers_count=20).seeded
        assert MARKER_TABLE in _sqlite_tables(path)
        assert not seed(engine, SMALL_PLAN, customers_count=20).seeded  # marked, same plan: nothing to do
        with sqlite3.connect(path) as db:  # someone adds a table of their own to the demo database later
            db.execute("CREATE TABLE notes (note text)")
            db.execute("INSERT INTO notes VALUES ('mine')")
        again = seed(engine, SMALL_PLAN, customers_count=20, force=True)
    finally:
        engine.dispose()

    assert again.seeded
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT note FROM notes").fetchall() == [("mine",)]
        assert db.execute("SELECT count(*) FROM transactions").fetchone()[0] == 300


def test_a_database_seeded_before_markers_existed_is_adopted(tmp_path: Path) -> None:
    """`make run` homes seeded by earlier versions hold the generator's tables and fingerprint but no marker."""
    from sqlalchemy import create_engine

    from demobank.data_factory.core_banking import seed
    from demobank.db.seed_marker import MARKER_TABLE

    path = tmp_path / "core_banking.db"
    engine = create_engine(f"sqlite:///{path}")
    try:
        seed(engine, SMALL_PLAN, customers_count=20)
        with sqlite3.connect(path) as db:
            db.execute(f"DROP TABLE {MARKER_TABLE}")
        result = seed(engine, SMALL_PLAN, customers_count=20)
    finally:
        engine.dispose()

    assert not result.seeded  # recognised by its fingerprint: the same data, nothing to do
    assert MARKER_TABLE in _sqlite_tables(path)
