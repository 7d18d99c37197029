"""The Data Factory runs the end-to-end tests share: which DAGs and days, and how to trigger them on a busy
SQLite metadata database."""

from __future__ import annotations

import time
from typing import Any

import pytest
import requests

from tests.e2e.api import Api

DAG = "data_factory_transactions"
SYNC = "data_factory_customer_sync"
SAMPLE_DAY, HALF_BAD_DAY, NEVER_EXPORTED = "2026-01-08", "2026-01-09", "2025-12-31"


def trigger(api: Api, dag_id: str, conf: dict[str, Any]) -> str:
    """Trigger a run; retried when Airflow's SQLite metadata database was too busy to answer (a 500 "Database
    error" after its 60 s lock wait; the run id is ours, so a retry cannot start a second run)."""
    for attempt in range(3):
        response = api.trigger(dag_id, conf)
        if response.status_code == 200:
            return response.json()["dag_run_id"]
        if response.status_code != 500 or "Database error" not in response.text or attempt == 2:
            raise AssertionError(f"trigger {dag_id} {conf}: {response.status_code} {response.text[:1000]}")
    raise AssertionError("unreachable")


def wait_until_idle(api: Api, *dag_ids: str, timeout: float = 240) -> None:
    """Wait until no run of ``dag_ids`` is queued or running (the scheduled runs `make run` starts with)."""
    deadline = time.monotonic() + timeout
    busy: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        try:
            busy = [run for dag_id in dag_ids
                    for run in api.get(f"/dags/{dag_id}/dagRuns", state=["queued", "running"], limit=10)["dag_runs"]]
        except requests.Timeout:  # the metadata database is busy: ask again
            continue
        if not busy:
            return
        time.sleep(2)
    pytest.fail(f"runs still busy after {timeout} s: {[(r['dag_id'], r['dag_run_id'], r['state']) for r in busy]}")


def trigger_data_factory_days(api: Api) -> dict[str, str]:
    """Trigger the sample day, the half-malformed day and the never exported day at once (they queue: the DAG runs
    one at a time), once the scheduled runs of the platform's start are done (the scheduled day has no export: that
    run fails in check_source); the re-run of the sample day comes later, in its test."""
    api.wait_for_dag(DAG)
    api.wait_for_dag(SYNC)
    wait_until_idle(api, DAG, SYNC)
    return {day: trigger(api, DAG, {"date": day}) for day in (SAMPLE_DAY, HALF_BAD_DAY, NEVER_EXPORTED)}
