"""Run reporting to Monte Carlo: after every run of a Data Factory DAG, its outcome, timing, failed tasks and
lineage, in the format of Monte Carlo's Airflow integration (airflow-mcd), kept until Monte Carlo accepts it.

Put the notifier on a DAG (both callbacks; they run in the DAG processor once the run has finished)::

    from demobank.data_factory.reporting import MonteCarloRunReporter

    report_run = MonteCarloRunReporter()
    with DAG(..., on_success_callback=report_run, on_failure_callback=report_run): ...

What the callback does, in this order, never raising:

1. builds the report (:func:`build_dag_report`) from the callback context: the run's state, start and end, the
   reason, the failed tasks, every task's state (asked from the API server when the DAG processor can), the
   DAG's task dependencies, and each task's inlets and outlets as asset URIs;
2. writes it to the suite's database as ``pending`` (:mod:`demobank.data_factory.report_outbox`), so nothing is
   lost whatever Monte Carlo does;
3. sends it once through pycarlo to the integration gateway with a short timeout (``send_timeout``, 0.5 s for
   connecting and for reading: at most about one second when Monte Carlo hangs or is unreachable). Accepted →
   ``accepted``; 5xx, timeouts, connection errors → stays ``pending`` for the sweep (``data_factory_report_sweep``,
   every five minutes); any other 4xx (credentials, payload) → ``rejected`` with Monte Carlo's reason;
4. if Monte Carlo accepted it and time is left in the one-second budget, re-sends a few older pending reports.

Format: what airflow-mcd 0.3.12 sends to the gateway, built with its own classes (``DagResult``,
``DagTaskInstanceResult``, ``AirflowEnv``, ``AirflowEventsClient.upload_dag_result`` and its helpers for task
dependencies, outlet URIs, triggered DAGs and schedule URIs). Closed here, where it falls short on Airflow 3.3:

* ``tasks`` is empty in airflow-mcd on Airflow 3 (no task instances in the context): here it lists every task
  with its state and its ``inlets``/``outlets``, so the failed task is named and inlets reach Monte Carlo at all
  (airflow-mcd's DAG report has outlet URIs only);
* an Asset's ``access_control`` makes airflow-mcd's lineage entries unserialisable: here an asset becomes
  ``{"uri", "name", "group", "extra", "type"}`` with JSON-safe values only;
* the nested ``payload`` (free-form in Monte Carlo's API) also carries ``dataset_inlet_uris``,
  ``failed_task_ids`` and ``duration_seconds``; the top level keeps exactly airflow-mcd's keys;
* airflow-mcd keeps nothing: a failed send is only logged, so the report is lost (its retry check never fires
  for an HTTP error answer, so a 503 is dropped after one request; a hanging gateway holds it for pycarlo's 10 s
  timeout; measured in BENCHMARKS.md, ``montecarlo_report``): here the report is stored first, sent once with a
  short timeout, and re-sent by the sweep until Monte Carlo accepts it.
"""

from __future__ import annotations

import functools
import json
import logging
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseNotifier

from demobank.data_factory.run_report import DagRunReport

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from demobank.connectors.montecarlo import MonteCarloHook

log = logging.getLogger(__name__)

DEFAULT_SEND_TIMEOUT = 0.5
"""Seconds for connecting and for reading when a callback sends its report (so at most about 1 s in all)."""
CALLBACK_BUDGET_SECONDS = 1.0
"""Re-sending older pending reports from a callback stops when this much time has passed since it started."""
FLUSH_LIMIT = 5
"""At most this many older pending reports are re-sent by one callback (the sweep does the rest)."""
RECORD_MARGIN_SECONDS = 0.1
"""Kept free at the end of the budget for recording the outcome of the last re-send."""

_SUCCESS_STATES = frozenset({"success", "skipped"})
_FAILED_STATES = frozenset({"failed"})


# -- lineage -----------------------------------------------------------------------------------------------------


