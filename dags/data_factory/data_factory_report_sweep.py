"""
### Data Factory: Monte Carlo report sweep

Re-sends the run reports that Monte Carlo has not accepted yet. Every Data Factory DAG reports each finished run
(outcome, timing, failed tasks, lineage) from its success/failure callback: the report is written to the suite's
database (`run_reports`) first and sent once with a short timeout. When Monte Carlo was unreachable or answered
5xx, the report stays **pending**, and this sweep sends it, oldest first, every five minutes until Monte Carlo
accepts it.

The run **fails when Monte Carlo is still unavailable** (the message says why and how many reports wait), so an
outage shows in the run history; it stops at the first such failure instead of waiting for every report.
Reports Monte Carlo refused with a 4xx (bad credentials, bad payload) are marked **rejected** with the reason and
are not re-sent; after fixing the `montecarlo_default` connection, requeue them with
`demobank.data_factory.report_outbox.requeue_rejected`.
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import dag, task


@dag(
    dag_id="data_factory_report_sweep",
    schedule="*/5 * * * *",
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    doc_md=__doc__,
    tags=["data_factory", "monte_carlo"],
    default_args={
        "owner": "data-engineering",
        "retries": 2,  # a database hiccup; Monte Carlo being down fails the run without retries (below)
        "retry_delay": timedelta(seconds=20),
        "retry_exponential_backoff": True,
        "execution_timeout": timedelta(minutes=10),
    },
)
def data_factory_report_sweep() -> None:
    @task
    def resend_pending_reports() -> dict:
        """Send every pending run report; fail (no retry) naming the error if Monte Carlo is unavailable."""
        from airflow.sdk.exceptions import AirflowFailException

        from demobank.data_factory.report_outbox import MonteCarloUnavailableError
        from demobank.data_factory.reporting import sweep_pending_reports

        try:
            return sweep_pending_reports()
        except MonteCarloUnavailableError as error:
            # Retrying now would most likely meet the same outage: the next sweep tries again.
            raise AirflowFailException(str(error)) from None

    resend_pending_reports()


data_factory_report_sweep()
