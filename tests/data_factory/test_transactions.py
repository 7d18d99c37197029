"""The steps of ``data_factory_transactions`` on real databases (SQLite and PostgreSQL), without Airflow: the source
seeded by the real generator, the real warehouse writes, the real outbox."""

from __future__ import annotations

import json
import sqlite3
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from sqlalchemy import select, text

from demobank.data_factory import transactions as tx
from demobank.data_factory import warehouse as wh
from demobank.data_factory.quality import run_detail
from demobank.data_factory.sources import SourceUnavailableError
from demobank.db.models import OutboxEvent
from demobank.events.catalog import get_catalog
from tests.data_factory.fixtures import (  # noqa: F401 - fixtures
    CLEAN_DAY,
    FIVE_PERCENT_DAY,
    HALF_BAD_DAY,
    Databases,
    count,
    dbs_fixture,
    postgres_database_fixture,
    postgres_source_fixture,
    sqlite_source_fixture,
    table_rows,
)
from tests.db.conftest import _isolated_engines  # noqa: F401 - autouse fixture

DAG = tx.DAG_ID


def run_day(dbs: Databases, day: date, run_id: str, *, max_bad_share: float = 0.10, chunk_size: int = 700) -> dict:
    """The three steps as the DAG runs them (small chunks, so that every day spans several)."""
    checked = tx.check_source_step(dag_id=DAG, run_id=run_id, conf_date=day.isoformat(), fallback=None,
                                   logical_date=None, max_bad_share=max_bad_share, source_url=dbs.source_url,
                                   suite_engine=dbs.suite)
    loaded = tx.load_step(dag_id=DAG, run_id=run_id, task_id="validate_and_load", day=checked["day"],
                          expected_rows=checked["expected_rows"], max_bad_share=checked["max_bad_share"],
                          source_url=dbs.source_url, warehouse_url=dbs.warehouse_url, suite_engine=dbs.suite,
                          chunk_size=chunk_size)
    published = tx.publish_step(dag_id=DAG, run_id=run_id, task_id="publish_events", warehouse_url=dbs.warehouse_url,
                                suite_engine=dbs.suite)
    return {"checked": checked, "loaded": loaded, "published": published}


def outbox_ids(dbs: Databases) -> list[str]:
    with dbs.suite.connect() as connection:
        return list(connection.scalars(select(OutboxEvent.id).order_by(OutboxEvent.sequence)))


def test_a_day_with_5_percent_malformed_rows_loads_the_rest_and_quarantines_them_with_reasons(dbs: Databases) -> None:
    result = run_day(dbs, FIVE_PERCENT_DAY, "run-1")

    loaded = result["loaded"]
    assert (loaded["rows_in"], loaded["rows_good"], loaded["rows_bad"]) == (2_000, 1_900, 100)
    assert (loaded["inserted"], loaded["changed"], loaded["committed"]) == (1_900, 0, True)
    engine = dbs.warehouse
    assert count(engine, "SELECT count(*) FROM transactions WHERE business_date = :d", d=FIVE_PERCENT_DAY) == 1_900
    assert count(engine, "SELECT count(*) FROM quarantine_transactions WHERE business_date = :d",
                 d=FIVE_PERCENT_DAY) == 100
    with engine.connect() as connection:
        reasons = [row[0] for row in connection.execute(text("SELECT reasons FROM quarantine_transactions"))]
        raw = json.loads(connection.execute(text("SELECT raw_row FROM quarantine_transactions LIMIT 1")).scalar())
        categories = {row[0] for row in connection.execute(text("SELECT DISTINCT category FROM transactions"))}
    balances = count(engine, "SELECT count(*) FROM account_daily_balances WHERE business_date = :d",
                     d=FIVE_PERCENT_DAY)
    # One of each generated defect, every one with its own reason.
    for expected in ("is not a decimal number", "is negative", "missing amount", "has more decimals than",
                     "is not a known ISO 4217 currency", "missing account_id", "is not an account of the core",
                     "is not an RFC 3339 UTC timestamp", "direction 'DR' is not one of debit, credit",
                     "appears in an earlier row of this export"):
        assert sum(expected in reason for reason in reasons) == 10, expected
    assert set(raw) >= {"row_id", "transaction_id", "amount", "currency"}  # the raw row is kept whole
    assert {"groceries", "dining", "transport", "income", "bills", "cash"} <= categories
    assert balances > 100
    assert result["published"]["published"] == 1_900
    assert len(outbox_ids(dbs)) == 1_900

    record = run_detail(dbs.suite, DAG, "run-1")
    assert record["status"] == "success" and record["business_date"] == FIVE_PERCENT_DAY.isoformat()
    assert (record["rows_in"], record["rows_loaded"], record["rows_quarantined"]) == (2_000, 1_900, 100)
    assert record["bad_share"] == pytest.approx(0.05) and record["events_published"] == 1_900
    checks = {check["name"]: check for check in record["checks"]}
    assert checks["bad_share_threshold"]["status"] == "passed"
    assert checks["amount_decimal"]["failed_rows"] == 10 and checks["amount_decimal"]["status"] == "warning"
    assert checks["unique_transaction_id"]["failed_rows"] == 10
    tables = {t["table"]: t for t in record["tables"]}
    assert tables["core_banking.transactions"]["rows_quarantined"] == 100
    assert tables["warehouse.transactions"]["rows_out"] == 1_900


