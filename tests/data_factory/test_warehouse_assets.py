"""Warehouse writes (COPY text escaping, the idempotent upsert), the Asset URIs (as Airflow 3.3.2 normalises them),
and the data quality record's write and read API."""

from __future__ import annotations

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
