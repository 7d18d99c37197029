"""
### Events dispatch

Delivers the events of the suite's outbox to every target whose filter selects them (EventBridge buses, DAGs such
as `connect_transaction_alert`), at least once, in outbox order per target.

Runs **as soon as the outbox receives events** (publishers update the asset `demobank://events/outbox`: tasks
through their outlets, `POST /demobank/api/v1/events` in the API server) and **every minute** as a safety sweep
(retries after backoff, events whose announcement was missed).

`dispatch` claims pending deliveries in batches under a lease (two dispatchers never deliver the same batch; the
lease is renewed batch by batch), publishes them (EventBridge: ≤10 entries and ≤256 KB per `PutEvents`, only failed
entries resent), and records per target: delivered, retried later with backoff, or dead-lettered with the reason.
It works through everything due, then **fails if a target could not be reached** (the error names the target and
what to check), so a broken target shows in the run history. A broken target **backs off as a whole** (30 s doubling
to 15 min; only a probe of 10 deliveries per backoff period, so other targets keep their pace) and **pauses itself**
after `DEMOBANK_TARGET_PAUSE_AFTER` (1 h) of continuous failure; `suite_health_check` then fails until it is resumed.
State and errors per target: the *Event targets* page (Health panel).
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import AssetOrTimeSchedule, CronTriggerTimetable, dag, task

from demobank.events.outbox_asset import OUTBOX_ASSET

SWEEP_EVERY_MINUTE = "* * * * *"


@dag(
    dag_id="events_dispatch",
    schedule=AssetOrTimeSchedule(timetable=CronTriggerTimetable(SWEEP_EVERY_MINUTE, timezone="UTC"),
                                 assets=OUTBOX_ASSET),
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    doc_md=__doc__,
    tags=["events"],
    default_args={
        "owner": "integration-engineering",
        "retries": 2,  # a database hiccup; an unreachable target fails the run without retries (below)
        "retry_delay": timedelta(seconds=10),
        "retry_exponential_backoff": True,
        "execution_timeout": timedelta(minutes=30),
    },
)
def events_dispatch() -> None:
    @task
    def dispatch(run_id: str | None = None) -> dict:
        """Deliver everything due; fail afterwards, naming them, if some targets could not be reached."""
        from airflow.sdk.exceptions import AirflowFailException

        from demobank.events.tasks import TargetsUnreachableError, dispatch_pending

        try:
            return dispatch_pending(worker_id=f"events_dispatch/{run_id}")
        except TargetsUnreachableError as error:
            # Retrying now would find the deliveries in backoff: the sweeps retry them.
            raise AirflowFailException(str(error)) from None

    dispatch()


events_dispatch()
