"""The one expectation table of who may call which route of the plugin app (``demobank.ui.app.create_app``).

Driven by ``tests/ui/test_route_permissions.py`` (the app on a test database, the simple auth manager's real
permission checks for each role) and by ``tests/e2e/test_permissions.py`` (a live ``make run``, signed in through
its real ``POST /auth/token`` as viewer, operator and admin). ``test_every_route_is_in_the_table`` fails for a route
of the app that is missing here or whose permission dependency is not the one the table names.

The rights per role are the issue's matrix in Airflow's terms (see :mod:`demobank.ui.permissions`):

* viewer: ``read`` (targets, deliveries, event types, audit, quality records, sandbox outbox pages);
* user: also ``publish`` (``POST /api/v1/events``);
* op and admin: also ``manage`` (create, edit, enable, disable, ping and replay targets; resume them, requeue or
  dismiss dead letters and rejected run reports).

A case's ``allowed`` status is what a role with the right gets, a role without it gets ``403`` with a message that
names the permission. The cases run in the table's order for one user (the allowed ones change state: the target
is disabled, then enabled again, before it is pinged). They touch only the two targets of :class:`Context`, which
receive only ``demobank.ping`` events: the airflow_dag one stays disabled, so no case starts its DAG (its ping is
refused with 409 *after* the permission checks passed) and its replay window is empty.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

RIGHTS: dict[str, frozenset[str]] = {
    "viewer": frozenset({"read"}),
    "user": frozenset({"read", "publish"}),
    "op": frozenset({"read", "publish", "manage"}),
    "admin": frozenset({"read", "publish", "manage"}),
}
"""What each role of the simple auth manager may do in the suite."""

QUALITY_DAG = "data_factory_transactions"
"""The DAG whose Data Quality routes are called (a Data Factory DAG in both the unit tests and ``make run``)."""
ALERT_DAG = "connect_transaction_alert"
"""The DAG of the matrix's airflow_dag target."""
NO_SUCH_DAG = "matrix_no_such_dag"
"""A DAG id with no run reports: requeueing or dismissing its rejected reports changes nothing."""
EMPTY_WINDOW = {"start": "2001-01-01T00:00:00Z", "end": "2001-01-02T00:00:00Z"}
"""A replay window in which no event exists: a replay queues nothing (202, ``queued`` 0)."""


@dataclass
class Context:
    """The ids the cases' paths and bodies use, and the signed-in role (names of created targets carry it)."""

    bus_id: int
    dag_target_id: int
    role: str
    dag_id: str = QUALITY_DAG

    def fill(self, path: str) -> str:
        return path.format(bus=self.bus_id, dag_target=self.dag_target_id, dag=self.dag_id)


def bus_target(name: str, **changes: Any) -> dict[str, Any]:
    """An EventBridge target on `make run`'s bus (moto) that only test events reach."""
    return {"name": name, "kind": "eventbridge", "description": "permission matrix", "event_types": ["demobank.ping"],
            "config": {"aws_conn_id": "aws_default", "bus_name": "demobank-events", "region_name": "us-east-1"},
            **changes}


def dag_target(name: str, **changes: Any) -> dict[str, Any]:
    """A disabled airflow_dag target for the alert DAG (disabled: nothing starts the DAG through it)."""
    return {"name": name, "kind": "airflow_dag", "description": "permission matrix", "event_types": ["demobank.ping"],
            "enabled": False, "config": {"dag_id": ALERT_DAG}, **changes}


def _publish(context: Context) -> dict[str, Any]:
    from demobank.events.catalog import examples

    return {"events": [{"type": "customer.created", "data": examples("customer.created")[0]}]}


@dataclass(frozen=True)
class Case:
    """One request of the matrix.

    :ivar method: the HTTP method.
    :ivar route: the route's path in the app, as FastAPI has it (``/api/v1/targets/{target_id}``).
    :ivar needs: the suite's permission the route requires (``read``, ``publish``, ``manage``).
    :ivar allowed: the status for a role that has it.
    :ivar path: the path to call (``{bus}``, ``{dag_target}``, ``{dag}`` filled in), the route's by default.
    :ivar body: the JSON body, from the context.
    :ivar checks: the permission dependencies the route has (:func:`demobank.ui.permissions.checks_of`).
    """

    method: str
    route: str
    needs: str
    allowed: int
    path: str | None = None
    body: Callable[[Context], Any] | None = None
    checks: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        return f"{self.method} {self.path or self.route}"

    def expected(self, role: str) -> int:
        return self.allowed if self.needs in RIGHTS[role] else 403

    def url(self, context: Context) -> str:
        """The path under ``/demobank``."""
        return context.fill(self.path or self.route)

    def json(self, context: Context) -> Any:
        return None if self.body is None else self.body(context)

    @property
    def dependencies(self) -> tuple[str, ...]:
        return self.checks or (self.needs,)


_DQ = ("read", "dag GET")
TARGET = "/api/v1/targets/{target_id}"

