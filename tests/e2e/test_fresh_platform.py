"""A fresh `make run` shows no error: the runs the platform makes on its own after it starts (the scheduled DAGs'
first runs and what they trigger) all succeed, the suite is healthy and no delivery is dead. This runs before any
other end-to-end test touches the platform (marker ``fresh_platform``). For the full ten minutes, run
``scripts/check_fresh_platform.py`` (a platform of its own, left alone)."""

from __future__ import annotations

import sqlite3
import time

import pytest

from tests.e2e.api import Api
from tests.e2e.conftest import LivePlatform

pytestmark = [pytest.mark.e2e, pytest.mark.fresh_platform]

UNFINISHED = {"queued", "running", "scheduled", None}


def test_what_a_fresh_platform_does_on_its_own_succeeds(api: Api, live_platform: LivePlatform) -> None:
    expected = {"events_dispatch", "suite_health_check", "data_factory_report_sweep", "logic_app__daily_digest"}
    listed = time.monotonic() + 120  # "up" is Airflow healthy: the DAG processor may still be on its first pass

    def scheduled_dags() -> list[str]:
        return sorted(dag["dag_id"] for dag in api.get("/dags", limit=100)["dags"]
                      if dag["timetable_summary"] not in (None, "None") and not dag["is_paused"])

    while not expected <= set(scheduled := scheduled_dags()) and time.monotonic() < listed:
        time.sleep(2)
    assert expected <= set(scheduled), scheduled
    # The first runs of every scheduled DAG, and the runs started while they ran (e.g. the dispatch of the events
    # a load published); the dispatcher runs every minute for ever, so later runs are not waited for.
    deadline = time.monotonic() + 360
    cutoff = None
    while True:
        runs = [run for run in api.get("/dags/~/dagRuns", limit=1000)["dag_runs"]
                if run["run_type"] != "manual" or run["dag_run_id"].startswith("event__")]
        started = {run["dag_id"] for run in runs}
        if cutoff is None and set(scheduled) <= started:
            cutoff = max(run["queued_at"] or "" for run in runs)
        first = [run for run in runs if cutoff is not None and (run["queued_at"] or "") <= cutoff]
        pending = [run for run in first if run["state"] in UNFINISHED]
        if cutoff is not None and not pending:
            if not [run for run in runs if run["state"] in UNFINISHED and run["dag_id"] != "events_dispatch"]:
                break
            cutoff = max(run["queued_at"] or "" for run in runs)  # a run those started: wait for it too
        assert time.monotonic() < deadline, (
            f"still waiting after 6 min: no run yet of {sorted(set(scheduled) - started)}; unfinished: "
            f"{[(run['dag_id'], run['state']) for run in pending]}")
        time.sleep(3)
    runs = first
    failed = {f"{run['dag_id']}/{run['dag_run_id']}": api.task_states(run["dag_id"], run["dag_run_id"])
              for run in runs if run["state"] != "success"}
    assert not failed, f"runs the platform made on its own failed: {failed}"
    with sqlite3.connect(live_platform.home / "demobank.db", timeout=30) as db:
        dead = db.execute("SELECT t.name, count(*), max(d.last_error) FROM event_deliveries d JOIN event_targets t "
                          "ON t.id = d.target_id WHERE d.status = 'dead' GROUP BY t.name").fetchall()
    assert not dead, f"dead deliveries on a fresh platform: {dead}"
    health = api.plugin("GET", "/health")
    assert health.status_code == 200 and health.json()["ok"] is True, health.text
    print(f"fresh platform: {len(runs)} run(s) of {len(scheduled)} scheduled DAG(s), all succeeded: "
          f"{sorted((run['dag_id'], run['run_type']) for run in runs)}")
