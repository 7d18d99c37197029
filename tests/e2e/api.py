"""Airflow's REST API, the plugin's API and the sandbox of one live platform, for the end-to-end tests."""

from __future__ import annotations

import json
import time
import uuid
from typing import TYPE_CHECKING, Any

import pytest
import requests

if TYPE_CHECKING:
    from tests.e2e.conftest import LivePlatform

RUN_TIMEOUT = 300
TERMINAL = {"success", "failed"}


class Api:
    """Airflow's REST API and the sandbox of one live platform."""

    def __init__(self, platform: LivePlatform) -> None:
        self.platform = platform
        self.base = platform.api_url
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {platform.token()}"

    def get(self, path: str, **params: Any) -> Any:
        response = self.session.get(f"{self.base}/api/v2{path}", params=params, timeout=30)
        assert response.status_code == 200, f"GET {path}: {response.status_code} {response.text[:2000]}"
        return response.json()

    def post(self, path: str, body: dict[str, Any]) -> requests.Response:
        return self.session.post(f"{self.base}/api/v2{path}", json=body, timeout=120)

    def wait_for_dag(self, dag_id: str, timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            response = self.session.get(f"{self.base}/api/v2/dags/{dag_id}", timeout=30)
            if response.status_code == 200 and response.json()["is_paused"] is False:
                return
            time.sleep(2)
        errors = self.get("/importErrors")
        pytest.fail(f"DAG {dag_id} not active after {timeout} s; import errors: {errors}")

    def trigger(self, dag_id: str, conf: dict[str, Any]) -> requests.Response:
        """Trigger a run with a run id of our own, so that a request that timed out can be sent again safely: a
        409 then means the first one created the run (SQLite's single writer can keep the API server waiting)."""
        run_id = f"e2e__{uuid.uuid4().hex}"
        body = {"dag_run_id": run_id, "logical_date": None, "conf": conf}
        for attempt in range(3):
            try:
                response = self.session.post(f"{self.base}/api/v2/dags/{dag_id}/dagRuns", json=body, timeout=120)
            except requests.exceptions.Timeout:
                if attempt == 2:
                    raise
                continue
            if response.status_code == 409 and attempt > 0:
                return self.session.get(f"{self.base}/api/v2/dags/{dag_id}/dagRuns/{run_id}", timeout=120)
            if response.status_code == 500 and "Database error" in response.text and attempt < 2:
                continue  # SQLite's single writer kept the API server past its lock wait: the same run id is safe
            return response
        raise AssertionError("unreachable")

    def run(self, dag_id: str, run_id: str) -> dict[str, Any]:
        return self.get(f"/dags/{dag_id}/dagRuns/{run_id}")

    def task_instances(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        return self.get(f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances", limit=1000)["task_instances"]

    def wait_for_run(self, dag_id: str, run_id: str, done: Any = None) -> dict[str, Any]:
        """Wait until the run is success or failed (and ``done(run, task_instances)`` holds, if given)."""
        deadline = time.monotonic() + RUN_TIMEOUT
        run: dict[str, Any] = {}
        while time.monotonic() < deadline:
            run = self.run(dag_id, run_id)
            if run["state"] in TERMINAL and (done is None or done(run, self.task_instances(dag_id, run_id))):
                return run
            time.sleep(2)
        states = {(ti["task_id"], ti["map_index"]): (ti["state"], ti["try_number"])
                  for ti in self.task_instances(dag_id, run_id)}
        pytest.fail(f"run {dag_id}/{run_id} not done after {RUN_TIMEOUT} s: {run.get('state')}, tasks {states}")

    def task_states(self, dag_id: str, run_id: str) -> dict[str, str]:
        return {ti["task_id"]: ti["state"] for ti in self.task_instances(dag_id, run_id)}

    def xcom(self, dag_id: str, run_id: str, task_id: str, map_index: int = -1) -> Any:
        entry = self.get(f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/xcomEntries/return_value",
                         map_index=map_index)
        value = entry["value"]
        return json.loads(value) if isinstance(value, str) else value

    def task_log(self, dag_id: str, run_id: str, task_id: str, try_number: int, contains: str) -> str:
        """The task's log as text, once it contains ``contains`` (logs are written as the task ends)."""
        deadline = time.monotonic() + 60
        text = ""
        while time.monotonic() < deadline:
            response = self.session.get(
                f"{self.base}/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/logs/{try_number}",
                params={"full_content": "true"}, headers={"Accept": "application/json"}, timeout=30,
            )
            if response.status_code == 200:
                text = json.dumps(response.json()["content"], ensure_ascii=False)
                if contains in text:
                    return text
            time.sleep(2)
        pytest.fail(f"the log of {task_id} try {try_number} never contained {contains!r}:\n{text[-5000:]}")

    def sandbox(self, channel: str, to: str | None = None) -> list[dict[str, Any]]:
        params: dict[str, Any] = {"channel": channel, "limit": 10000}
        if to:
            params["to"] = to
        response = requests.get(f"{self.base}/sandbox/messages", params=params, timeout=30)
        assert response.status_code == 200, response.text
        return response.json()["messages"]

    def plugin(self, method: str, path: str, body: Any = None, **params: Any) -> requests.Response:
        """Call the plugin's API: ``plugin("POST", "/events", {...})`` → ``/demobank/api/v1/events``."""
        return self.session.request(method, f"{self.base}/demobank/api/v1{path}", json=body, params=params,
                                    timeout=120)
