"""The data quality record of the Data Factory (suite database), written by the pipelines, read by the UI.

Per DAG run (``data_quality_runs``): the business day, the outcome (``running``, ``success``, ``failed`` with the
failed task and its error), timing and totals (rows in, loaded, quarantined, bad share and its threshold, events
published); per table (``data_quality_tables``, tables named like their Assets, e.g. ``warehouse.transactions``):
rows in, out and quarantined; per check (``data_quality_checks``): rows checked and rejected, status and message.
The quarantined rows themselves are in the warehouse's ``quarantine_transactions``.

Writing: :class:`QualityRecorder` (every write is an upsert by run, table or check, so a retried task or a cleared
run rewrites its record instead of adding to it). Reading: :func:`run_history` and :func:`run_detail` return plain
dicts (JSON-ready: dates and times as ISO 8601 strings).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import Engine, delete, select
from sqlalchemy.orm import Session

from demobank.db.engine import session_scope
from demobank.db.models import (
    DataQualityCheck,
    DataQualityRun,
    DataQualityTable,
    QualityCheckStatus,
    QualityRunStatus,
)

log = logging.getLogger(__name__)

MAX_ERROR_CHARS = 4_000


@dataclass(frozen=True)
class CheckResult:
    """One check's outcome, as recorded."""

    name: str
    kind: str
    status: str
    checked_rows: int | None = None
    failed_rows: int | None = None
    message: str | None = None
    table: str | None = None


@dataclass(frozen=True)
class TableCounts:
    """Rows in, out and quarantined for one table."""

    table: str
    asset_uri: str | None = None
    rows_in: int | None = None
    rows_out: int | None = None
    rows_quarantined: int | None = None
    detail: Mapping[str, Any] | None = None


def _now() -> datetime:
    return datetime.now(UTC)


