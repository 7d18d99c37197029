"""Warehouse writes (COPY text escaping, the idempotent upsert), the Asset URIs (as Airflow 3.3.2 normalises them),
and the data quality record's write and read API."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import text

from demobank.data_factory import warehouse as wh
from demobank.data_factory.assets import customer_assets, transaction_assets
from demobank.data_factory.quality import CheckResult, QualityRecorder, TableCounts, record_failure, run_history
from demobank.data_factory.sources import (
    base_uri_for_url,
    declared_base_uri,
    table_uri,
)
from demobank.db.engine import get_engine
from demobank.db.migrate import upgrade
from tests.data_factory.fixtures import postgres_database_fixture  # noqa: F401 - fixture
from tests.db.conftest import _isolated_engines  # noqa: F401 - autouse fixture

TRICKY = ["plain", "tab\there", "new\nline", "back\\slash", "\\N", None, "cr\rhere", "ünïcødé €"]


@pytest.mark.postgres
def test_copy_text_carries_any_text_into_postgresql(postgres_database: str) -> None:
    engine = get_engine(postgres_database)
    with engine.begin() as connection:
        connection.exec_driver_sql("CREATE TABLE t (n int, v text)")
        wh.bulk_insert(connection, "t", ["n", "v"], [np.array([str(i) for i in range(len(TRICKY))], dtype=object),
                                                       np.array(TRICKY, dtype=object)])
        stored = [row[0] for row in connection.execute(text("SELECT v FROM t ORDER BY n"))]
    assert stored == TRICKY


def test_copy_text_escapes_only_where_needed() -> None:
    buffer = wh.copy_text([["a", "b"], ["x\ty", None]])
    assert buffer.getvalue() == "a\tx\\ty\nb\t\\N\n"
    assert wh.copy_text([["a\tb"]], may_need_escaping=[False]).getvalue() == "a\tb\n"  # trusted: left alone


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def warehouse_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'warehouse.db'}"
    return request.getfixturevalue("postgres_database")


def test_the_upsert_inserts_changes_and_leaves_unchanged_rows_alone(warehouse_url: str) -> None:
    engine = get_engine(warehouse_url)
    wh.ensure_schema(engine)
    wh.ensure_schema(engine)  # idempotent
    columns = ["merchant_id", "name", "mcc", "city", "country", "category"]

    def load(rows: list[list[str]], load_key: int) -> int:
        with engine.begin() as connection:
            wh.create_temp_like(connection, wh.merchants, "tmp_m", columns)
            wh.bulk_insert(connection, "tmp_m", columns, [np.array(c, dtype=object) for c in zip(*rows, strict=True)])
            return wh.upsert_from(connection, wh.merchants, "tmp_m", columns, compare=columns[1:],
                                  extra_values={"last_load": load_key})

    rows = [["MER-1", "Rewe", "5411", "Berlin", "DE", "groceries"], ["MER-2", "Shell", "5541", "Paris", "FR", "fuel"]]
    assert load(rows, 1) == 2
    extra = ", xmin::text" if engine.dialect.name == "postgresql" else ""
    with engine.connect() as connection:
        before = connection.execute(text(f"SELECT *{extra} FROM merchants ORDER BY merchant_id")).all()
    assert load(rows, 2) == 0
    with engine.connect() as connection:
        assert connection.execute(text(f"SELECT *{extra} FROM merchants ORDER BY merchant_id")).all() == before
    rows[1][3] = "Lyon"
    assert load(rows, 3) == 1
    with engine.connect() as connection:
        assert connection.execute(text("SELECT merchant_id, city, last_load FROM merchants ORDER BY 1")).all() == [
            ("MER-1", "Berlin", 1), ("MER-2", "Lyon", 3)]


# -- Asset URIs ------------------------------------------------------------------------------------------------


def test_asset_uris_are_declared_in_the_form_airflow_stores() -> None:
    from airflow.sdk import Asset

    sqlite_base = base_uri_for_url("sqlite:////tmp/x/core_banking.db")
    assert sqlite_base == "sqlite:/tmp/x/core_banking.db"
    # Airflow's normalisation drops an empty authority and would misread SQLAlchemy's four slashes: declare ours.
    assert Asset(name="a", uri="sqlite:///tmp/x/core_banking.db/transactions").uri == table_uri(sqlite_base,
                                                                                                "transactions")
    assert Asset(name="b", uri="sqlite:////tmp/x/core_banking.db/t").uri == "sqlite://tmp/x/core_banking.db/t"
    pg_base = base_uri_for_url("postgresql+psycopg2://u:secret@db.internal/warehouse")
    assert pg_base == "postgres://db.internal:5432/warehouse/public"  # no credentials in lineage
    uri = table_uri(pg_base, "transactions")
    assert Asset(name="c", uri=uri).uri == uri  # the postgres provider's normaliser keeps it as is
    assert Asset(name="d", uri="postgresql://db.internal/warehouse/public/transactions").uri == uri


def test_declared_uris_come_from_the_environment(tmp_path: Path) -> None:
    env = {"DEMOBANK_WAREHOUSE_DB": str(tmp_path / "w.db")}
    assert declared_base_uri("warehouse", env) == f"sqlite:{tmp_path / 'w.db'}"
    env["DEMOBANK_WAREHOUSE_ASSET_URI"] = "postgresql://postgres:5432/warehouse/public/"
    assert declared_base_uri("warehouse", env) == "postgres://postgres:5432/warehouse/public"


def test_every_table_of_the_pipelines_is_an_asset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEMOBANK_CORE_BANKING_ASSET_URI", "postgres://core:5432/core_banking/public")
    monkeypatch.setenv("DEMOBANK_WAREHOUSE_ASSET_URI", "postgres://dw:5432/warehouse/public")
    monkeypatch.setenv("DEMOBANK_CORE_BANKING_API_URL", "https://core.example/api")
    assets = transaction_assets()
    assert assets.transactions.uri == "postgres://dw:5432/warehouse/public/transactions"
    assert assets.source_transactions.name == "core_banking.transactions"
    written = {asset.uri.rsplit("/", 1)[-1] for asset in (assets.transactions, assets.accounts, assets.merchants,
                                                         assets.balances, assets.quarantine, assets.loads)}
    assert written == {"transactions", "accounts", "merchants", "account_daily_balances", "quarantine_transactions",
                       "loads"}
    assert customer_assets().api_customers.uri == "https://core.example/api/customers"


# -- the data quality record -------------------------------------------------------------------------------------


def test_the_quality_record_is_written_per_run_and_read_as_plain_dicts(tmp_path: Path) -> None:
    from datetime import date

    url = f"sqlite:///{tmp_path / 'demobank.db'}"
    upgrade(url)
    engine = get_engine(url)
    first = QualityRecorder(engine, "dag", "run-1")
    first.start(date(2026, 1, 5), max_bad_share=0.1)
    first.checks("t", [CheckResult("amount_decimal", "types", "warning", checked_rows=10, failed_rows=1)])
    first.checks("t", [CheckResult("amount_decimal", "types", "passed", checked_rows=10, failed_rows=0)])  # retried
    first.tables([TableCounts("warehouse.transactions", "sqlite:/w.db/transactions", rows_in=10, rows_out=9,
                              detail={"inserted": 9})])
    first.update(rows_in=10, rows_loaded=9, rows_quarantined=1, bad_share=0.1)
    first.finish("success")
    second = QualityRecorder(engine, "dag", "run-2")
    second.start(date(2026, 1, 6))
    record_failure("dag", "run-2", "validate_and_load", ValueError("50.0% bad, above 10.0%"), engine=engine)
    record_failure("dag", "run-2", "publish_events", "later", engine=engine)  # the first failure is the cause

    history = run_history(engine, "dag", limit=10)
    assert [run["run_id"] for run in history] == ["run-2", "run-1"]
    failed, ok = history
    assert (failed["status"], failed["failed_task"], failed["error"]) == ("failed", "validate_and_load",
                                                                          "50.0% bad, above 10.0%")
    assert ok["status"] == "success" and ok["business_date"] == "2026-01-05" and ok["duration_seconds"] >= 0
    assert ok["checks"] == [{"name": "amount_decimal", "kind": "types", "table": None, "status": "passed",
                             "task_id": "t", "checked_rows": 10, "failed_rows": 0, "message": None,
                             "checked_at": ok["checks"][0]["checked_at"]}]
    assert ok["tables"][0]["detail"] == {"inserted": 9}
    assert run_history(engine, "other") == []

    first.start(date(2026, 1, 5))  # the run is cleared and runs again: its record starts over
    again = next(run for run in run_history(engine, "dag") if run["run_id"] == "run-1")
    assert again["status"] == "running" and again["checks"] == [] and again["tables"] == []


@pytest.mark.postgres
def test_binary_copy_carries_numbers_dates_and_texts_exactly(postgres_database: str) -> None:
    """pgcopy's binary rows, into PostgreSQL and back: numerics of each scale (zero, negative, large, at the limit of
    their decimals), dates, timestamps, NULLs, texts all as long (in the record), codes (once per combination)."""
    import pyarrow as pa

    from demobank.data_factory.pgcopy import BinaryColumn, BinaryCopyReader, binary_rows

    units = np.array([0, 1, -1, 125_400, 99_999_999_999_999, -123_456_789], dtype=np.int64)
    n = len(units)
    columns = [
        BinaryColumn("id", "int8", np.arange(n, dtype=np.int64) - 2),
        BinaryColumn("day", "date", np.array([0, 1, -1, 9_500, 9_501, 9_502], dtype=np.int64)),
        BinaryColumn("at", "timestamp", np.array([0, 1, -1, 10**15, 2 * 10**15, 3 * 10**15], dtype=np.int64)),
        BinaryColumn("n4", "numeric", units, scale=4),
        BinaryColumn("n2", "numeric", units, scale=2),
        BinaryColumn("n8", "numeric", units, scale=8),
        BinaryColumn("rate", "numeric", pa.array([91_834_539, 100_000_000] * 3), scale=8, few=True),
        BinaryColumn("k", "int4", np.full(n, 7, dtype=np.int64)),
        BinaryColumn("vd", "date_text", pa.array(["2026-01-05", None, "2000-01-01", "1999-12-31", None, "2026-02-28"])),
        BinaryColumn("code", "text", pa.array(["EUR", "GBP", "EUR", "EUR", "JPY", "GBP"]), few=True),
        BinaryColumn("same", "text", pa.array(["TXN-1", "TXN-2", "TXN-3", "TXN-4", "TXN-5", "TXN-6"])),
        BinaryColumn("free", "text", pa.array(["tab\there", None, "", "ünï €", "\\N", "x" * 140])),
        BinaryColumn("more", "text", pa.array([None, "a", "bb", None, "\n", "c"])),
    ]
    names, rows = binary_rows(columns)
    assert names[:2] == ["rate", "vd"] and names[-2:] == ["free", "more"]  # few-valued first, texts last
    engine = get_engine(postgres_database)
    with engine.begin() as connection:
        connection.exec_driver_sql(
            "CREATE TABLE b (id bigint, day date, at timestamptz, n4 numeric(20,4), n2 numeric(20,2), "
            "n8 numeric(28,8), rate numeric(18,8), k integer, vd date, code varchar(3), same varchar(10), "
            "free varchar(140), more text)")
        with connection.connection.driver_connection.cursor() as cursor:
            cursor.copy_expert(f"COPY b ({', '.join(names)}) FROM STDIN WITH (FORMAT binary)", BinaryCopyReader(rows),
                               size=7)  # small reads: pieces across the header, the rows and the trailer
        stored = connection.exec_driver_sql(
            "SELECT id, day::text, to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US'), n4::text, n2::text, "
            "n8::text, rate::text, k, vd::text, code, same, free, more FROM b ORDER BY id").all()
    assert [row[0] for row in stored] == [-2, -1, 0, 1, 2, 3]
    assert [row[1] for row in stored] == [(date(2000, 1, 1) + timedelta(days=d)).isoformat()
                                          for d in (0, 1, -1, 9_500, 9_501, 9_502)]
    assert [row[2] for row in stored][:3] == ["2000-01-01 00:00:00.000000", "2000-01-01 00:00:00.000001",
                                               "1999-12-31 23:59:59.999999"]
    assert [row[3] for row in stored] == ["0.0000", "0.0001", "-0.0001", "12.5400", "9999999999.9999",
                                          "-12345.6789"]
    assert [row[4] for row in stored] == ["0.00", "0.01", "-0.01", "1254.00", "999999999999.99", "-1234567.89"]
    assert [row[5] for row in stored] == ["0.00000000", "0.00000001", "-0.00000001", "0.00125400",
                                          "999999.99999999", "-1.23456789"]
    assert [row[6] for row in stored] == ["0.91834539", "1.00000000"] * 3
    assert {row[7] for row in stored} == {7}
    assert [row[8] for row in stored] == ["2026-01-05", None, "2000-01-01", "1999-12-31", None, "2026-02-28"]
    assert [row[9:] for row in stored] == [
        ("EUR", "TXN-1", "tab\there", None), ("GBP", "TXN-2", None, "a"), ("EUR", "TXN-3", "", "bb"),
        ("EUR", "TXN-4", "ünï €", None), ("JPY", "TXN-5", "\\N", "\n"), ("GBP", "TXN-6", "x" * 140, "c")]


@pytest.mark.postgres
def test_a_warehouse_with_the_former_b_tree_day_index_is_migrated_to_brin(postgres_database: str) -> None:
    engine = get_engine(postgres_database)
    wh.ensure_schema(engine)
    find = text("SELECT indexdef FROM pg_indexes WHERE tablename = 'transactions' AND indexname = :n")
    with engine.begin() as connection:
        assert " USING brin " in connection.execute(find, {"n": wh.TRANSACTIONS_DAY_INDEX}).scalar()
        connection.exec_driver_sql(f"DROP INDEX {wh.TRANSACTIONS_DAY_INDEX}")  # as made before: a B-tree
        connection.exec_driver_sql(f"CREATE INDEX {wh.TRANSACTIONS_DAY_INDEX} ON transactions "
                                   "(business_date, source_row_id)")
    wh.ensure_schema(engine)
    wh.ensure_schema(engine)  # idempotent
    with engine.connect() as connection:
        definitions = [row[0] for row in connection.execute(text(
            "SELECT indexdef FROM pg_indexes WHERE tablename = 'transactions' ORDER BY indexname"))]
    assert len(definitions) == 2 and any(" USING brin (business_date, source_row_id)" in d for d in definitions)
    assert wh.main(["init", "--url", postgres_database]) == 0
