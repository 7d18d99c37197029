"""The Data Factory's pipelines through a live `make run`, triggered over the REST API with a conf.

`make run` seeds the core banking source (`.airflow/core_banking.db`) with the generator's demo plan; these tests use
its small days: 2026-01-08 (2,000 rows, 5% malformed) and 2026-01-09 (2,000 rows, 50% malformed), and 2025-12-31,
a day that was never exported (a missing source). The warehouse is `.airflow/warehouse.db`, the outbox and the
data quality record are in the suite's database `.airflow/demobank.db`.
"""

from __future__ import annotations

import sqlite3
import time
import uuid
from contextlib import closing
from typing import Any

import pytest

from tests.e2e.api import Api
from tests.e2e.conftest import LivePlatform
from tests.e2e.data_factory import DAG, HALF_BAD_DAY, NEVER_EXPORTED, SAMPLE_DAY, SYNC, trigger

pytestmark = pytest.mark.e2e


def query(platform: LivePlatform, database: str, sql: str, *params: Any) -> list[tuple]:
    with closing(sqlite3.connect(platform.home / database, timeout=60)) as db:
        return db.execute(sql, params).fetchall()


def snapshot(platform: LivePlatform, day: str) -> dict[str, list[tuple]]:
    """The day's rows of the warehouse (other days' runs may run meanwhile) and the dimensions."""
    tables = {table: query(platform, "warehouse.db", f"SELECT * FROM {table} WHERE business_date = ? "
                           "ORDER BY 1, 2", day)
              for table in ("transactions", "account_daily_balances", "quarantine_transactions")}
    tables.update({table: query(platform, "warehouse.db", f"SELECT * FROM {table} ORDER BY 1")
                   for table in ("accounts", "merchants", "loads")})
    return tables


def day_events(platform: LivePlatform, day: str) -> int:
    return query(platform, "demobank.db", "SELECT count(*) FROM outbox_events WHERE type = 'transaction.created' "
                 "AND subject LIKE ?", f"TXN-{day.replace('-', '')}%")[0][0]


def quality(platform: LivePlatform, run_id: str) -> dict[str, Any]:
    rows = query(platform, "demobank.db", "SELECT status, failed_task, error, rows_in, rows_loaded, rows_quarantined, "
                 "bad_share, events_published FROM data_quality_runs WHERE dag_id = ? AND run_id = ?", DAG, run_id)
    keys = ("status", "failed_task", "error", "rows_in", "rows_loaded", "rows_quarantined", "bad_share",
            "events_published")
    return dict(zip(keys, rows[0], strict=True)) if rows else {}


def test_a_sample_day_loads_the_warehouse_and_a_re_run_changes_nothing(
        api: Api, live_platform: LivePlatform, data_factory_runs: dict[str, str]) -> None:
    run_id = data_factory_runs[SAMPLE_DAY]
    run = api.wait_for_run(DAG, run_id)
    assert run["state"] == "success", api.task_states(DAG, run_id)

    assert query(live_platform, "warehouse.db", "SELECT count(*) FROM transactions WHERE business_date = ?",
                 SAMPLE_DAY)[0][0] == 1_900
    assert query(live_platform, "warehouse.db", "SELECT count(*) FROM quarantine_transactions WHERE business_date = ?",
                 SAMPLE_DAY)[0][0] == 100
    record = quality(live_platform, run_id)
    assert (record["status"], record["rows_in"], record["rows_loaded"], record["rows_quarantined"],
            record["events_published"]) == ("success", 2_000, 1_900, 100, 1_900)
    assert record["bad_share"] == pytest.approx(0.05)
    assert day_events(live_platform, SAMPLE_DAY) == 1_900
    assert api.xcom(DAG, run_id, "validate_and_load")["inserted"] == 1_900
    before = snapshot(live_platform, SAMPLE_DAY)

    rerun_id = trigger(api, DAG, {"date": SAMPLE_DAY})
    rerun = api.wait_for_run(DAG, rerun_id)
    assert rerun["state"] == "success", api.task_states(DAG, rerun_id)

    loaded = api.xcom(DAG, rerun_id, "validate_and_load")
    assert (loaded["inserted"], loaded["changed"], loaded["unchanged"]) == (0, 0, 1_900)
    assert api.xcom(DAG, rerun_id, "publish_events")["published"] == 0
    assert snapshot(live_platform, SAMPLE_DAY) == before  # not one warehouse row changed
    assert day_events(live_platform, SAMPLE_DAY) == 1_900  # no event published twice