class QualityRecorder:
    """Writes one run's data quality record.

    :param engine: the suite's database (``None``: :func:`demobank.db.engine.get_engine`).
    :param dag_id: the DAG.
    :param run_id: the DAG run.
    """

    def __init__(self, engine: Engine | None, dag_id: str, run_id: str) -> None:
        self.engine = engine
        self.dag_id = dag_id
        self.run_id = run_id

    def _run(self, session: Session) -> DataQualityRun | None:
        return session.scalars(
            select(DataQualityRun).where(DataQualityRun.dag_id == self.dag_id, DataQualityRun.run_id == self.run_id)
        ).first()

    def start(self, business_date: date | None, logical_date: datetime | None = None, *,
              max_bad_share: float | None = None) -> None:
        """Open (or reopen, for a cleared run) the run's record as ``running``; earlier results are removed."""
        with session_scope(self.engine) as session:
            run = self._run(session)
            if run is None:
                run = DataQualityRun(dag_id=self.dag_id, run_id=self.run_id)
                session.add(run)
            else:
                session.execute(delete(DataQualityCheck).where(DataQualityCheck.run_pk == run.id))
                session.execute(delete(DataQualityTable).where(DataQualityTable.run_pk == run.id))
            run.business_date = business_date
            run.logical_date = logical_date
            run.status = QualityRunStatus.RUNNING.value
            run.failed_task = None
            run.error = None
            run.started_at = _now()
            run.finished_at = None
            run.rows_in = run.rows_loaded = run.rows_quarantined = run.events_published = None
            run.bad_share = None
            run.max_bad_share = max_bad_share

    def _ensure(self, session: Session) -> DataQualityRun:
        run = self._run(session)
        if run is None:  # a step recorded before start() (or start() was lost): open the record now
            run = DataQualityRun(dag_id=self.dag_id, run_id=self.run_id, status=QualityRunStatus.RUNNING.value,
                                 started_at=_now())
            session.add(run)
            session.flush()
        return run

    def update(self, **totals: Any) -> None:
        """Set run-level totals (``rows_in``, ``rows_loaded``, ``rows_quarantined``, ``bad_share``,
        ``max_bad_share``, ``events_published``, ``business_date``)."""
        allowed = {"rows_in", "rows_loaded", "rows_quarantined", "bad_share", "max_bad_share", "events_published",
                   "business_date"}
        unknown = set(totals) - allowed
        if unknown:
            raise TypeError(f"unknown totals {sorted(unknown)}; use some of {sorted(allowed)}")
        with session_scope(self.engine) as session:
            run = self._ensure(session)
            for name, value in totals.items():
                setattr(run, name, value)

    def checks(self, task_id: str, results: Iterable[CheckResult]) -> None:
        """Record check results (replacing earlier results of the same checks in this run)."""
        with session_scope(self.engine) as session:
            run = self._ensure(session)
            existing = {row.check_name: row for row in session.scalars(
                select(DataQualityCheck).where(DataQualityCheck.run_pk == run.id))}
            for result in results:
                if result.status not in {status.value for status in QualityCheckStatus}:
                    raise ValueError(f"check {result.name}: unknown status {result.status!r}")
                row = existing.get(result.name) or DataQualityCheck(run_pk=run.id, check_name=result.name)
                row.task_id = task_id
                row.kind = result.kind
                row.table_name = result.table
                row.status = result.status
                row.checked_rows = result.checked_rows
                row.failed_rows = result.failed_rows
                row.message = result.message
                row.checked_at = _now()
                session.add(row)

    def tables(self, counts: Iterable[TableCounts]) -> None:
        """Record per-table row counts (replacing earlier counts of the same tables in this run)."""
        with session_scope(self.engine) as session:
            run = self._ensure(session)
            existing = {row.table_name: row for row in session.scalars(
                select(DataQualityTable).where(DataQualityTable.run_pk == run.id))}
            for count in counts:
                row = existing.get(count.table) or DataQualityTable(run_pk=run.id, table_name=count.table)
                row.asset_uri = count.asset_uri
                row.rows_in = count.rows_in
                row.rows_out = count.rows_out
                row.rows_quarantined = count.rows_quarantined
                row.detail = dict(count.detail) if count.detail is not None else None
                session.add(row)

    def finish(self, status: QualityRunStatus | str, *, failed_task: str | None = None,
               error: str | None = None) -> None:
        """Close the run's record with its outcome (``success``, or ``failed`` with the task and the error)."""
        status = QualityRunStatus(status)
        with session_scope(self.engine) as session:
            run = self._ensure(session)
            if status == QualityRunStatus.FAILED and run.status == QualityRunStatus.FAILED.value and run.failed_task:
                return  # the first failure is the cause; keep it
            run.status = status.value
            run.failed_task = failed_task
            run.error = error[:MAX_ERROR_CHARS] if error else None
            run.finished_at = _now()


def record_failure(dag_id: str, run_id: str, task_id: str, error: BaseException | str | None,
                   engine: Engine | None = None) -> None:
    """Mark a run failed in the record, naming the task and the error (for ``on_failure_callback``).

    Never raises: the task has failed already, the record is secondary (the error is logged).
    """
    try:
        QualityRecorder(engine, dag_id, run_id).finish(
            QualityRunStatus.FAILED, failed_task=task_id, error=str(error) if error is not None else None)
    except Exception:  # a callback must not mask the task's own failure
        log.exception("could not record the failure of %s.%s (run %s) in the data quality record",
                      dag_id, task_id, run_id)


# -- reading ---------------------------------------------------------------------------------------------------


def _iso(value: date | datetime | None) -> str | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
    return value.isoformat()