CASES: list[Case] = [
    # -- reads
    Case("GET", "/", "read", 200),
    Case("GET", "/targets", "read", 200),
    Case("GET", "/sandbox-outbox", "read", 200),
    Case("GET", "/api/v1/sandbox/messages", "read", 200),
    Case("GET", "/api/v1/whoami", "read", 200),
    Case("GET", "/api/v1/event-types", "read", 200),
    Case("GET", "/api/v1/workflows/schema", "read", 200),
    Case("GET", "/api/v1/targets", "read", 200),
    Case("GET", TARGET, "read", 200, "/api/v1/targets/{bus}"),
    Case("GET", f"{TARGET}/deliveries", "read", 200, "/api/v1/targets/{bus}/deliveries"),
    Case("GET", f"{TARGET}/audit", "read", 200, "/api/v1/targets/{bus}/audit"),
    Case("GET", "/api/v1/audit", "read", 200),
    Case("GET", "/data-quality/{dag_id}", "read", 200, "/data-quality/{dag}", checks=_DQ),
    Case("GET", "/api/v1/data-quality/{dag_id}/runs", "read", 200, "/api/v1/data-quality/{dag}/runs", checks=_DQ),
    Case("GET", "/api/v1/data-quality/{dag_id}/runs/{run_id}", "read", 404,
         "/api/v1/data-quality/{dag}/runs/no_such_run", checks=_DQ),
    *(Case(method, "/{path:path}", "read", 404, "/no-such-page") for method in ("GET", "POST", "PUT", "PATCH",
                                                                                 "DELETE")),
    # -- publishing
    Case("POST", "/api/v1/events", "publish", 201, body=_publish),
    # -- managing: create (an airflow_dag target also needs the right to trigger its DAG), edit, disable, enable,
    # ping, replay
    Case("POST", "/api/v1/targets", "manage", 201, body=lambda c: bus_target(f"matrix-{c.role}-bus")),
    Case("POST", "/api/v1/targets", "manage", 201, body=lambda c: dag_target(f"matrix-{c.role}-alerts")),
    Case("PUT", TARGET, "manage", 200, "/api/v1/targets/{bus}",
         body=lambda c: bus_target("matrix-bus", description=f"edited by {c.role}", match={"amount": {">=": "0"}})),
    Case("PUT", TARGET, "manage", 200, "/api/v1/targets/{dag_target}",
         body=lambda c: dag_target("matrix-alerts", description=f"edited by {c.role}")),
    Case("POST", f"{TARGET}/disable", "manage", 200, "/api/v1/targets/{bus}/disable"),
    Case("POST", f"{TARGET}/enable", "manage", 200, "/api/v1/targets/{bus}/enable"),
    Case("POST", f"{TARGET}/ping", "manage", 202, "/api/v1/targets/{bus}/ping"),
    Case("POST", f"{TARGET}/ping", "manage", 409, "/api/v1/targets/{dag_target}/ping"),  # disabled: not started
    Case("POST", f"{TARGET}/replay", "manage", 202, "/api/v1/targets/{bus}/replay",
         body=lambda c: {"event_type": "customer.created", **EMPTY_WINDOW}),
    Case("POST", f"{TARGET}/replay", "manage", 202, "/api/v1/targets/{dag_target}/replay",
         body=lambda c: {"event_type": "transaction.created", **EMPTY_WINDOW}),
    # -- health (demobank.ui.health_api): the check, resume, dead letters and rejected run reports (none here)
    Case("GET", "/api/v1/health", "read", 200),
    Case("POST", f"{TARGET}/resume", "manage", 200, "/api/v1/targets/{bus}/resume"),
    Case("POST", f"{TARGET}/dead-letters/requeue", "manage", 200, "/api/v1/targets/{bus}/dead-letters/requeue",
         body=lambda c: {}),
    Case("POST", f"{TARGET}/dead-letters/dismiss", "manage", 200, "/api/v1/targets/{bus}/dead-letters/dismiss",
         body=lambda c: {}),
    Case("POST", "/api/v1/run-reports/requeue", "manage", 200, body=lambda c: {"dag_id": NO_SUCH_DAG}),
    Case("POST", "/api/v1/run-reports/dismiss", "manage", 200, body=lambda c: {"dag_id": NO_SUCH_DAG}),
]
"""Every route of the plugin app, in the order one user calls them."""


def permission_words(needs: str) -> str:
    """What a 403 of ``needs`` must name: the permission in Airflow's terms."""
    from demobank.ui.permissions import Action, question_of

    return question_of(Action(needs)).permission


def mismatches(role: str, context: Context, call: Callable[[Case, Context], Any]) -> list[str]:
    """Run every case as ``role`` with ``call(case, context)`` (returns a response with ``status_code`` and
    ``text``/``json()``); return what differs from the table (empty when everything is as expected)."""
    problems = []
    for case in CASES:
        response = call(case, context)
        expected = case.expected(role)
        if response.status_code != expected:
            problems.append(f"{role}: {case.name} answered {response.status_code}, expected {expected}: "
                            f"{response.text[:300]}")
            continue
        if expected == 403:
            detail = response.json().get("detail", "")
            if permission_words(case.needs) not in detail or "may not" not in detail:
                problems.append(f"{role}: {case.name}: the 403 does not name the permission "
                                f"{permission_words(case.needs)!r}: {detail!r}")
    return problems
