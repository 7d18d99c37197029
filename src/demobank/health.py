"""The suite's health check: what an operator must act on, in one place for the CLI, the DAG and the API.

The check **fails** (``ok`` false) when any of these holds:

* an event target is **paused** (it paused itself after failing continuously; the reason says why);
* an event target has **new dead letters**: deliveries given up that nobody requeued or dismissed yet;
* Monte Carlo **rejected** run reports that nobody requeued or dismissed yet (new rejected reports).

Targets that are failing but not paused yet (backing off between probes) are **warnings**: the dispatcher is
handling them, and the pause limit (``DEMOBANK_TARGET_PAUSE_AFTER``) is the time after which they become a failure.

Used by ``demobank check`` (exit 1 when not ok), the DAG ``suite_health_check`` (fails, so Airflow's failure
notifications alert) and ``GET /demobank/api/v1/health`` (always HTTP 200 with ``"ok"``: the answer describes the
suite, the API itself is fine).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from demobank.data_factory.report_outbox import RejectedSummary, rejected_summary
from demobank.db.models import EventTarget
from demobank.events.target_health import health_of
from demobank.exceptions import DemoBankError


class SuiteUnhealthyError(DemoBankError):
    """The health check found something to act on; the message lists every problem and what to do."""


@dataclass
class SuiteHealth:
    """The outcome of :func:`check_suite`."""

    checked_at: datetime
    targets: list[dict[str, Any]]
    reports: RejectedSummary
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def paused_targets(self) -> int:
        return sum(1 for target in self.targets if target["state"] == "paused")

    @property
    def new_dead_letters(self) -> int:
        return sum(target["new_dead_letters"] for target in self.targets)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready (the API's answer)."""
        return {"ok": self.ok, "checked_at": self.checked_at.isoformat(), "problems": list(self.problems),
                "warnings": list(self.warnings),
                "summary": {"paused_targets": self.paused_targets, "new_dead_letters": self.new_dead_letters,
                            "new_rejected_reports": self.reports.new},
                "targets": self.targets, "reports": self.reports.as_dict(),
                "new_means": "not requeued nor dismissed yet"}

    def describe(self) -> str:
        """The check's message: every problem and warning on a line of its own."""
        if self.ok:
            head = "suite health: OK"
        else:
            head = f"suite health: {len(self.problems)} problem(s) to act on"
        lines = [head, *(f"  PROBLEM: {problem}" for problem in self.problems),
                 *(f"  warning: {warning}" for warning in self.warnings)]
        return "\n".join(lines)


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def check_suite(engine: Engine, *, now: datetime | None = None) -> SuiteHealth:
    """Look at every target's health and dead letters and at the rejected Monte Carlo reports."""
    checked_at = now or datetime.now(UTC)
    with Session(engine) as session:
        rows = session.execute(select(EventTarget.id, EventTarget.name, EventTarget.enabled)
                               .order_by(EventTarget.id)).all()
        health = health_of(session, [target_id for target_id, _, _ in rows])
    reports = rejected_summary(engine)
    result = SuiteHealth(checked_at, [], reports)
    for target_id, name, enabled in rows:
        view = health[target_id]
        result.targets.append({
            "id": target_id, "name": name, "enabled": enabled, "state": view.state,
            "failure_count": view.failure_count, "failing_since": _iso(view.failing_since),
            "next_attempt_at": _iso(view.next_attempt_at), "last_error": view.last_error,
            "paused_at": _iso(view.paused_at), "paused_reason": view.paused_reason,
            "dead_letters": view.dead_letters, "new_dead_letters": view.new_dead_letters})
        if view.state == "paused":
            result.problems.append(f"event target {name!r} (id {target_id}) is paused: {view.paused_reason}")
        elif view.state == "failing":
            result.warnings.append(
                f"event target {name!r} (id {target_id}) is failing: {view.failure_count} failed attempt(s) in a row "
                f"since {_iso(view.failing_since)}, next probe at {_iso(view.next_attempt_at)}; last error: "
                f"{view.last_error}")
        if view.new_dead_letters:
            result.problems.append(
                f"event target {name!r} (id {target_id}) has {view.new_dead_letters} new dead letter(s) "
                f"({view.dead_letters} in all): see its deliveries on the Targets page; once the cause is fixed, "
                f"requeue them (`demobank requeue dead-letters --target {name!r}`) or dismiss them "
                f"(`demobank dismiss dead-letters --target {name!r}`)")
    if reports.new:
        by_dag = ", ".join(f"{dag_id}: {count}" for dag_id, count in reports.new_by_dag.items())
        latest = reports.latest[0]
        result.problems.append(
            f"Monte Carlo rejected {reports.new} new run report(s) ({by_dag}); the latest (report {latest['id']}, "
            f"HTTP {latest['http_status']}): {latest['last_error']}. Fix the Monte Carlo connection, then requeue "
            "them (`demobank requeue reports`) or dismiss them (`demobank dismiss reports`)")
    return result


def require_healthy(engine: Engine | None = None) -> dict[str, Any]:
    """Run the check; raise if anything needs acting on (the DAG's task).

    :return: the check's answer (for XCom) when it is ok.
    :raises SuiteUnhealthyError: with :meth:`SuiteHealth.describe` as the message.
    """
    from demobank.db.engine import get_engine

    health = check_suite(engine or get_engine())
    if not health.ok:
        raise SuiteUnhealthyError(health.describe())
    return health.as_dict()


__all__ = ["SuiteHealth", "SuiteUnhealthyError", "check_suite", "require_healthy"]
