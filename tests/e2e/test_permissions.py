"""Permissions on a live `make run`: signed in through its real ``POST /auth/token`` as viewer, operator and admin
(the three local users of the launcher), every route of the plugin app answers as the one expectation table says
(tests/ui/route_matrix.py: 403 naming the permission, never a 500), and the viewer starts no DAG by any route.

Quick by design: requests only (the runs that the operator's and the admin's calls start are not waited for)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
import requests

from tests.e2e.api import Api
from tests.e2e.conftest import LivePlatform
from tests.ui.route_matrix import ALERT_DAG, QUALITY_DAG, Case, Context, bus_target, dag_target, mismatches

pytestmark = pytest.mark.e2e

LOGINS = {"viewer": ("viewer", "viewer"), "operator": ("operator", "op"), "admin": ("admin", "admin")}
"""make run's users: login name → (password, role of the simple auth manager)."""


def signed_in(platform: LivePlatform, name: str) -> requests.Session:
    """A session with the bearer token of ``POST /auth/token`` for ``name`` (its make run password)."""
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {platform.token(name, LOGINS[name][0])}"
    return session


def caller(platform: LivePlatform, session: requests.Session) -> Any:
    def call(case: Case, context: Context) -> requests.Response:
        return session.request(case.method, f"{platform.api_url}/demobank{case.url(context)}",
                               json=case.json(context), timeout=120)

    return call


def dag_runs(api: Api) -> dict[str, dict[str, Any]]:
    """Every DAG run of every DAG (``GET /api/v2/dags/~/dagRuns``, page by page), by ``dag_id/run_id``."""
    runs: dict[str, dict[str, Any]] = {}
    offset = 0
    while True:
        page = api.get("/dags/~/dagRuns", limit=100, offset=offset, order_by="id")
        for run in page["dag_runs"]:
            runs[f"{run['dag_id']}/{run['dag_run_id']}"] = run
        offset += len(page["dag_runs"])
        if not page["dag_runs"] or offset >= page["total_entries"]:
            return runs


@pytest.fixture(scope="module")
def context(live_platform: LivePlatform, api: Api) -> Context:
    """The matrix's two targets, created by the admin: an EventBridge target that only test events reach, and a
    disabled airflow_dag target for the alert DAG."""
    api.wait_for_dag(QUALITY_DAG)
    admin = signed_in(live_platform, "admin")
    ids = []
    for body in (bus_target("matrix-bus"), dag_target("matrix-alerts")):
        response = admin.post(f"{live_platform.api_url}/demobank/api/v1/targets", json=body, timeout=120)
        assert response.status_code == 201, response.text
        ids.append(response.json()["id"])
    return Context(bus_id=ids[0], dag_target_id=ids[1], role="admin")


def test_the_viewer_may_read_everything_and_start_nothing(live_platform: LivePlatform, api: Api,
                                                          context: Context) -> None:
    viewer = signed_in(live_platform, "viewer")
    before = dag_runs(api)
    started = datetime.now(UTC)
    context.role = "viewer"

    assert mismatches("viewer", context, caller(live_platform, viewer)) == []
    # Airflow's own trigger route refuses the viewer as well (the suite adds no way around it).
    for dag_id in ("events_dispatch", ALERT_DAG):
        refused = viewer.post(f"{live_platform.api_url}/api/v2/dags/{dag_id}/dagRuns",
                              json={"logical_date": None, "conf": {}}, timeout=120)
        assert refused.status_code == 403, refused.text

    after = dag_runs(api)
    new = [run for key, run in after.items() if key not in before]
    by_viewer = [run for run in new if run.get("triggering_user_name") == "viewer"]
    assert by_viewer == [], f"DAG runs the viewer started: {by_viewer}"
    # Runs that appear meanwhile are the platform's own (schedules, and the dispatcher working off earlier events);
    # a run that someone triggered is none of those.
    triggered = [run for run in new if run["run_type"] not in {"scheduled", "asset_triggered"}
                 and not run["dag_run_id"].startswith("event__")]
    assert triggered == [], f"runs triggered between {started.isoformat()} and now: {triggered}"
    # Nothing that would start a DAG later was queued either: no delivery to the matrix's targets, no change.
    admin = signed_in(live_platform, "admin")
    base = f"{live_platform.api_url}/demobank/api/v1"
    for target_id in (context.bus_id, context.dag_target_id):
        assert admin.get(f"{base}/targets/{target_id}/deliveries", timeout=60).json() == []
    actors = {entry["actor"] for entry in admin.get(f"{base}/audit", params={"limit": 1000}, timeout=60).json()}
    assert "viewer" not in actors


@pytest.mark.parametrize("name", ["operator", "admin"])
def test_operator_and_admin_may_do_everything(live_platform: LivePlatform, context: Context, name: str) -> None:
    session = signed_in(live_platform, name)
    context.role = name
    role = LOGINS[name][1]

    assert mismatches(role, context, caller(live_platform, session)) == []

    whoami = session.get(f"{live_platform.api_url}/demobank/api/v1/whoami", timeout=60).json()
    assert (whoami["user"], whoami["permissions"]) == (name, {"read": True, "publish": True, "manage": True})
    history = session.get(f"{live_platform.api_url}/demobank/api/v1/targets/{context.bus_id}/audit",
                          timeout=60).json()
    mine = [entry["action"] for entry in reversed(history) if entry["actor"] == name]  # oldest first
    assert [action for action in mine if action in {"changed", "disabled", "enabled", "pinged", "replayed"}][:5] == [
        "changed", "disabled", "enabled", "pinged", "replayed"]


def test_the_viewers_whoami_says_what_is_missing(live_platform: LivePlatform) -> None:
    body = signed_in(live_platform, "viewer").get(f"{live_platform.api_url}/demobank/api/v1/whoami",
                                                  timeout=60).json()
    assert body["user"] == "viewer"
    assert body["permissions"] == {"read": True, "publish": False, "manage": False}
    assert body["needs"]["manage"]["permission"] == "PUT on Connections (Airflow's Op or Admin role)"