def test_re_running_a_day_changes_no_row_and_publishes_no_event_twice(dbs: Databases) -> None:
    run_day(dbs, FIVE_PERCENT_DAY, "run-1")
    engine = dbs.warehouse
    before = {table: table_rows(engine, table, key) for table, key in (
        ("transactions", "transaction_id"), ("account_daily_balances", "account_id, business_date"),
        ("quarantine_transactions", "source_row_id"), ("accounts", "account_id"), ("merchants", "merchant_id"),
        ("loads", "load_key"))}
    events_before = outbox_ids(dbs)

    again = run_day(dbs, FIVE_PERCENT_DAY, "run-2")

    assert (again["loaded"]["inserted"], again["loaded"]["changed"], again["loaded"]["unchanged"]) == (0, 0, 1_900)
    for table, rows in before.items():  # on PostgreSQL xmin proves that not even a new row version was written
        assert table_rows(engine, table, {"transactions": "transaction_id",
                                          "account_daily_balances": "account_id, business_date",
                                          "quarantine_transactions": "source_row_id", "accounts": "account_id",
                                          "merchants": "merchant_id", "loads": "load_key"}[table]) == rows, table
    assert again["published"]["published"] == 0
    assert outbox_ids(dbs) == events_before


def test_a_day_with_half_of_its_rows_malformed_fails_with_the_share_and_the_threshold_and_loads_nothing(
        dbs: Databases) -> None:
    with pytest.raises(tx.DataQualityError) as caught:
        run_day(dbs, HALF_BAD_DAY, "run-bad")

    message = str(caught.value)
    assert "50.0% of the rows of 2026-01-07 are bad (500 of 1,000)" in message
    assert "above the threshold of 10.0%" in message and "nothing was loaded" in message
    engine = dbs.warehouse
    assert count(engine, "SELECT count(*) FROM transactions") == 0
    assert count(engine, "SELECT count(*) FROM account_daily_balances") == 0
    assert count(engine, "SELECT count(*) FROM loads") == 0
    assert count(engine, "SELECT count(*) FROM quarantine_transactions") == 500  # kept for inspection
    record = run_detail(dbs.suite, DAG, "run-bad")
    assert record["rows_quarantined"] == 500 and record["rows_loaded"] == 0
    assert {c["name"]: c["status"] for c in record["checks"]}["bad_share_threshold"] == "failed"

    # A higher threshold for this run lets the good half through.
    loaded = run_day(dbs, HALF_BAD_DAY, "run-allowed", max_bad_share=0.6)["loaded"]
    assert (loaded["inserted"], loaded["rows_bad"]) == (500, 500)


