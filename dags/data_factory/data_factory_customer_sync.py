"""
### Data Factory: customer sync

Every hour, brings the customers changed since the last sync from the core banking customer API (connection
`core_banking_api`: host = the API's base URL, password = its token; in `make run` the sandbox's demo API) into
the warehouse (`warehouse.customers`), and announces the new ones as `customer.created` events.

1. `sync_customers`: `GET …/customers?updated_since=<watermark>&page=…`, page by page (429, 5xx and timeouts are
   retried with backoff), each record checked, each page upserted by `customer_id`; the watermark
   (`sync_watermarks`) moves only when every page is in, so a failed sync loses nothing. A customer new to the
   warehouse and created since the previous sync is queued for its event. The first sync is a backfill and
   announces nobody (trigger with `conf {"publish_backfill": true}` to announce everybody it brings).
2. `publish_customer_events`: the queued `customer.created` events through the outbox (idempotency key: the
   customer id), which starts `events_dispatch`.

Counts and checks of each run are in the data quality record.

**Monte Carlo.** After every run, success or failure, its outcome, timing, failed task and lineage (each task's
inlets and outlets as asset URIs, the task dependencies) go to Monte Carlo (connection `montecarlo_default`;
kept in the suite's database and re-sent by `data_factory_report_sweep` while Monte Carlo is unreachable). Each
task has a "View in Monte Carlo" link; the DAG's **Data Quality** tab shows the run history.
 Building blocks: `demobank.data_factory.customers`.
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import Param, dag, task

from demobank.connectors.montecarlo import add_monte_carlo_link
from demobank.data_factory.assets import customer_assets
from demobank.data_factory.quality import on_task_failure
from demobank.data_factory.reporting import MonteCarloRunReporter
from demobank.events.outbox_asset import OUTBOX_ASSET

report_run = MonteCarloRunReporter()  # every finished run, success or failure, to Monte Carlo
ASSETS = customer_assets()


@dag(
    dag_id="data_factory_customer_sync",
    schedule="@hourly",
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    doc_md=__doc__,
    on_success_callback=report_run,
    on_failure_callback=report_run,
    tags=["data_factory"],
    params={
        "publish_backfill": Param(False, type="boolean", title="Announce a backfill",
                                  description="On the first sync, publish customer.created for every customer."),
    },
    default_args={
        "owner": "data-engineering",
        "retries": 2,
        "retry_delay": timedelta(seconds=30),
        "retry_exponential_backoff": True,
        "max_retry_delay": timedelta(minutes=10),
        "execution_timeout": timedelta(minutes=30),
        "on_failure_callback": on_task_failure,
    },
)
def data_factory_customer_sync() -> None:
    @task(inlets=[ASSETS.api_customers, ASSETS.watermarks],
          outlets=[ASSETS.customers, ASSETS.queue, ASSETS.watermarks, ASSETS.quality])
    def sync_customers(params: dict | None = None, dag_run=None, ti=None) -> dict:
        """Fetch the changed customers and upsert them; queue the new ones' events."""
        from airflow.sdk.exceptions import AirflowFailException

        from demobank.data_factory.customers import CustomerDataError, sync_step
        from demobank.data_factory.sources import WAREHOUSE_CONN_ID
        from demobank.db.engine import connection_url
        from demobank.exceptions import ConfigurationError

        try:
            return sync_step(dag_id=ti.dag_id, run_id=ti.run_id, task_id=ti.task_id,
                             warehouse_url=connection_url(WAREHOUSE_CONN_ID),
                             publish_backfill=bool((params or {}).get("publish_backfill")),
                             logical_date=dag_run.logical_date)
        except (ConfigurationError, CustomerDataError) as error:  # fix the connection or the records first
            raise AirflowFailException(str(error)) from None

    @task(inlets=[ASSETS.customers, ASSETS.queue], outlets=[OUTBOX_ASSET, ASSETS.queue, ASSETS.quality])
    def publish_customer_events(synced: dict, ti=None) -> dict:
        """Publish customer.created for the queued customers."""
        from demobank.data_factory.customers import publish_step
        from demobank.data_factory.sources import WAREHOUSE_CONN_ID
        from demobank.db.engine import connection_url

        return publish_step(dag_id=ti.dag_id, run_id=ti.run_id, warehouse_url=connection_url(WAREHOUSE_CONN_ID))

    synced = sync_customers()
    add_monte_carlo_link(synced, publish_customer_events(synced))


data_factory_customer_sync()
