"""The run reports' outbox in the suite's database (``run_reports``): store before sending, send, re-send.

* :func:`save_report` writes a report as ``pending`` and *claims* it (a lease in ``next_attempt_at``) for the
  caller, which then sends it with :func:`deliver`. The same report saved twice (same DAG run and outcome) is one row.
* :func:`deliver` sends a claimed report once and records the outcome: ``accepted``; ``pending`` again (Monte
  Carlo unreachable, slow or 5xx; due at the next sweep); ``rejected`` (a 4xx: ``last_error`` says why).
* :func:`sweep` claims due reports one by one (a report is never sent by two senders at once) and delivers them;
  when Monte Carlo is unavailable it stops for that connection after the first failure, so a backlog costs one
  timeout, not one per report. A sender that died mid-send leaves its lease to expire (:data:`LEASE`).
* :func:`requeue_rejected` sets rejected reports back to ``pending`` (after fixing the connection's credentials);
  :func:`dismiss_rejected` marks them as seen instead. A rejected report is *new* until one of the two: new ones fail
  the suite's check (:mod:`demobank.health`), :func:`rejected_summary` counts them.

Delivery is at least once: if Monte Carlo accepted a report but the answer was lost, it is sent again.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine, and_, func, or_, select, update
from sqlalchemy.exc import IntegrityError

from demobank.db.engine import session_scope
from demobank.db.models import RunReport, RunReportStatus
from demobank.exceptions import DemoBankError

if TYPE_CHECKING:
    from demobank.connectors.montecarlo import MonteCarloHook
    from demobank.data_factory.run_report import DagRunReport

log = logging.getLogger(__name__)

LEASE = timedelta(minutes=2)
"""How long a sender owns a report it claimed; after that another sender may take it over."""


class MonteCarloUnavailableError(DemoBankError):
    """Monte Carlo could not be reached (or answered 5xx): the reports wait for the next sweep."""


def _now() -> datetime:
    return datetime.now(UTC)


def save_report(engine: Engine, report: DagRunReport, *, conn_id: str, lease: timedelta = LEASE,
                now: datetime | None = None) -> tuple[int, bool]:
    """Store ``report`` as ``pending``, claimed by the caller for ``lease``.

    :return: (the row's id, whether the caller claimed it: False when the same report was already stored).
    """
    now = now or _now()
    row = RunReport(
        report_key=report.report_key,
        dag_id=report.dag_id,
        run_id=report.run_id,
        run_state=report.run_state,
        success=report.success,
        reason=(report.reason or None) and str(report.reason)[:100],
        failed_task_ids=list(report.failed_task_ids),
        inlet_uris=list(report.inlet_uris),
        outlet_uris=list(report.outlet_uris),
        run_start_date=report.start_date,
        run_end_date=report.end_date,
        conn_id=conn_id,
        operation=report.operation,
        body=report.body_json(),
        status=RunReportStatus.PENDING.value,
        attempts=0,
        next_attempt_at=now + lease,
    )
    try:
        with session_scope(engine) as session:
            session.add(row)
            session.flush()
            return row.id, True
    except IntegrityError:
        with session_scope(engine) as session:
            existing = session.scalar(select(RunReport.id).where(RunReport.report_key == report.report_key))
        if existing is None:
            raise
        return existing, False


def claim(engine: Engine, report_id: int, *, lease: timedelta = LEASE, now: datetime | None = None) -> bool:
    """Take a due pending report for ``lease``; False if it is not pending, not due, or another sender has it."""
    now = now or _now()
    with session_scope(engine) as session:
        result = session.execute(
            update(RunReport)
            .where(RunReport.id == report_id, RunReport.status == RunReportStatus.PENDING.value,
                   or_(RunReport.next_attempt_at.is_(None), RunReport.next_attempt_at <= now))
            .values(next_attempt_at=now + lease, updated_at=now)
        )
        return result.rowcount == 1


@dataclass(frozen=True)
class DeliveryOutcome:
    """The outcome of one send: ``accepted``, ``pending`` (will be re-sent) or ``rejected``."""

    status: str
    message: str = ""
    http_status: int | None = None

    @property
    def unavailable(self) -> bool:
        """Monte Carlo could not take it now (the report stays pending)."""
        return self.status == RunReportStatus.PENDING.value


def deliver(engine: Engine, report_id: int, hook: MonteCarloHook, *, timeout: float) -> DeliveryOutcome:
    """Send a report the caller has claimed, once, and record the outcome.

    :param timeout: seconds for connecting and for reading (each).
    """
    with session_scope(engine) as session:
        body = session.scalar(select(RunReport.body).where(RunReport.id == report_id))
    if body is None:
        raise LookupError(f"run report {report_id} does not exist")
    try:
        hook.send_body(json.loads(body), timeout=timeout)
    except Exception as error:  # noqa: BLE001 - classified below; the report is kept either way
        failure = hook.describe_failure(error)
        outcome = DeliveryOutcome(
            RunReportStatus.PENDING.value if failure.transient else RunReportStatus.REJECTED.value,
            failure.message, failure.http_status)
    else:
        outcome = DeliveryOutcome(RunReportStatus.ACCEPTED.value, "", 200)
    _record(engine, report_id, outcome)
    if outcome.status == RunReportStatus.REJECTED.value:
        log.error("Monte Carlo rejected run report %s: %s", report_id, outcome.message)
    elif outcome.unavailable:
        log.warning("run report %s waits for the sweep: %s", report_id, outcome.message)
    return outcome


def _record(engine: Engine, report_id: int, outcome: DeliveryOutcome) -> None:
    now = _now()
    values: dict[str, Any] = {
        "status": outcome.status,
        "attempts": RunReport.attempts + 1,
        "http_status": outcome.http_status,
        "last_error": outcome.message or None,
        "next_attempt_at": None,
        "updated_at": now,
    }
    if outcome.status == RunReportStatus.ACCEPTED.value:
        values["accepted_at"] = now
    with session_scope(engine) as session:
        session.execute(update(RunReport).where(RunReport.id == report_id).values(**values))


@dataclass
class SweepResult:
    """What a sweep did; ``unavailable`` maps a connection to why Monte Carlo could not be reached through it."""

    claimed: int = 0
    accepted: int = 0
    rejected: int = 0
    pending: int = 0
    unavailable: dict[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"claimed": self.claimed, "accepted": self.accepted, "rejected": self.rejected,
                "pending": self.pending, "unavailable": dict(self.unavailable)}

    def raise_if_unavailable(self) -> None:
        """:raises MonteCarloUnavailableError: naming each connection, its error and how many reports wait."""
        if self.unavailable:
            problems = "; ".join(f"{conn}: {message}" for conn, message in sorted(self.unavailable.items()))
            raise MonteCarloUnavailableError(
                f"Monte Carlo is unavailable, {self.pending} run report(s) wait and are re-sent by the next sweep "
                f"({self.accepted} accepted, {self.rejected} rejected in this one): {problems}")


def sweep(
    engine: Engine,
    *,
    hooks: Mapping[str, MonteCarloHook] | None = None,
    limit: int = 500,
    timeout: float = 10.0,
    deadline: float | None = None,
    conn_ids: Iterable[str] | None = None,
    lease: timedelta = LEASE,
) -> SweepResult:
    """Re-send due pending reports, oldest first.

    :param hooks: hooks per connection id (built on demand for the others).
    :param limit: at most this many reports.
    :param timeout: seconds for connecting and for reading (each) per request; capped so as to end by ``deadline``.
    :param deadline: a :func:`time.monotonic` value after which no report is sent.
    :param conn_ids: only the reports of these connections.
    :return: counts; ``pending`` is what is left pending (due or not) for the connections involved.
    """
    from demobank.connectors.montecarlo import MonteCarloHook

    hooks = dict(hooks or {})
    result = SweepResult()
    now = _now()
    with session_scope(engine) as session:
        query = (select(RunReport.id, RunReport.conn_id)
                 .where(RunReport.status == RunReportStatus.PENDING.value,
                        or_(RunReport.next_attempt_at.is_(None), RunReport.next_attempt_at <= now))
                 .order_by(RunReport.id).limit(limit))
        if conn_ids is not None:
            query = query.where(RunReport.conn_id.in_(list(conn_ids)))
        due = session.execute(query).all()
    for report_id, conn_id in due:
        if conn_id in result.unavailable:
            continue
        per_request = timeout
        if deadline is not None:
            remaining = deadline - time.monotonic()
            if remaining < 0.05:
                break
            per_request = min(timeout, remaining / 2)  # connect + read
        if not claim(engine, report_id, lease=lease):
            continue
        result.claimed += 1
        hook = hooks.get(conn_id)
        if hook is None:
            hook = hooks[conn_id] = MonteCarloHook(montecarlo_conn_id=conn_id, timeout=timeout)
        outcome = deliver(engine, report_id, hook, timeout=per_request)
        if outcome.status == RunReportStatus.ACCEPTED.value:
            result.accepted += 1
        elif outcome.status == RunReportStatus.REJECTED.value:
            result.rejected += 1
        else:
            result.unavailable[conn_id] = outcome.message
    with session_scope(engine) as session:
        query = select(RunReport.id).where(RunReport.status == RunReportStatus.PENDING.value)
        if conn_ids is not None:
            query = query.where(RunReport.conn_id.in_(list(conn_ids)))
        result.pending = len(session.scalars(query).all())
    if result.claimed:
        log.info("run report sweep: %s", result.as_dict())
    return result


def requeue_rejected(engine: Engine, *, dag_id: str | None = None, since: datetime | None = None) -> int:
    """Set rejected reports back to ``pending`` (e.g. after the connection's credentials were fixed); the next sweep
    sends them. Their ``last_error`` stays until the next outcome.

    :param dag_id: only this DAG's reports.
    :param since: only reports created at or after this time.
    :return: how many were requeued.
    """
    conditions = [RunReport.status == RunReportStatus.REJECTED.value]
    if dag_id is not None:
        conditions.append(RunReport.dag_id == dag_id)
    if since is not None:
        conditions.append(RunReport.created_at >= since)
    with session_scope(engine) as session:
        result = session.execute(update(RunReport).where(and_(*conditions))
                                 .values(status=RunReportStatus.PENDING.value, next_attempt_at=None,
                                         dismissed_at=None, updated_at=_now()))
        return result.rowcount


def dismiss_rejected(engine: Engine, *, dag_id: str | None = None, now: datetime | None = None) -> int:
    """Mark the new rejected reports as seen: they stay rejected (listed, requeueable), no longer new.

    :return: how many were dismissed.
    """
    conditions = [RunReport.status == RunReportStatus.REJECTED.value, RunReport.dismissed_at.is_(None)]
    if dag_id is not None:
        conditions.append(RunReport.dag_id == dag_id)
    with session_scope(engine) as session:
        return session.execute(update(RunReport).where(*conditions).values(dismissed_at=now or _now())).rowcount


@dataclass(frozen=True)
class RejectedSummary:
    """Rejected reports: all of them, the new ones (neither requeued nor dismissed) per DAG, the latest new ones."""

    total: int
    new: int
    new_by_dag: dict[str, int]
    latest: list[dict[str, Any]]

    def as_dict(self) -> dict[str, Any]:
        return {"total": self.total, "new": self.new, "new_by_dag": dict(self.new_by_dag), "latest": self.latest}


def rejected_summary(engine: Engine, *, latest: int = 10) -> RejectedSummary:
    """Count the rejected reports, and list the ``latest`` new ones (newest first, JSON-ready)."""
    rejected = RunReport.status == RunReportStatus.REJECTED.value
    new = and_(rejected, RunReport.dismissed_at.is_(None))
    with session_scope(engine) as session:
        total = session.scalar(select(func.count()).select_from(RunReport).where(rejected)) or 0
        by_dag = dict(session.execute(select(RunReport.dag_id, func.count()).where(new)
                                      .group_by(RunReport.dag_id).order_by(RunReport.dag_id)).all())
        rows = session.execute(select(RunReport.id, RunReport.dag_id, RunReport.run_id, RunReport.http_status,
                                      RunReport.last_error, RunReport.updated_at)
                               .where(new).order_by(RunReport.id.desc()).limit(latest)).all()
    return RejectedSummary(total, sum(by_dag.values()), by_dag, [
        {"id": report_id, "dag_id": dag_id, "run_id": run_id, "http_status": http_status, "last_error": error,
         "rejected_at": rejected_at.isoformat() if rejected_at else None}
        for report_id, dag_id, run_id, http_status, error, rejected_at in rows])


def list_reports(engine: Engine, *, dag_id: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
    """The latest reports (newest first), JSON-ready, for pages and tests (no body).

    :param dag_id: only this DAG's.
    """
    with session_scope(engine) as session:
        query = select(RunReport).order_by(RunReport.id.desc()).limit(limit)
        if dag_id is not None:
            query = query.where(RunReport.dag_id == dag_id)
        rows = session.scalars(query).all()
    return [
        {
            "id": r.id, "dag_id": r.dag_id, "run_id": r.run_id, "run_state": r.run_state, "success": r.success,
            "reason": r.reason, "failed_task_ids": r.failed_task_ids, "inlet_uris": r.inlet_uris,
            "outlet_uris": r.outlet_uris,
            "run_start_date": r.run_start_date.isoformat() if r.run_start_date else None,
            "run_end_date": r.run_end_date.isoformat() if r.run_end_date else None,
            "status": r.status, "attempts": r.attempts, "http_status": r.http_status, "last_error": r.last_error,
            "accepted_at": r.accepted_at.isoformat() if r.accepted_at else None,
            "created_at": r.created_at.isoformat() if r.created_at else None,
        }
        for r in rows
    ]
