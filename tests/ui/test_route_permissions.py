"""Who may call which route of the plugin app: each route as each of the simple auth manager's roles (viewer, user, op,
admin), driven by the one expectation table (tests/ui/route_matrix.py) against the whole app on a migrated SQLite
file. The permission checks are the real ones (Airflow's ``SimpleAuthManager`` answers them); only the sign-in is
replaced (tests/e2e/test_permissions.py signs in through a live ``make run``)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from demobank.events import audit
from tests.ui import route_matrix
from tests.ui.conftest import ROLES, Announcer, delivery_count, outbox_count, plugin_app, sign_in
from tests.ui.route_matrix import ALERT_DAG, CASES, RIGHTS, Case, Context, bus_target, dag_target, mismatches


@pytest.fixture(autouse=True)
def sandbox(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The vendor sandbox as `make run` has it (its outbox page and API answer)."""
    monkeypatch.setenv("DEMOBANK_SANDBOX_ENABLED", "true")
    monkeypatch.setenv("DEMOBANK_SANDBOX_DB", str(tmp_path / "sandbox.db"))


@pytest.fixture
def app(engine: Engine, announcer: Announcer) -> Any:
    return plugin_app(engine, announcer, role="admin")


@pytest.fixture
def client(app: Any) -> Iterator[TestClient]:
    with TestClient(app) as test_client:
        yield test_client


def created(client: TestClient, body: dict[str, Any]) -> dict[str, Any]:
    response = client.post("/api/v1/targets", json=body)
    assert response.status_code == 201, response.text
    return response.json()


@pytest.fixture
def context(client: TestClient) -> Context:
    """The matrix's two targets, created by an admin."""
    bus = created(client, bus_target("matrix-bus"))
    alerts = created(client, dag_target("matrix-alerts"))
    return Context(bus_id=bus["id"], dag_target_id=alerts["id"], role="admin")


def call(client: TestClient) -> Any:
    return lambda case, context: client.request(case.method, case.url(context), json=case.json(context))


# -- the table covers the app --------------------------------------------------------------------------------------


def test_every_route_is_in_the_table_with_its_permission_dependency() -> None:
    """A route added to the app without a permission dependency, or without a row in the table, fails here."""
    from fastapi.routing import APIRoute

    from demobank.ui.app import create_app
    from demobank.ui.permissions import checks_of

    routes = create_app().routes
    assert all(isinstance(route, APIRoute) for route in routes), [route for route in routes
                                                                  if not isinstance(route, APIRoute)]
    pairs = set()
    for route in routes:
        checks = checks_of(route)
        assert checks, f"{route.path} has no permission dependency (demobank.ui.permissions.require)"
        for method in route.methods:
            pairs.add((method, route.path))
            cases = [case for case in CASES if (case.method, case.route) == (method, route.path)]
            assert cases, f"{method} {route.path} is missing from the table of tests/ui/route_matrix.py"
            for case in cases:
                assert list(case.dependencies) == checks, f"{case.name}: the table says {case.dependencies}, " \
                                                          f"the route depends on {checks}"
    stale = [case.name for case in CASES if (case.method, case.route) not in pairs]
    assert stale == [], f"rows of the table for routes the app does not have: {stale}"


# -- the matrix ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("role", ROLES)
def test_each_role_gets_the_answers_of_the_table(role: str, app: Any, client: TestClient, context: Context,
                                                 engine: Engine, announcer: Announcer) -> None:
    before = {target["id"]: target for target in client.get("/api/v1/targets").json()}
    sign_in(app, role)
    context.role = role

    assert mismatches(role, context, call(client)) == []

    if "manage" not in RIGHTS[role]:
        sign_in(app, "admin")
        assert {target["id"]: target for target in client.get("/api/v1/targets").json()} == before
        actors = {entry["actor"] for entry in audit.entries(engine)}
        assert actors == {"admin-tester"}, "only the admin's setup is in the audit trail"
        assert delivery_count(engine) == 0, "nothing was queued for a target"
    if "publish" not in RIGHTS[role]:
        assert outbox_count(engine) == 0, "no event was written"
        assert announcer.calls == [], "the dispatcher was not started"


