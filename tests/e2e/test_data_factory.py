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
import requests

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


# -- Monte Carlo run reports (the sandbox's integration gateway stands in for Monte Carlo) --------------------------

REPORT_TIMEOUT = 180  # the DAG processor runs DAG-level callbacks after the run ends, on a busy 2-CPU machine


def montecarlo_reports(api: Api) -> dict[str, dict[str, Any]]:
    """Every DAG run report the sandbox's Monte Carlo gateway accepted, by run id (airflow-mcd's payload)."""
    return {m["payload"]["airflow_payload"]["run_id"]: m["payload"]["airflow_payload"]
            for m in api.sandbox("montecarlo") if m["operation"] == "upload_airflow_dag_result"}


def wait_for_reports(api: Api, run_ids: list[str], timeout: float = REPORT_TIMEOUT) -> dict[str, dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while True:
        reports = montecarlo_reports(api)
        if all(run_id in reports for run_id in run_ids) or time.monotonic() > deadline:
            missing = [run_id for run_id in run_ids if run_id not in reports]
            assert not missing, f"Monte Carlo never received the reports of {missing}"
            return {run_id: reports[run_id] for run_id in run_ids}
        time.sleep(3)


def stored_reports(platform: LivePlatform, run_ids: list[str]) -> dict[str, str]:
    """The status of each run's report in the suite database's outbox of reports (``run_reports``)."""
    marks = ", ".join("?" for _ in run_ids)
    return dict(query(platform, "demobank.db", f"SELECT run_id, status FROM run_reports WHERE run_id IN ({marks})",
                      *run_ids))


def airflow_lineage(api: Api, dag_id: str) -> tuple[set[str], set[str]]:
    """The URIs of the assets Airflow itself records as read (inlets) and written (outlets) by the DAG's tasks."""
    assets = api.get("/assets", limit=1000)["assets"]
    inlets = {a["uri"] for a in assets if any(t["dag_id"] == dag_id for t in a["consuming_tasks"])}
    outlets = {a["uri"] for a in assets if any(t["dag_id"] == dag_id for t in a["producing_tasks"])}
    return inlets, outlets


def test_monte_carlo_gets_one_success_report_with_exactly_the_dags_inlets_and_outlets(
        api: Api, data_factory_runs: dict[str, str]) -> None:
    run_id = data_factory_runs[SAMPLE_DAY]
    assert api.wait_for_run(DAG, run_id)["state"] == "success"
    report = wait_for_reports(api, [run_id])[run_id]

    messages = [m for m in api.sandbox("montecarlo") if m["operation"] == "upload_airflow_dag_result"
                and m["payload"]["airflow_payload"]["run_id"] == run_id]
    assert len(messages) == 1  # one report per run
    assert (report["dag_id"], report["state"], report["success"]) == (DAG, "success", True)
    assert report["payload"]["failed_task_ids"] == []
    assert report["task_dependencies"] == {"check_source": ["validate_and_load"],
                                           "validate_and_load": ["publish_events"], "publish_events": []}
    inlets, outlets = airflow_lineage(api, DAG)
    assert inlets and outlets
    assert {i["uri"] for task in report["tasks"] for i in task["inlets"]} == inlets
    assert set(report["payload"]["dataset_inlet_uris"]) == inlets
    assert {o["uri"] for task in report["tasks"] for o in task["outlets"]} == outlets
    assert set(report["dataset_outlet_uris"]) == outlets
    assert any(uri.startswith("sqlite:/") and uri.endswith("/core_banking.db/transactions") for uri in inlets)
    assert any(uri.endswith("/warehouse.db/transactions") for uri in outlets)

    for task_id in ("check_source", "validate_and_load", "publish_events"):  # the task's "View in Monte Carlo"
        links = api.get(f"/dags/{DAG}/dagRuns/{run_id}/taskInstances/{task_id}/links")
        expected = f"https://getmontecarlo.com/jobs?search={DAG}&run_id={run_id}"
        assert links["extra_links"]["View in Monte Carlo"] == expected


def test_a_failed_run_is_reported_to_monte_carlo_naming_the_failed_task(
        api: Api, data_factory_runs: dict[str, str]) -> None:
    run_id = data_factory_runs[HALF_BAD_DAY]
    assert api.wait_for_run(DAG, run_id)["state"] == "failed"
    report = wait_for_reports(api, [run_id])[run_id]

    assert (report["state"], report["success"]) == ("failed", False)
    assert report["payload"]["failed_task_ids"] == ["validate_and_load"]
    states = {task["task_id"]: task["state"] for task in report["tasks"]}
    assert states == {"check_source": "success", "validate_and_load": "failed", "publish_events": "upstream_failed"}


def test_with_monte_carlo_down_for_five_runs_all_five_reports_arrive_once_it_is_back(
        api: Api, live_platform: LivePlatform) -> None:
    api.wait_for_dag(SYNC)
    down = requests.put(f"{api.base}/sandbox/faults", timeout=30,
                        json={"error_rate": 1, "error_statuses": [503], "channels": ["montecarlo"]})
    assert down.status_code == 200, down.text
    try:
        run_ids = [trigger(api, SYNC, {}) for _ in range(5)]  # they queue: one run at a time
        for run_id in run_ids:
            assert api.wait_for_run(SYNC, run_id)["state"] == "success", api.task_states(SYNC, run_id)
        deadline = time.monotonic() + REPORT_TIMEOUT
        while len(stored_reports(live_platform, run_ids)) < 5 and time.monotonic() < deadline:
            time.sleep(3)  # each run's callback stores its report, then fails to send it
        assert stored_reports(live_platform, run_ids) == dict.fromkeys(run_ids, "pending")
        assert not set(run_ids) & set(montecarlo_reports(api))  # none got through the outage
    finally:
        requests.delete(f"{api.base}/sandbox/faults", timeout=30).raise_for_status()

    sweep_id = trigger(api, "data_factory_report_sweep", {})
    assert api.wait_for_run("data_factory_report_sweep", sweep_id)["state"] == "success"
    reports = wait_for_reports(api, run_ids, timeout=60)
    assert {run_id: report["state"] for run_id, report in reports.items()} == dict.fromkeys(run_ids, "success")
    assert stored_reports(live_platform, run_ids) == dict.fromkeys(run_ids, "accepted")