def test_a_day_with_half_of_its_rows_malformed_fails_in_validate_and_load_with_the_share_and_the_threshold(
        api: Api, live_platform: LivePlatform, data_factory_runs: dict[str, str]) -> None:
    run_id = data_factory_runs[HALF_BAD_DAY]
    run = api.wait_for_run(DAG, run_id)

    assert run["state"] == "failed"
    states = api.task_states(DAG, run_id)
    assert states == {"check_source": "success", "validate_and_load": "failed", "publish_events": "upstream_failed"}
    log = api.task_log(DAG, run_id, "validate_and_load", 1, contains="above the threshold")
    assert "50.0% of the rows of 2026-01-09 are bad (1,000 of 2,000), above the threshold of 10.0%" in log
    record = quality(live_platform, run_id)
    assert (record["status"], record["failed_task"], record["rows_loaded"], record["rows_quarantined"]) == (
        "failed", "validate_and_load", 0, 1_000)
    assert "above the threshold of 10.0%" in record["error"]
    assert query(live_platform, "warehouse.db", "SELECT count(*) FROM transactions WHERE business_date = ?",
                 HALF_BAD_DAY)[0][0] == 0  # nothing loaded
    assert query(live_platform, "warehouse.db", "SELECT count(*) FROM quarantine_transactions WHERE business_date = ?",
                 HALF_BAD_DAY)[0][0] == 1_000


def test_a_missing_source_fails_in_check_source_with_a_clear_message(
        api: Api, live_platform: LivePlatform, data_factory_runs: dict[str, str]) -> None:
    run_id = data_factory_runs[NEVER_EXPORTED]
    run = api.wait_for_run(DAG, run_id)

    assert run["state"] == "failed"
    tis = {ti["task_id"]: ti for ti in api.task_instances(DAG, run_id)}
    assert (tis["check_source"]["state"], tis["check_source"]["try_number"]) == ("failed", 1)  # not retried
    log = api.task_log(DAG, run_id, "check_source", 1, contains="no export for business day")
    assert "the core banking source has no export for business day 2025-12-31" in log
    record = quality(live_platform, run_id)
    assert (record["status"], record["failed_task"]) == ("failed", "check_source")


def test_a_malformed_date_is_refused_when_triggering(api: Api) -> None:
    api.wait_for_dag(DAG)
    response = api.trigger(DAG, {"date": "2026-13-45"})
    assert response.status_code == 400, response.text
    assert "date" in response.json()["detail"] and "2026-13-45" in response.json()["detail"]


def test_the_customer_sync_brings_a_new_customer_and_announces_it(api: Api, live_platform: LivePlatform) -> None:
    api.wait_for_dag(SYNC)
    customer_id = f"CUST-{uuid.uuid4().hex[:10].upper()}"
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    with closing(sqlite3.connect(live_platform.home / "core_banking.db", timeout=60)) as db, db:
        db.execute("INSERT INTO customers VALUES (?, 'Grace Example', 'grace@example.com', 'individual', 'retail', "
                   "'DE', 'de', 'mobile_app', 'verified', 'false', ?, ?)", (customer_id, now, now))

    # Until the first sync (the backfill) has set the watermark, a new customer is not announced: run until it is.
    deadline = time.monotonic() + 240
    while True:
        run_id = trigger(api, SYNC, {})
        run = api.wait_for_run(SYNC, run_id)
        assert run["state"] == "success", api.task_states(SYNC, run_id)
        events = query(live_platform, "demobank.db", "SELECT count(*) FROM outbox_events WHERE type = "
                       "'customer.created' AND subject = ?", customer_id)[0][0]
        in_warehouse = query(live_platform, "warehouse.db", "SELECT count(*) FROM customers WHERE customer_id = ?",
                             customer_id)[0][0]
        if events or time.monotonic() > deadline:
            break
        assert in_warehouse == 1  # the backfill brought it without announcing it; touch it so it counts as new
        with closing(sqlite3.connect(live_platform.home / "warehouse.db", timeout=60)) as db, db:
            db.execute("DELETE FROM customers WHERE customer_id = ?", (customer_id,))
    assert events == 1 and in_warehouse == 1