def _json_safe(value: Any) -> Any:
    """A JSON-ready copy of ``value``: containers walked, anything else that JSON cannot hold made a string."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        items = [_json_safe(v) for v in value]
        return sorted(items, key=str) if isinstance(value, (set, frozenset)) else items
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)


def _asset_type() -> str:
    from airflow.sdk import Asset

    return str(Asset)  # "<class 'airflow.sdk.definitions.asset.Asset'>", as airflow-mcd names it


def lineage_entry(obj: Any) -> dict[str, Any]:
    """One inlet or outlet in airflow-mcd's lineage format (attributes plus ``type``), JSON-safe.

    Assets (the authoring ``Asset`` in the DAG processor, ``SerializedAsset`` under ``dag.test()``) become
    ``{"uri", "name", "group", "extra", "type"}``; their ``access_control`` and ``watchers`` are left out (the
    former is what makes airflow-mcd's entries unserialisable). Aliases and name references keep their name;
    anything else is ``{"value": str(obj), "type"}``.
    """
    uri = getattr(obj, "uri", None)
    name = getattr(obj, "name", None)
    if isinstance(uri, str) and uri and isinstance(name, str):
        return {
            "uri": uri,
            "name": name,
            "group": _json_safe(getattr(obj, "group", None)),
            "extra": _json_safe(getattr(obj, "extra", None) or {}),
            "type": _asset_type(),
        }
    if isinstance(uri, str) and uri:  # AssetUriRef
        return {"uri": uri, "type": str(type(obj))}
    if isinstance(name, str) and name:  # AssetAlias, AssetNameRef
        return {"name": name, "type": str(type(obj))}
    if isinstance(obj, dict):
        return {**_json_safe(obj), "type": str(type(obj))}
    return {"value": str(obj), "type": str(type(obj))}


def _lineage(task: Any, attribute: str) -> list[dict[str, Any]]:
    return [lineage_entry(o) for o in (getattr(task, attribute, None) or [])]


def _uris(entries: list[dict[str, Any]]) -> list[str]:
    return [e["uri"] for e in entries if isinstance(e.get("uri"), str)]


# -- task states ---------------------------------------------------------------------------------------------------


def _state_value(state: Any) -> str:
    return str(getattr(state, "value", state) or "")


def _fold_states(raw: dict[str, Any], task_ids: set[str]) -> dict[str, str]:
    """``{task_id: state}`` from the API's ``{task_id or task_id_<map index>: state}``: a mapped task is failed
    if any instance failed, else the state its instances share, else ``running``-like ``mixed``."""
    per_task: dict[str, set[str]] = {}
    for key, state in raw.items():
        task_id = key
        if key not in task_ids:
            base, _, index = key.rpartition("_")
            if base in task_ids and index.isdigit():
                task_id = base
        per_task.setdefault(task_id, set()).add(_state_value(state))
    folded: dict[str, str] = {}
    for task_id, states in per_task.items():
        if "failed" in states:
            folded[task_id] = "failed"
        elif len(states) == 1:
            folded[task_id] = next(iter(states))
        elif states <= _SUCCESS_STATES:
            folded[task_id] = "success"
        else:
            folded[task_id] = "mixed"
    return folded


def task_states(context: dict[str, Any], task_ids: set[str]) -> dict[str, str]:
    """Every task's state in this run: asked from the API server when the DAG processor can
    (``RuntimeTaskInstance.get_task_states``), else what the context tells (the task that failed, or the last
    one that succeeded); tasks not known are left out.
    """
    dag = context["dag"]
    run_id = context["run_id"]
    ti = context.get("ti") or context.get("task_instance")
    getter = getattr(ti, "get_task_states", None)
    if getter is not None:
        try:
            by_run = getter(dag_id=dag.dag_id, run_ids=[run_id])
            raw = (by_run or {}).get(run_id)
            if raw:
                return _fold_states(dict(raw), task_ids)
        except Exception as error:  # noqa: BLE001 - e.g. dag.test(), where no supervisor answers
            log.debug("task states not available from the API server: %s", error)
    states: dict[str, str] = {}
    task_id = getattr(ti, "task_id", None)
    reason = context.get("reason")
    if task_id in task_ids:
        if reason == "task_failure":
            states[task_id] = "failed"
        elif reason == "success":
            states[task_id] = "success"
    return states


# -- the report ----------------------------------------------------------------------------------------------------


def _as_datetime(value: Any) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    try:
        parsed = datetime.fromisoformat(str(value))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _iso(value: datetime | None, default: datetime) -> str:
    return (value or default).isoformat()


def _log_url(ti: Any) -> str | None:
    try:
        url = getattr(ti, "log_url", None) if ti is not None else None
    except Exception:  # noqa: BLE001 - a partial task instance (model_construct) may lack fields
        return None
    return url if isinstance(url, str) else None


def _trigger_events(dag_run: Any) -> list[Any] | None:
    """airflow-mcd's ``DatasetTriggerEvent`` list from the run's consumed asset events (no database access)."""
    from airflow_mcd.callbacks.client import DatasetTriggerEvent

    events = []
    for event in getattr(dag_run, "consumed_asset_events", None) or []:
        uri = getattr(getattr(event, "asset", None), "uri", None)
        if uri:
            events.append(DatasetTriggerEvent(uri=uri, source_dag_id=getattr(event, "source_dag_id", None),
                                              source_task_id=getattr(event, "source_task_id", None)))
    return events or None


def _airflow_env() -> Any:
    from airflow_mcd.callbacks.client import AirflowEnv

    env = AirflowEnv()
    if not env.base_url:
        try:
            from airflow.configuration import conf

            env.base_url = conf.get("api", "base_url", fallback=None) or None
        except Exception:  # noqa: BLE001 - optional
            env.base_url = None
    return env


def _gateway_body(result: Any) -> dict[str, Any]:
    """The gateway body airflow-mcd's client builds for ``result``: its ``upload_dag_result``, captured instead
    of sent (``_upload_result_igw`` sends ``{airflow_operation, airflow_payload: {**parameters, payload}}``)."""
    from airflow_mcd.callbacks.client import AirflowEventsClient

    class _Capture(AirflowEventsClient):
        body: dict[str, Any] | None = None

        def _upload_result(self, operation_name: str, operation_parameters: dict, payload_value: dict) -> None:
            self.body = {"airflow_operation": operation_name,
                         "airflow_payload": {**operation_parameters, "payload": payload_value}}

    capture = _Capture(mcd_session_conn_id="", call_timeout=0)
    capture.upload_dag_result(result)
    assert capture.body is not None
    return capture.body


@functools.cache
def _dag_result_class() -> type:
    """airflow-mcd's ``DagResult`` with three more fields for the nested (free-form) ``payload``."""
    from airflow_mcd.callbacks.client import DagResult
    from dataclasses_json import dataclass_json  # airflow-mcd's dependency

    @dataclass_json
    @dataclass
    class DemoBankDagResult(DagResult):
        dataset_inlet_uris: list[str] | None = None
        failed_task_ids: list[str] | None = None
        duration_seconds: float | None = None

    return DemoBankDagResult


def build_dag_report(context: dict[str, Any]) -> DagRunReport:
    """Build the report of a finished DAG run from a DAG-level callback context.

    Works with what Airflow 3.3 passes: in the DAG processor ``dag`` (the parsed DAG), ``run_id``, ``reason`` and,
    when the run has a task instance to refer to, the full task context of the failed task (on failure) or the
    last successful one (on success), with ``dag_run``; under ``dag.test()`` the same with the serialized DAG.

    :param context: the callback context.
    :return: the report, its gateway body JSON-ready.
    """
    from airflow_mcd.callbacks.client import DagTaskInstanceResult
    from airflow_mcd.callbacks.utils import AirflowEventsClientUtils as McdUtils

    dag = context["dag"]
    run_id = str(context["run_id"])
    reason = context.get("reason")
    dag_run = context.get("dag_run")
    now = datetime.now(UTC)

    tasks = dict(dag.task_dict)
    states = task_states(context, set(tasks))
    run_state = _state_value(getattr(dag_run, "state", None)) or ("success" if reason == "success" else "failed")
    success = run_state in _SUCCESS_STATES
    start = _as_datetime(getattr(dag_run, "start_date", None))
    end = _as_datetime(getattr(dag_run, "end_date", None)) or now
    logical = _as_datetime(getattr(dag_run, "logical_date", None) or getattr(dag_run, "run_after", None))
    failed = sorted(t for t, s in states.items() if s in _FAILED_STATES)

    ti = context.get("ti") or context.get("task_instance")
    task_results = []
    inlets_all: set[str] = set()
    outlets_all: set[str] = set()
    for task_id in sorted(tasks):
        task = tasks[task_id]
        inlets, outlets = _lineage(task, "inlets"), _lineage(task, "outlets")
        inlets_all.update(_uris(inlets))
        outlets_all.update(_uris(outlets))
        this_ti = ti if getattr(ti, "task_id", None) == task_id else None
        try_number = int(getattr(this_ti, "try_number", 0) or 0)
        task_results.append(DagTaskInstanceResult(
            task_id=task_id,
            state=states.get(task_id, ""),
            log_url=_log_url(this_ti),  # type: ignore[arg-type] - only the context's task instance has one
            prev_attempted_tries=max(try_number - 1, 0),
            duration=0.0,  # per-task timings are not in a DAG-level callback's context on Airflow 3
            execution_date=_iso(logical, now),
            start_date=_iso(start, now),
            end_date=_iso(end, now),
            next_retry_datetime=None,
            max_tries=int(getattr(task, "retries", 0) or 0),
            try_number=try_number,
            exception_message=None,
            inlets=inlets,
            outlets=outlets,
            original_dates=McdUtils._get_original_dates(logical, start, end),
        ))

    result = _dag_result_class()(
        dag_id=dag.dag_id,
        run_id=run_id,
        success=success,
        tasks=task_results,
        state=run_state,
        execution_date=_iso(logical, now),
        start_date=_iso(start, now),
        end_date=end.isoformat(),
        reason=reason,
        original_dates=McdUtils._get_original_dates(logical, start, end),
        tags=sorted(str(t) for t in (getattr(dag, "tags", None) or [])),
        task_dependencies=McdUtils._get_task_dependencies(dag),
        triggered_dags=McdUtils._get_triggered_dags(dag),
        dataset_schedule_uris=McdUtils._get_dataset_schedule_uris(dag),
        dataset_outlet_uris=McdUtils._get_dataset_outlet_uris(dag),
        dataset_trigger_events=_trigger_events(dag_run),
        dataset_inlet_uris=sorted(inlets_all) or None,
        failed_task_ids=failed,
        duration_seconds=(end - start).total_seconds() if start else None,
    )
    result.env = _airflow_env()
    body = _gateway_body(result)
    json.dumps(body)  # fail here, not in the sender, if anything is not JSON
    return DagRunReport(
        dag_id=dag.dag_id,
        run_id=run_id,
        run_state=run_state,
        success=success,
        reason=reason,
        start_date=start,
        end_date=end,
        failed_task_ids=failed,
        inlet_uris=sorted(inlets_all),
        outlet_uris=sorted(outlets_all),
        task_states=states,
        body=body,
    )


# -- the notifier --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReportOutcome:
    """What a callback did: the stored report's id (None if the database was unreachable) and its status."""

    report_id: int | None
    status: str
    message: str = ""
    flushed: int = 0
    timings: dict[str, float] = field(default_factory=dict)


class MonteCarloRunReporter(BaseNotifier):
    """Report a finished DAG run to Monte Carlo (``on_success_callback`` and ``on_failure_callback``).

    Never raises. Stores the report in the suite's database before sending it, sends it once with
    ``send_timeout``, and leaves it to the sweep when Monte Carlo does not accept it now.

    :param montecarlo_conn_id: the Monte Carlo connection.
    :param send_timeout: seconds for connecting and for reading (each) when sending from the callback.
    :param budget_seconds: re-sending older pending reports stops once this much time has passed.
    :param flush_limit: at most this many older pending reports are re-sent per callback.
    """

    template_fields = ()

    def __init__(
        self,
        *,
        montecarlo_conn_id: str = "montecarlo_default",
        send_timeout: float = DEFAULT_SEND_TIMEOUT,
        budget_seconds: float = CALLBACK_BUDGET_SECONDS,
        flush_limit: int = FLUSH_LIMIT,
    ) -> None:
        super().__init__()
        self.montecarlo_conn_id = montecarlo_conn_id
        self.send_timeout = send_timeout
        self.budget_seconds = budget_seconds
        self.flush_limit = flush_limit

    def render_template_fields(self, context: Any, jinja_env: Any = None) -> None:
        """Nothing to render (and the serialized DAG of ``dag.test()`` has no template environment)."""

    def _hook(self) -> MonteCarloHook:
        from demobank.connectors.montecarlo import MonteCarloHook

        return MonteCarloHook(montecarlo_conn_id=self.montecarlo_conn_id, timeout=self.send_timeout)

    def _engine(self) -> Engine:
        from demobank.db.engine import get_engine

        return get_engine()

    def notify(self, context: Any) -> None:
        """Report the run; log, never raise."""
        try:
            self.report(context)
        except Exception:
            log.exception("Monte Carlo run report failed for %s", context.get("run_id"))

    def report(self, context: Any) -> ReportOutcome:
        """Build, store, send; see the module docstring. Returns what happened (for tests and logs)."""
        from demobank.data_factory import report_outbox

        begun = time.monotonic()
        report = build_dag_report(context)
        hook = self._hook()
        try:
            hook.client  # noqa: B018 - imports pycarlo and builds the session (no network) before the clock starts
        except Exception:  # e.g. no credentials: the send below fails the same way and says so
            log.debug("Monte Carlo client not built", exc_info=True)
        started = time.monotonic()
        timings = {"build": started - begun}
        try:
            engine = self._engine()
            report_id, claimed = report_outbox.save_report(engine, report, conn_id=self.montecarlo_conn_id)
        except Exception as error:  # the database being down must not lose the report outright
            log.exception("could not store the Monte Carlo report of %s %s; sending it unstored", report.dag_id,
                          report.run_id)
            try:
                hook.send_body(report.body, timeout=self.send_timeout)
            except Exception as send_error:  # noqa: BLE001
                return ReportOutcome(None, "lost", f"not stored ({error}); not sent "
                                                   f"({hook.describe_failure(send_error).message})")
            return ReportOutcome(None, "accepted", f"sent, but not stored ({error})")
        if not claimed:
            log.info("Monte Carlo report %s of %s %s was already recorded", report_id, report.dag_id, report.run_id)
            return ReportOutcome(report_id, "duplicate")
        timings["store"] = time.monotonic() - started
        outcome = report_outbox.deliver(engine, report_id, hook, timeout=self.send_timeout)
        timings["send"] = time.monotonic() - started - timings["store"]
        flushed = 0
        if outcome.status == "accepted" and self.flush_limit > 0:
            # The budget counts from the callback's start (building included), less a margin for recording
            # what the last re-send did: the whole callback stays within it.
            deadline = begun + self.budget_seconds - RECORD_MARGIN_SECONDS
            if time.monotonic() < deadline:
                swept = report_outbox.sweep(engine, hooks={self.montecarlo_conn_id: hook}, limit=self.flush_limit,
                                            timeout=self.send_timeout, deadline=deadline,
                                            conn_ids=[self.montecarlo_conn_id])
                flushed = swept.accepted
        timings["total"] = time.monotonic() - begun
        log.info("Monte Carlo report %s of %s %s (%s): %s%s; %s re-sent; seconds: %s", report_id, report.dag_id,
                 report.run_id, report.run_state, outcome.status, f" - {outcome.message}" if outcome.message else "",
                 flushed, ", ".join(f"{k} {v:.3f}" for k, v in timings.items()))
        return ReportOutcome(report_id, outcome.status, outcome.message, flushed, timings)


def sweep_pending_reports(*, engine: Engine | None = None, limit: int = 500, timeout: float = 10.0) -> dict[str, Any]:
    """What the ``data_factory_report_sweep`` DAG's task does: re-send every pending report.

    :return: the counts (claimed, accepted, rejected, pending).
    :raises demobank.data_factory.report_outbox.MonteCarloUnavailableError: when Monte Carlo could not be reached
        (or answered 5xx); the reports wait for the next sweep.
    """
    from demobank.data_factory import report_outbox
    from demobank.db.engine import get_engine

    result = report_outbox.sweep(engine or get_engine(), limit=limit, timeout=timeout)
    result.raise_if_unavailable()
    return result.as_dict()
