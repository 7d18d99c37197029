"""
### Suite health check

Every five minutes, checks what operators must act on and **fails when anything is found**, so that Airflow's
failure notifications (e-mail, Slack, PagerDuty callbacks configured for the deployment) alert:

* an **event target paused itself** after failing continuously (longer than `DEMOBANK_TARGET_PAUSE_AFTER`, 1 h
  by default): the message gives its reason;
* an event target has **new dead letters** (deliveries given up, neither requeued nor dismissed), per target;
* Monte Carlo **rejected** run reports that are new (neither requeued nor dismissed).

The failure message lists each problem with what to do. Act on the *Event targets* page (Resume, Requeue, Dismiss)
or with the CLI: `demobank check`, `demobank targets resume NAME`, `demobank requeue dead-letters --target NAME`,
`demobank requeue reports`. The same answer: `GET /demobank/api/v1/health`. A target that is failing but not paused
yet is a warning in the log (the dispatcher backs it off and probes it).

The check is never retried: a failed check is the alert (the retries below are for a database hiccup only).
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import dag, task


@dag(
    dag_id="suite_health_check",
    schedule="*/5 * * * *",
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    doc_md=__doc__,
    tags=["events", "operations"],
    default_args={
        "owner": "integration-engineering",
        "retries": 2,  # a database hiccup; a failed check fails at once, without retries (below)
        "retry_delay": timedelta(seconds=10),
        "retry_exponential_backoff": True,
        "execution_timeout": timedelta(minutes=2),
    },
)
def suite_health_check() -> None:
    @task
    def check() -> dict:
        """Fail, listing every problem, when a target is paused or there are new dead letters or rejected reports."""
        from airflow.sdk.exceptions import AirflowFailException

        from demobank.health import SuiteUnhealthyError, require_healthy

        try:
            return require_healthy()
        except SuiteUnhealthyError as error:
            raise AirflowFailException(str(error)) from None

    check()


suite_health_check()
