"""``airflow_dag`` targets: every event the target's filter selects starts one run of a DAG.

This is how a large ``transaction.created`` starts ``connect_transaction_alert`` (the seeded target
``connect-transaction-alerts``: ``event_types: [transaction.created]``, ``match: {amount: {">=": threshold}}``).
Why the dispatcher and not an Asset event or an SQS ``AssetWatcher``: a run needs one event's data as its conf,
and an asset-triggered run may carry several events; the dispatcher already gives retries, dead letters with
reasons, per-target state and replay.

The run id is ``event__<event id>``, so a redelivered event (a retried dispatch, a replay) finds its run and starts
nothing: at most one alert per event. Runs are started the way Airflow's ``TriggerDagRunOperator`` does, through
the task's supervisor and the execution API: no credentials, but only inside an Airflow task (the
``events_dispatch`` DAG); elsewhere the target's deliveries wait (a target error, nothing dead-lettered).
An event the DAG has nothing to do for is delivered without a run (:class:`NoRunNeeded`, its reason recorded).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from demobank.events.eventbridge import Delivered, Failed, Outcome, PublishResult

log = logging.getLogger(__name__)

ConfBuilder = Callable[[Mapping[str, Any]], dict[str, Any]]


class NoRunNeeded(Exception):
    """Raised by a conf builder for an event its DAG has nothing to do for (e.g. a transaction of a customer who
    is not enrolled in alerts): the delivery is done, recorded with the reason as its external id, and no run is
    started. An event the DAG should take but cannot (bad data) raises ``ValueError`` instead: a dead letter."""


Trigger = Callable[[str, str, dict[str, Any]], bool]


CONF_BUILDER_GROUP = "demobank.airflow_dag_conf"
"""The entry-point group where a module registers the conf its DAG's runs get from an event: the name is the DAG
id, the object a function envelope → conf that raises ``ValueError`` for an event the DAG cannot take (Connect
registers ``connect_transaction_alert`` in ``pyproject.toml``). Any other DAG gets ``{"event": <envelope>}``."""


def conf_builder_for(dag_id: str) -> ConfBuilder | None:
    """The conf builder registered for ``dag_id`` under :data:`CONF_BUILDER_GROUP`, if any."""
    from importlib.metadata import entry_points

    for entry in entry_points(group=CONF_BUILDER_GROUP, name=dag_id):
        return entry.load()
    return None


def run_id_for(envelope_id: str) -> str:
    """The run id of the DAG run an event starts (deterministic: one run per event)."""
    return f"event__{envelope_id}"


def trigger_in_task(dag_id: str, run_id: str, conf: dict[str, Any]) -> bool:
    """Start a DAG run from inside a running task; return ``False`` if a run with this id already exists.

    :raises RuntimeError: not inside an Airflow task, or Airflow refused the run (the message says why).
    """
    from airflow.sdk.exceptions import ErrorType
    from airflow.sdk.execution_time import task_runner
    from airflow.sdk.execution_time.comms import ErrorResponse, TriggerDagRun

    comms = getattr(task_runner, "SUPERVISOR_COMMS", None)
    if comms is None:
        raise RuntimeError("airflow_dag targets start DAG runs only inside an Airflow task: the events_dispatch DAG "
                           "delivers them")
    answer = comms.send(TriggerDagRun(dag_id=dag_id, run_id=run_id, conf=conf, logical_date=None))
    if isinstance(answer, ErrorResponse):
        if answer.error == ErrorType.DAGRUN_ALREADY_EXISTS:
            return False
        raise RuntimeError(f"Airflow refused to start {dag_id} run {run_id}: {answer.error} {answer.detail or ''}")
    return True


class AirflowDagPublisher:
    """Starts one run of ``dag_id`` per envelope (see the module docstring)."""

    def __init__(self, dag_id: str, *, trigger: Trigger = trigger_in_task, conf_builder: ConfBuilder | None = None):
        self.dag_id = dag_id
        self.trigger = trigger
        self.conf_builder = conf_builder or conf_builder_for(dag_id) or (lambda envelope: {"event": dict(envelope)})

    def publish(self, envelopes: Sequence[Mapping[str, Any]]) -> PublishResult:
        """Start a run per envelope: a bad event is a permanent failure (dead letter with the reason); Airflow
        refusing or unreachable is a target error (the deliveries wait, nothing is dead-lettered for it)."""
        outcomes: dict[str, Outcome] = {}
        for envelope in envelopes:
            event_id = str(envelope["id"])
            try:
                conf = self.conf_builder(envelope)
            except NoRunNeeded as skipped:
                log.info("event %s: no %s run needed: %s", event_id, self.dag_id, skipped)
                outcomes[event_id] = Delivered(f"no run: {skipped}"[:200])
                continue
            except (ValueError, KeyError, TypeError) as error:
                outcomes[event_id] = Failed("InvalidEventForDag", f"no {self.dag_id} run for this event: {error}",
                                            transient=False)
                continue
            run_id = run_id_for(event_id)
            try:
                started = self.trigger(self.dag_id, run_id, conf)
            except Exception as error:
                log.warning("event %s: could not start %s run %s", event_id, self.dag_id, run_id, exc_info=True)
                outcomes[event_id] = Failed("TriggerFailed", f"{self.dag_id} run {run_id}: {error}", transient=True,
                                            target_error=True)
                continue
            log.info("event %s: %s run %s %s", event_id, self.dag_id, run_id, "started" if started else "exists")
            outcomes[event_id] = Delivered(run_id)
        return PublishResult(outcomes, requests=len(envelopes))