def test_without_signing_in_every_route_answers_401(engine: Engine, announcer: Announcer,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """Airflow's own sign-in (no token, no cookie): 401 everywhere, 404s included (nothing is revealed)."""
    from airflow.api_fastapi import app as airflow_app

    monkeypatch.setattr(airflow_app._AuthManagerState, "instance", None)
    airflow_app.create_auth_manager()
    context = Context(bus_id=1, dag_target_id=2, role="nobody")
    with TestClient(plugin_app(engine, announcer, role=None)) as anonymous:
        for case in CASES:
            response = anonymous.request(case.method, case.url(context), json=case.json(context))
            assert (response.status_code, response.json()) == (401, {"detail": "Not authenticated"}), case.name
            forged = anonymous.request(case.method, case.url(context), json=case.json(context),
                                       headers={"Authorization": "Bearer not.a.token"})
            assert forged.status_code == 403, case.name
    assert outbox_count(engine) == 0


def test_a_user_without_a_role_may_call_no_route(app: Any, client: TestClient, context: Context) -> None:
    sign_in(app, None, name="nobody")
    for case in CASES:
        response = client.request(case.method, case.url(context), json=case.json(context))
        assert response.status_code == 403, case.name
        detail = response.json()["detail"]
        assert detail.startswith("forbidden: user 'nobody' may not "), detail
        assert route_matrix.permission_words(case.needs) in detail, detail


# -- what a viewer must not be able to do, one by one ------------------------------------------------------------


def test_a_viewer_can_repoint_disable_or_widen_nothing(app: Any, client: TestClient, context: Context,
                                                       engine: Engine) -> None:
    bus = client.get(f"/api/v1/targets/{context.bus_id}").json()
    sign_in(app, "viewer", name="viewer")
    attempts = [
        ("PUT", f"/api/v1/targets/{context.bus_id}",
         bus_target("matrix-bus", config={"aws_conn_id": "attacker_aws", "bus_name": "attacker-bus"})),
        ("PUT", f"/api/v1/targets/{context.bus_id}", bus_target("matrix-bus", match={"amount": {">=": "0"}},
                                                                event_types=["*"])),
        ("POST", f"/api/v1/targets/{context.bus_id}/disable", None),
        ("POST", "/api/v1/targets", dag_target("sneaky", enabled=True)),
        ("POST", f"/api/v1/targets/{context.dag_target_id}/enable", None),
        ("POST", f"/api/v1/targets/{context.bus_id}/ping", None),
        ("POST", f"/api/v1/targets/{context.bus_id}/replay",
         {"event_type": "transaction.created", "start": "2000-01-01T00:00:00Z", "end": "2100-01-01T00:00:00Z"}),
    ]
    for method, path, body in attempts:
        response = client.request(method, path, json=body)
        assert response.status_code == 403, (method, path, response.text)
        assert response.json()["detail"] == (
            "forbidden: user 'viewer' may not manage event targets and requeue dead letters; it needs PUT on "
            "Connections (Airflow's Op or Admin role). Ask an administrator for a role that has it.")
    published = client.post("/api/v1/events", json=route_matrix._publish(context))
    assert published.status_code == 403
    assert "may not publish events; it needs POST on DAG runs of 'events_dispatch'" in published.json()["detail"]

    sign_in(app, "admin")
    assert client.get(f"/api/v1/targets/{context.bus_id}").json() == bus
    assert [target["name"] for target in client.get("/api/v1/targets").json()] == ["matrix-bus", "matrix-alerts"]
    assert (outbox_count(engine), delivery_count(engine)) == (0, 0)
    assert [entry["actor"] for entry in audit.entries(engine)] == ["admin-tester", "admin-tester"]


def test_a_user_publishes_but_manages_nothing(app: Any, client: TestClient, context: Context, engine: Engine,
                                              announcer: Announcer) -> None:
    sign_in(app, "user", name="analyst")
    published = client.post("/api/v1/events", json=route_matrix._publish(context))
    assert published.status_code == 201, published.text
    assert outbox_count(engine) == 1
    assert announcer.calls == [{"events": 1, "source": "api"}]
    for method, path in [("POST", f"/api/v1/targets/{context.bus_id}/ping"),
                         ("POST", f"/api/v1/targets/{context.bus_id}/disable")]:
        response = client.request(method, path)
        assert response.status_code == 403
        assert "user 'analyst' may not manage event targets" in response.json()["detail"]


# -- the DAG of an airflow_dag target ------------------------------------------------------------------------------


class NoAlertTrigger:
    """A deployment's auth manager (the simple one here) that lets nobody trigger ``connect_transaction_alert``."""

    @staticmethod
    def create() -> Any:
        from airflow.api_fastapi.auth.managers.simple.simple_auth_manager import SimpleAuthManager

        class RefusesAlertTrigger(SimpleAuthManager):
            def is_authorized_dag(self, *, method: Any, user: Any, access_entity: Any = None,
                                  details: Any = None) -> bool:
                if method == "POST" and details is not None and details.id == ALERT_DAG:
                    return False
                return super().is_authorized_dag(method=method, user=user, access_entity=access_entity,
                                                 details=details)

        return RefusesAlertTrigger()


def test_an_airflow_dag_target_needs_the_right_to_trigger_its_dag(app: Any, client: TestClient, context: Context,
                                                                   engine: Engine) -> None:
    """An operator who may not trigger the alert DAG cannot save, enable, ping or replay a target for it; eventbridge
    targets and targets of other DAGs still save, and disabling (which starts nothing) is allowed."""
    sign_in(app, "op", manager=NoAlertTrigger.create(), name="operator")
    alerts_before = client.get(f"/api/v1/targets/{context.dag_target_id}").json()
    needs = (f"it needs POST on DAG runs of '{ALERT_DAG}' (the right to trigger that DAG). Ask an administrator for "
             "a role that has it.")

    refused = client.post("/api/v1/targets", json=dag_target("alerts-2"))
    assert refused.status_code == 403
    assert refused.json()["detail"] == (f"forbidden: user 'operator' may not save this target (an airflow_dag target "
                                        f"for DAG '{ALERT_DAG}'); {needs}")
    repointed = client.put(f"/api/v1/targets/{context.bus_id}", json=dag_target("matrix-bus"))
    assert repointed.status_code == 403
    assert f"DAG '{ALERT_DAG}'" in repointed.json()["detail"]
    for verb, body in [("enable", None), ("ping", None),
                       ("replay", {"event_type": "transaction.created", **route_matrix.EMPTY_WINDOW})]:
        response = client.post(f"/api/v1/targets/{context.dag_target_id}/{verb}", json=body)
        assert response.status_code == 403, (verb, response.text)
        assert needs in response.json()["detail"], response.text

    assert client.post("/api/v1/targets", json=bus_target("partner-bus")).status_code == 201
    other_dag = client.post("/api/v1/targets", json=dag_target("reminders", config={"dag_id": "connect_reminders"}))
    assert other_dag.status_code == 201, other_dag.text
    assert client.post(f"/api/v1/targets/{context.dag_target_id}/disable").status_code == 200

    assert client.get(f"/api/v1/targets/{context.dag_target_id}").json()["config"] == alerts_before["config"]
    assert client.get(f"/api/v1/targets/{context.bus_id}").json()["kind"] == "eventbridge"
    assert (outbox_count(engine), delivery_count(engine)) == (0, 0)
    assert [(entry["actor"], entry["action"], entry["target_name"]) for entry in audit.entries(engine)][:3] == [
        ("operator", "disabled", "matrix-alerts"), ("operator", "created", "reminders"),
        ("operator", "created", "partner-bus")]


def test_the_data_quality_routes_refuse_with_the_suites_message(app: Any, client: TestClient) -> None:
    """A user who may not read a DAG's runs gets the suite's 403 naming the permission, never a bare "Forbidden"."""
    from airflow.api_fastapi.auth.managers.simple.simple_auth_manager import SimpleAuthManager

    class NoQualityDag(SimpleAuthManager):
        def is_authorized_dag(self, *, method: Any, user: Any, access_entity: Any = None, details: Any = None) -> bool:
            return details is None or details.id != route_matrix.QUALITY_DAG

    sign_in(app, "viewer", manager=NoQualityDag(), name="viewer")
    for path in (f"/data-quality/{route_matrix.QUALITY_DAG}", f"/api/v1/data-quality/{route_matrix.QUALITY_DAG}/runs",
                 f"/api/v1/data-quality/{route_matrix.QUALITY_DAG}/runs/some_run"):
        response = client.get(path)
        assert response.status_code == 403, path
        assert response.json()["detail"] == (
            "forbidden: user 'viewer' may not read the data quality record of this DAG; it needs GET on DAG runs of "
            f"'{route_matrix.QUALITY_DAG}' (the right to read runs of that DAG). Ask an administrator for a role that "
            "has it.")
    assert client.get("/api/v1/data-quality/events_dispatch/runs").status_code == 404  # another DAG: allowed


@pytest.mark.parametrize("role", ROLES)
def test_whoami_says_what_the_user_may_do(app: Any, client: TestClient, role: str) -> None:
    sign_in(app, role, name=f"someone-{role}")
    body = client.get("/api/v1/whoami").json()
    assert body["user"] == f"someone-{role}"
    assert body["permissions"] == {action: action in RIGHTS[role] for action in ("read", "publish", "manage")}
    assert body["needs"]["manage"] == {"action": "manage event targets and requeue dead letters",
                                       "permission": "PUT on Connections (Airflow's Op or Admin role)"}


def test_the_table_lists_the_issues_matrix() -> None:
    """The table's rights are the issue's (and the simple auth manager answers them so: tests/ui/test_permissions)."""
    assert {role: sorted(rights) for role, rights in RIGHTS.items()} == {
        "viewer": ["read"], "user": ["publish", "read"], "op": ["manage", "publish", "read"],
        "admin": ["manage", "publish", "read"]}
    assert {case.needs for case in CASES if case.method != "GET"} == {"publish", "manage", "read"}
    assert all(case.needs == "read" for case in CASES if case.method == "GET")
    assert isinstance(CASES[0], Case)
