"""The Airflow Assets of the Data Factory's tables (inlets and outlets of the pipelines' tasks).

One Asset per table, named ``<database>.<table>`` (``core_banking.transactions``, ``warehouse.transactions``, …)
with the URI forms documented in :mod:`demobank.data_factory.sources`. Built from the environment only (no I/O),
so DAG files can call these functions when they are parsed.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from airflow.sdk import Asset

from demobank.data_factory.sources import (
    CORE_BANKING_CONN_ID,
    QUALITY_RECORD_URI,
    WAREHOUSE_CONN_ID,
    declared_base_uri,
    table_uri,
)

GROUP = "data-factory"

CORE_BANKING_API_URL_ENV = "DEMOBANK_CORE_BANKING_API_URL"
"""The REST source's base URL (the ``core_banking_api`` connection's host); ``make run`` sets it to the sandbox."""

DEFAULT_CORE_BANKING_API_URL = "http://127.0.0.1:8080/sandbox/core-banking"


def table_asset(database: str, table: str) -> Asset:
    """The Asset of ``table`` in ``core_banking`` or ``warehouse``."""
    return Asset(name=f"{database}.{table}", uri=table_uri(declared_base_uri(database), table), group=GROUP)


QUALITY_RECORD_ASSET = Asset(name="data_factory.quality_record", uri=QUALITY_RECORD_URI, group=GROUP)
"""The data quality record (suite database)."""


def core_banking_api_url(environ: dict[str, str] | None = None) -> str:
    """The REST source's base URL as declared for lineage (``DEMOBANK_CORE_BANKING_API_URL``)."""
    env = os.environ if environ is None else environ
    return (env.get(CORE_BANKING_API_URL_ENV, "").strip() or DEFAULT_CORE_BANKING_API_URL).rstrip("/")


@dataclass(frozen=True)
class TransactionAssets:
    """Inlets and outlets of ``data_factory_transactions``."""

    source_transactions: Asset
    source_export_batches: Asset
    source_accounts: Asset
    source_merchants: Asset
    source_fx_rates: Asset
    transactions: Asset
    balances: Asset
    quarantine: Asset
    loads: Asset
    accounts: Asset
    merchants: Asset
    quality: Asset


def transaction_assets() -> TransactionAssets:
    """The Assets of the transactions pipeline (from the environment)."""
    return TransactionAssets(
        source_transactions=table_asset(CORE_BANKING_CONN_ID, "transactions"),
        source_export_batches=table_asset(CORE_BANKING_CONN_ID, "export_batches"),
        source_accounts=table_asset(CORE_BANKING_CONN_ID, "accounts"),
        source_merchants=table_asset(CORE_BANKING_CONN_ID, "merchants"),
        source_fx_rates=table_asset(CORE_BANKING_CONN_ID, "fx_rates"),
        transactions=table_asset(WAREHOUSE_CONN_ID, "transactions"),
        balances=table_asset(WAREHOUSE_CONN_ID, "account_daily_balances"),
        quarantine=table_asset(WAREHOUSE_CONN_ID, "quarantine_transactions"),
        loads=table_asset(WAREHOUSE_CONN_ID, "loads"),
        accounts=table_asset(WAREHOUSE_CONN_ID, "accounts"),
        merchants=table_asset(WAREHOUSE_CONN_ID, "merchants"),
        quality=QUALITY_RECORD_ASSET,
    )


@dataclass(frozen=True)
class CustomerAssets:
    """Inlets and outlets of ``data_factory_customer_sync``."""

    api_customers: Asset
    customers: Asset
    queue: Asset
    watermarks: Asset
    quality: Asset


def customer_assets() -> CustomerAssets:
    """The Assets of the customer sync (from the environment)."""
    return CustomerAssets(
        api_customers=Asset(name="core_banking_api.customers", uri=f"{core_banking_api_url()}/customers",
                            group=GROUP),
        customers=table_asset(WAREHOUSE_CONN_ID, "customers"),
        queue=table_asset(WAREHOUSE_CONN_ID, "customer_event_queue"),
        watermarks=table_asset(WAREHOUSE_CONN_ID, "sync_watermarks"),
        quality=QUALITY_RECORD_ASSET,
    )