def _run_dict(run: DataQualityRun, tables: list[DataQualityTable], checks: list[DataQualityCheck]) -> dict[str, Any]:
    duration = None
    if run.finished_at is not None and run.started_at is not None:
        duration = round((run.finished_at - run.started_at).total_seconds(), 3)
    return {
        "dag_id": run.dag_id,
        "run_id": run.run_id,
        "business_date": _iso(run.business_date),
        "logical_date": _iso(run.logical_date),
        "status": run.status,
        "failed_task": run.failed_task,
        "error": run.error,
        "started_at": _iso(run.started_at),
        "finished_at": _iso(run.finished_at),
        "duration_seconds": duration,
        "rows_in": run.rows_in,
        "rows_loaded": run.rows_loaded,
        "rows_quarantined": run.rows_quarantined,
        "bad_share": run.bad_share,
        "max_bad_share": run.max_bad_share,
        "events_published": run.events_published,
        "tables": [
            {"table": t.table_name, "asset_uri": t.asset_uri, "rows_in": t.rows_in, "rows_out": t.rows_out,
             "rows_quarantined": t.rows_quarantined, "detail": t.detail}
            for t in sorted(tables, key=lambda t: t.id)
        ],
        "checks": [
            {"name": c.check_name, "kind": c.kind, "table": c.table_name, "status": c.status, "task_id": c.task_id,
             "checked_rows": c.checked_rows, "failed_rows": c.failed_rows, "message": c.message,
             "checked_at": _iso(c.checked_at)}
            for c in sorted(checks, key=lambda c: c.id)
        ],
    }


def run_history(engine: Engine | None, dag_id: str, limit: int = 50) -> list[dict[str, Any]]:
    """The latest runs of ``dag_id`` (newest first), each with its tables and checks, as plain dicts.

    Keys of a run: ``dag_id``, ``run_id``, ``business_date``, ``logical_date``, ``status`` (``running``,
    ``success``, ``failed``), ``failed_task``, ``error``, ``started_at``, ``finished_at``, ``duration_seconds``,
    ``rows_in``, ``rows_loaded``, ``rows_quarantined``, ``bad_share``, ``max_bad_share``, ``events_published``,
    ``tables`` (``table``, ``asset_uri``, ``rows_in``, ``rows_out``, ``rows_quarantined``, ``detail``) and ``checks``
    (``name``, ``kind``, ``table``, ``status``, ``task_id``, ``checked_rows``, ``failed_rows``, ``message``,
    ``checked_at``). Dates and times are ISO 8601 strings (UTC, ``Z``).

    :param engine: the suite's database (``None``: the configured one).
    :param dag_id: the DAG.
    :param limit: at most this many runs (1 to 1000).
    """
    if not 1 <= limit <= 1000:
        raise ValueError(f"limit must be between 1 and 1000, got {limit}")
    with session_scope(engine) as session:
        runs = list(session.scalars(
            select(DataQualityRun).where(DataQualityRun.dag_id == dag_id)
            .order_by(DataQualityRun.started_at.desc(), DataQualityRun.id.desc()).limit(limit)))
        if not runs:
            return []
        ids = [run.id for run in runs]
        tables: dict[int, list[DataQualityTable]] = {}
        for row in session.scalars(select(DataQualityTable).where(DataQualityTable.run_pk.in_(ids))):
            tables.setdefault(row.run_pk, []).append(row)
        checks: dict[int, list[DataQualityCheck]] = {}
        for row in session.scalars(select(DataQualityCheck).where(DataQualityCheck.run_pk.in_(ids))):
            checks.setdefault(row.run_pk, []).append(row)
        return [_run_dict(run, tables.get(run.id, []), checks.get(run.id, [])) for run in runs]


def run_detail(engine: Engine | None, dag_id: str, run_id: str) -> dict[str, Any] | None:
    """One run's record as :func:`run_history` gives it, or ``None`` if the run has none."""
    with session_scope(engine) as session:
        run = session.scalars(
            select(DataQualityRun).where(DataQualityRun.dag_id == dag_id, DataQualityRun.run_id == run_id)).first()
        if run is None:
            return None
        tables = list(session.scalars(select(DataQualityTable).where(DataQualityTable.run_pk == run.id)))
        checks = list(session.scalars(select(DataQualityCheck).where(DataQualityCheck.run_pk == run.id)))
        return _run_dict(run, tables, checks)


def on_task_failure(context: Mapping[str, Any]) -> None:
    """Task ``on_failure_callback`` of the Data Factory DAGs: the run failed in this task, record why."""
    ti = context.get("ti") or context.get("task_instance")
    if ti is None:
        return
    record_failure(ti.dag_id, ti.run_id, ti.task_id, context.get("exception"))
