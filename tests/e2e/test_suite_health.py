"""The suite's health check on the live `make run` platform: the DAG ``suite_health_check`` runs in Airflow and ends as
the check says (success when nothing needs acting on, failed with every problem in its log otherwise), and the API
route and the installed ``demobank check`` (on the platform's suite database) give the same answer."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import requests

from tests.e2e.api import Api
from tests.e2e.conftest import LivePlatform

DAG_ID = "suite_health_check"


def cli_check(platform: LivePlatform) -> tuple[int, dict[str, Any]]:
    env = {**os.environ, "DEMOBANK_DB_URL": f"sqlite:///{platform.home / 'demobank.db'}"}
    done = subprocess.run([str(Path(sys.executable).parent / "demobank"), "check", "--json"], capture_output=True,
                          text=True, env=env, timeout=120, check=False)
    assert done.returncode in (0, 1), done.stderr
    return done.returncode, json.loads(done.stdout)


def test_the_check_dag_the_api_and_the_cli_agree(api: Api, live_platform: LivePlatform, record_property) -> None:
    assert requests.get(f"{live_platform.api_url}/demobank/api/v1/health", timeout=30).status_code == 401
    api.wait_for_dag(DAG_ID)
    for _ in range(3):  # the platform's state may change while the run runs: then look again
        code, before = cli_check(live_platform)
        answer = api.plugin("GET", "/health")
        assert answer.status_code == 200, answer.text
        assert (answer.json()["ok"], answer.json()["problems"]) == (before["ok"], before["problems"])
        assert code == (0 if before["ok"] else 1)
        triggered = api.trigger(DAG_ID, {})
        assert triggered.status_code in (200, 409), triggered.text
        run_id = triggered.json()["dag_run_id"]
        run = api.wait_for_run(DAG_ID, run_id)
        _, after = cli_check(live_platform)
        if after["problems"] == before["problems"]:
            break
    record_property("check", {"ok": before["ok"], "problems": before["problems"], "warnings": before["warnings"]})
    print(f"suite health on the live platform: ok={before['ok']} problems={before['problems']}")
    assert run["state"] == ("success" if before["ok"] else "failed"), (run, before["problems"])
    [task] = api.task_instances(DAG_ID, run_id)
    assert task["try_number"] == 1, "a failed check is not retried"
    if before["ok"]:
        assert api.xcom(DAG_ID, run_id, "check")["ok"] is True
    else:
        api.task_log(DAG_ID, run_id, "check", 1, before["problems"][0][:60])