def test_an_export_with_fewer_rows_than_announced_is_not_loaded(dbs: Databases) -> None:
    with pytest.raises(tx.DataQualityError, match="incomplete: 1,500 rows read but export_batches announces 1,600"):
        tx.load_day(source_url=dbs.source_url, warehouse_engine=dbs.warehouse, day=CLEAN_DAY, run_id="r",
                    load_id="d/r", expected_rows=1_600)
    assert count(dbs.warehouse, "SELECT count(*) FROM transactions") == 0


def test_published_events_are_valid_transaction_created_events(dbs: Databases) -> None:
    run_day(dbs, CLEAN_DAY, "run-clean")
    with dbs.suite.connect() as connection:
        envelopes = [json.loads(row[0]) for row in connection.execute(select(OutboxEvent.envelope))]
    assert len(envelopes) == 1_500
    schema = get_catalog().get("transaction.created")
    assert all(not schema.problems(envelope["data"], "data") for envelope in envelopes)
    channels = {envelope["data"]["channel"] for envelope in envelopes}
    assert {"card_present", "atm", "incoming_transfer"} <= channels
    card = next(e["data"] for e in envelopes if e["data"]["channel"] == "card_present")
    assert set(card["merchant"]) >= {"name", "category_code"} and card["customer_id"].startswith("CUST-")
    assert {e["subject"] for e in envelopes} == {e["data"]["transaction_id"] for e in envelopes}


def test_publishing_resumes_an_unfinished_load_without_duplicates(dbs: Databases) -> None:
    tx.load_day(source_url=dbs.source_url, warehouse_engine=dbs.warehouse, day=CLEAN_DAY, run_id="r1",
                load_id="d/r1")
    # A publisher that died after two outbox batches, before moving the cursor past the second one.
    first = tx.publish_new_transactions(dbs.warehouse, dbs.suite, batch_size=200)
    assert first.published == 1_500
    with dbs.warehouse.begin() as connection:
        connection.execute(wh.loads.update().values(publish_cursor=-1, published_rows=0, published_at=None))
    again = tx.publish_new_transactions(dbs.warehouse, dbs.suite, batch_size=500)
    assert again.published == 1_500  # republished ...
    assert len(outbox_ids(dbs)) == 1_500  # ... but the outbox ignored them (idempotency keys)
    assert tx.publish_new_transactions(dbs.warehouse, dbs.suite).published == 0


def test_duplicates_across_chunks_are_caught(dbs: Databases) -> None:
    report = tx.load_day(source_url=dbs.source_url, warehouse_engine=dbs.warehouse, day=FIVE_PERCENT_DAY,
                         run_id="r", load_id="d/r", chunk_size=97)
    assert report.failures["unique_transaction_id"] == 10
    assert report.rows_bad == 100


@pytest.mark.postgres
def test_a_first_load_with_a_key_that_exists_under_another_day_falls_back_to_the_upsert(
        postgres_source: str, postgres_database: str) -> None:
    from demobank.db.engine import get_engine

    engine = get_engine(postgres_database)
    tx.load_day(source_url=postgres_source, warehouse_engine=engine, day=CLEAN_DAY, run_id="r1", load_id="d/r1")
    with engine.begin() as connection:  # move one transaction to another day: the next load's COPY will collide
        moved = connection.execute(text(
            "UPDATE transactions SET business_date = '2026-01-06' WHERE transaction_id = "
            "(SELECT min(transaction_id) FROM transactions) RETURNING transaction_id")).scalar()
        connection.execute(text("DELETE FROM transactions WHERE business_date = '2026-01-05'"))
    report = tx.load_day(source_url=postgres_source, warehouse_engine=engine, day=CLEAN_DAY, run_id="r2",
                         load_id="d/r2")
    assert report.committed and not report.fast_path
    assert (report.inserted, report.changed) == (1_499, 1)
    assert count(engine, "SELECT count(*) FROM transactions WHERE transaction_id = :t AND business_date = :d",
                 t=moved, d=CLEAN_DAY) == 1


