"""
### Data Factory: transactions

Loads one business day of the core banking export (connection `core_banking`) into the warehouse (connection
`warehouse`), checked and enriched, and announces every new transaction as a `transaction.created` event.

**Which day.** Every day at 02:00 UTC, the day before (the end-of-day export lands at 01:00). Trigger with
`conf {"date": "YYYY-MM-DD"}` for another day (a malformed date is refused with 400); `max_bad_share` (default
0.10) is the quality gate's threshold, `chunk_size` the rows handled at a time (memory scales with it, not with
the day).

1. `check_source`: the source database opens, has the export's tables and columns, has exported the day
   (`export_batches`) and has its FX rates. A **missing source fails here**, saying what is missing and what to do.
2. `validate_and_load`: one streaming pass in chunks, in one warehouse transaction: every row is validated (schema,
   types, nulls, duplicate ids, amount and currency rules); bad rows go to `quarantine_transactions` with every
   reason; good rows are transformed with pandas (amounts in euros and in the account's currency, spending
   categories from the merchant's MCC, daily balances per account) and upserted by `transaction_id`. If more than
   `max_bad_share` of the rows are bad (or the export is incomplete) **the task fails with the share and the
   threshold and nothing is loaded** (the bad rows are still quarantined). Re-running a day changes no row.
3. `publish_events`: `transaction.created` for every *new* row, through the outbox (idempotency key: the
   transaction id), which starts `events_dispatch`. A re-run publishes nothing twice.

Every table read or written is an inlet or outlet (Airflow Assets), and each run's counts and check results are
in the data quality record (`demobank.data_factory.quality`).

**Monte Carlo.** After every run, success or failure, its outcome, timing, failed task and lineage (each task's
inlets and outlets as asset URIs, the task dependencies) go to Monte Carlo (connection `montecarlo_default`;
kept in the suite's database and re-sent by `data_factory_report_sweep` while Monte Carlo is unreachable). Each
task has a "View in Monte Carlo" link; the DAG's **Data Quality** tab shows the run history.
 Building blocks: `demobank.data_factory`.
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import CronTriggerTimetable, Param, dag, task

from demobank.connectors.montecarlo import add_monte_carlo_link
from demobank.data_factory.assets import transaction_assets
from demobank.data_factory.quality import on_task_failure
from demobank.data_factory.reporting import MonteCarloRunReporter
from demobank.events.outbox_asset import OUTBOX_ASSET

report_run = MonteCarloRunReporter()  # every finished run, success or failure, to Monte Carlo
ASSETS = transaction_assets()


@dag(
    dag_id="data_factory_transactions",
    schedule=CronTriggerTimetable("0 2 * * *", timezone="UTC", interval=timedelta(days=1)),
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    doc_md=__doc__,
    on_success_callback=report_run,
    on_failure_callback=report_run,
    tags=["data_factory"],
    params={
        "date": Param(None, type=["null", "string"], format="date", pattern=r"^\d{4}-\d{2}-\d{2}$",
                      title="Business day",
                      description="The day to load, YYYY-MM-DD (e.g. 2026-01-05); empty: the day before the run."),
        "max_bad_share": Param(0.10, type="number", minimum=0, maximum=1, title="Quality gate",
                               description="Fail without loading when more than this share of rows is bad."),
        "chunk_size": Param(50_000, type="integer", minimum=1_000, maximum=1_000_000, title="Chunk size",
                            description="Rows handled at a time (memory scales with it)."),
    },
    default_args={
        "owner": "data-engineering",
        "retries": 2,  # infrastructure hiccups; bad data and missing sources fail at once (AirflowFailException)
        "retry_delay": timedelta(seconds=30),
        "retry_exponential_backoff": True,
        "max_retry_delay": timedelta(minutes=10),
        "execution_timeout": timedelta(hours=2),
        "on_failure_callback": on_task_failure,
    },
)
def data_factory_transactions() -> None:
    @task(inlets=[ASSETS.source_export_batches, ASSETS.source_fx_rates], outlets=[ASSETS.quality])
    def check_source(params: dict | None = None, data_interval_end=None, dag_run=None, ti=None) -> dict:
        """Resolve the business day and check that its export is there."""
        from airflow.sdk.exceptions import AirflowFailException

        from demobank.data_factory.sources import CORE_BANKING_CONN_ID
        from demobank.data_factory.transactions import check_source_step
        from demobank.db.engine import connection_url
        from demobank.exceptions import ConfigurationError

        params = params or {}
        try:
            return check_source_step(
                dag_id=ti.dag_id, run_id=ti.run_id, conf_date=params.get("date"), fallback=data_interval_end,
                logical_date=dag_run.logical_date, max_bad_share=params.get("max_bad_share"),
                source_url=connection_url(CORE_BANKING_CONN_ID),
            )
        except ConfigurationError as error:  # a bad date, a missing connection or source: retrying cannot help
            raise AirflowFailException(str(error)) from None

    @task(
        inlets=[ASSETS.source_transactions, ASSETS.source_accounts, ASSETS.source_merchants, ASSETS.source_fx_rates,
                ASSETS.balances],
        outlets=[ASSETS.transactions, ASSETS.accounts, ASSETS.merchants, ASSETS.balances, ASSETS.quarantine,
                 ASSETS.loads, ASSETS.quality],
    )
    def validate_and_load(source: dict, params: dict | None = None, ti=None) -> dict:
        """Validate, quarantine, transform and load the day, all or nothing, behind the quality gate."""
        from airflow.sdk.exceptions import AirflowFailException

        from demobank.data_factory.sources import CORE_BANKING_CONN_ID, WAREHOUSE_CONN_ID
        from demobank.data_factory.transactions import DataQualityError, load_step
        from demobank.db.engine import connection_url

        try:
            return load_step(
                dag_id=ti.dag_id, run_id=ti.run_id, task_id=ti.task_id, day=source["day"],
                expected_rows=source["expected_rows"], max_bad_share=source["max_bad_share"],
                source_url=connection_url(CORE_BANKING_CONN_ID), warehouse_url=connection_url(WAREHOUSE_CONN_ID),
                chunk_size=int((params or {}).get("chunk_size") or 50_000),
            )
        except DataQualityError as error:  # the data, not the infrastructure: a retry would fail the same way
            raise AirflowFailException(str(error)) from None

    @task(inlets=[ASSETS.transactions, ASSETS.accounts, ASSETS.merchants, ASSETS.loads],
          outlets=[OUTBOX_ASSET, ASSETS.loads, ASSETS.quality])
    def publish_events(loaded: dict, ti=None) -> dict:
        """Publish transaction.created for the new rows (of this and any earlier unfinished load)."""
        from demobank.data_factory.sources import WAREHOUSE_CONN_ID
        from demobank.data_factory.transactions import publish_step
        from demobank.db.engine import connection_url

        return publish_step(dag_id=ti.dag_id, run_id=ti.run_id, task_id=ti.task_id,
                            warehouse_url=connection_url(WAREHOUSE_CONN_ID))

    source = check_source()
    loaded = validate_and_load(source)
    add_monte_carlo_link(source, loaded, publish_events(loaded))


data_factory_transactions()