@pytest.mark.parametrize(("conf", "message"), [
    ("2026-13-01", "is not a date YYYY-MM-DD"),
    ("05.01.2026", "is not a date YYYY-MM-DD"),
    (20260105, "must be a text YYYY-MM-DD"),
    ("2999-01-01", "is in the future"),
])
def test_a_malformed_conf_date_is_refused_with_what_to_do(conf: object, message: str) -> None:
    with pytest.raises(tx.InvalidRunConfError, match=message) as caught:
        tx.resolve_day(conf, None)
    assert '{"date": "2026-01-05"}' in str(caught.value) or "future" in message


def test_the_default_day_is_the_one_before_the_run() -> None:
    assert tx.resolve_day(None, datetime(2026, 1, 6, 2, 0, tzinfo=UTC)) == date(2026, 1, 5)
    assert tx.resolve_day("2026-01-05", None) == date(2026, 1, 5)
    with pytest.raises(tx.InvalidRunConfError, match="max_bad_share"):
        tx.resolve_max_bad_share(1.5)


def test_a_missing_source_fails_with_what_is_missing(tmp_path: Path, sqlite_source: str) -> None:
    missing_file = f"sqlite:///{tmp_path / 'nowhere' / 'core_banking.db'}"
    with pytest.raises(SourceUnavailableError, match="cannot open the core banking source"):
        tx.check_source(missing_file, CLEAN_DAY)
    assert not (tmp_path / "nowhere" / "core_banking.db").exists()  # read-only: no empty database was created

    empty = tmp_path / "empty.db"
    sqlite3.connect(empty).execute("CREATE TABLE other (x)").connection.commit()
    with pytest.raises(SourceUnavailableError, match="has no table transactions, export_batches"):
        tx.check_source(f"sqlite:///{empty}", CLEAN_DAY)

    with pytest.raises(SourceUnavailableError, match=r"no export for business day 2025-12-31 .*2026-01-05 to "
                                                     r"2026-01-07"):
        tx.check_source(sqlite_source, date(2025, 12, 31))

    status = tx.check_source(sqlite_source, CLEAN_DAY)
    assert status.expected_rows == 1_500 and "EUR" in status.currencies


def test_a_missing_source_is_recorded_in_the_quality_record(dbs: Databases) -> None:
    with pytest.raises(SourceUnavailableError):
        tx.check_source_step(dag_id=DAG, run_id="missing", conf_date="2025-12-31", fallback=None, logical_date=None,
                             max_bad_share=None, source_url=dbs.source_url, suite_engine=dbs.suite)
    record = run_detail(dbs.suite, DAG, "missing")
    assert record["business_date"] == "2025-12-31"
    check = record["checks"][0]
    assert (check["name"], check["status"]) == ("source_available", "failed")
    assert "no export for business day 2025-12-31" in check["message"]


def test_balances_carry_over_from_the_previous_day(dbs: Databases) -> None:
    run_day(dbs, CLEAN_DAY, "day-1")
    run_day(dbs, FIVE_PERCENT_DAY, "day-2")
    with dbs.warehouse.connect() as connection:
        pairs = connection.execute(text(
            "SELECT a.closing_balance, b.opening_balance FROM account_daily_balances a JOIN account_daily_balances b "
            "ON a.account_id = b.account_id AND a.business_date = :d1 AND b.business_date = :d2"),
            {"d1": CLEAN_DAY, "d2": FIVE_PERCENT_DAY}).all()
        sample = connection.execute(text(
            "SELECT opening_balance, debits, credits, closing_balance FROM account_daily_balances LIMIT 50")).all()
    assert pairs and all(float(a) == pytest.approx(float(b)) for a, b in pairs)
    assert all(float(o) - float(d) + float(c) == pytest.approx(float(cl)) for o, d, c, cl in sample)


TRICKY_TEXTS = ["tab\there", "new\nline and cr\rhere", "back\\slash, \\N, \\t as text", "\\N", "", "ünïcødé € 漢字",
                "'quoted' \"both\""]


@pytest.fixture(name="tricky_source")
def tricky_source_fixture() -> Iterator[str]:
    """A PostgreSQL source whose day has free texts with every character ``COPY`` escapes, a code to normalise on a
    row with such a text, and a malformed amount with a tab in it."""
    from sqlalchemy import create_engine
    from sqlalchemy.engine import make_url

    from demobank.data_factory.core_banking import DaySpec, seed
    from demobank.data_factory.sources import source_write_engine
    from demobank.db.engine import dispose_engines
    from tests.db.conftest import _find_postgres

    admin_url = _find_postgres()
    name = f"demobank_test_tricky_{uuid.uuid4().hex[:10]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    try:
        engine = source_write_engine(url)
        seed(engine, (DaySpec(CLEAN_DAY, 300, 0.0),), customers_count=60)
        with engine.begin() as connection:
            ids = [row[0] for row in connection.execute(text(
                "SELECT row_id FROM transactions WHERE currency = 'EUR' ORDER BY row_id LIMIT :n"),
                {"n": len(TRICKY_TEXTS) + 2})]
            for row_id, value in zip(ids, TRICKY_TEXTS, strict=False):
                connection.execute(text("UPDATE transactions SET description = :v, counterparty_name = :v "
                                        "WHERE row_id = :r"), {"v": value, "r": row_id})
            connection.execute(text("UPDATE transactions SET currency = ' eur' WHERE row_id = :r"), {"r": ids[0]})
            connection.execute(text("UPDATE transactions SET amount = '12,50\t', description = 'bad\tamount' "
                                    "WHERE row_id = :r"), {"r": ids[-1]})
        engine.dispose()
        yield url
    finally:
        dispose_engines()
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.mark.postgres
@pytest.mark.parametrize("warehouse_kind", ["postgres", "sqlite"])
def test_texts_with_copy_escapes_arrive_as_they_were_from_a_postgresql_source(
        tricky_source: str, warehouse_kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    """The PostgreSQL path end to end: COPY text parsed by Arrow (escapes kept), checked, the binary COPY into a
    PostgreSQL warehouse (texts unescaped) or the rows into SQLite, and the quarantine's raw row."""
    from demobank.db.engine import get_engine

    warehouse_url = (request.getfixturevalue("postgres_database") if warehouse_kind == "postgres"
                     else f"sqlite:///{tmp_path / 'warehouse.db'}")
    engine = get_engine(warehouse_url)
    report = tx.load_day(source_url=tricky_source, warehouse_engine=engine, day=CLEAN_DAY, run_id="r",
                         load_id="d/r", chunk_size=97)
    assert (report.rows_in, report.rows_good, report.rows_bad, report.inserted) == (300, 299, 1, 299)

    source = get_engine(tricky_source)
    with source.connect() as connection:
        expected = {row[0]: (row[1], row[2], row[3]) for row in connection.execute(text(
            "SELECT transaction_id, description, counterparty_name, upper(trim(currency)) FROM transactions"))}
    with engine.connect() as connection:
        loaded = {row[0]: (row[1], row[2], row[3]) for row in connection.execute(text(
            "SELECT transaction_id, description, counterparty_name, currency FROM transactions"))}
        quarantined = connection.execute(text("SELECT reasons, raw_row FROM quarantine_transactions")).one()
    assert set(TRICKY_TEXTS) <= {description for description, _name, _currency in loaded.values()}
    assert all(loaded[key] == expected[key] for key in loaded), [
        (loaded[key], expected[key]) for key in loaded if loaded[key] != expected[key]][:3]
    assert "amount '12,50" in quarantined[0] and "is not a decimal number" in quarantined[0]
    raw = json.loads(quarantined[1])
    assert (raw["amount"], raw["description"]) == ("12,50\t", "bad\tamount")  # the export's own text

    again = tx.load_day(source_url=tricky_source, warehouse_engine=engine, day=CLEAN_DAY, run_id="r2",
                        load_id="d/r2", chunk_size=1000)
    assert (again.inserted, again.changed, again.unchanged) == (0, 0, 299)  # the same values, compared in the upsert
