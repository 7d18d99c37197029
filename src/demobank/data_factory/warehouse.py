"""The warehouse (connection ``warehouse``): its tables, and the bulk, idempotent writes the pipelines use.

Tables (created when missing by :func:`ensure_schema`; the pipelines call it, it is idempotent):

``transactions``
    The fact table: one row per transaction (natural key ``transaction_id``), the export's columns plus the
    spending category, the amount in euros (``fx_rate_eur``, ``amount_eur``) and in the account's currency
    (``amount_account``). ``first_load`` is the load that inserted the row (never changed afterwards), ``last_load``
    the last one that changed it (see ``loads``). Customer and merchant details are in the dimensions.
``accounts``, ``merchants``
    Dimensions, refreshed from the source by every load: the account's customer, currency and opening balance;
    the merchant's name, MCC, city, country and spending category.
``loads``
    One row per committed load: run, business day, time, new and changed rows, and how far the
    ``transaction.created`` events of its new rows have been published (a cursor over ``source_row_id``), so that
    no load's events are skipped even if its run's publishing failed, and none is published twice.
``account_daily_balances``
    Per account and business day with booked activity: opening balance, debits, credits, closing balance and the
    number of booked transactions, in the account's currency.
``quarantine_transactions``
    Source rows that failed validation, with every reason and the raw row as JSON (natural key: the source's
    ``row_id``). Quarantined rows stay here as a record; the loaded tables are the truth.
``customers``, ``customer_event_queue``, ``sync_watermarks``
    The customer sync: customers (natural key ``customer_id``), the new customers whose ``customer.created``
    event is still to be published, and the high-water mark of each incremental source.

Indexes of ``transactions``: its primary key, and the day index (business date, source row id): a BRIN index on
PostgreSQL (see :data:`TRANSACTIONS_DAY_INDEX`), a B-tree on SQLite.

Writes go through a temporary table (``COPY`` on PostgreSQL, ``executemany`` on SQLite) and one
``INSERT … SELECT … ON CONFLICT (key) DO UPDATE … WHERE <content differs>``: a row whose content is unchanged is
not touched (on PostgreSQL not even a new row version), so loading the same data again changes nothing. One
shortcut: the first load of a business day into PostgreSQL, when ``transactions`` holds no row of that day yet,
``COPY``s its rows (in the binary format) straight into ``transactions`` (every row is new, so inserting is
upserting); a chunk with a key that exists under another day is rolled back to its savepoint and upserted instead.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Connection,
    Date,
    DateTime,
    Engine,
    Index,
    Integer,
    MetaData,
    Numeric,
    String,
    Table,
    Text,
    inspect,
    text,
)
from sqlalchemy.exc import DBAPIError

log = logging.getLogger(__name__)

metadata = MetaData()

FACT_COLUMNS: tuple[str, ...] = (
    "source_row_id", "business_date", "transaction_id", "account_id", "amount", "currency", "direction", "status",
    "channel", "merchant_id", "counterparty_name", "counterparty_iban", "description", "booked_at", "value_date",
    "category", "fx_rate_eur", "amount_eur", "amount_account",
)  # fmt: skip
"""The columns of ``transactions`` a load writes, in order (the load keys ``first_load``/``last_load`` follow).
The first fifteen are the source export's columns in the export's order (``row_id`` as ``source_row_id``)."""

transactions = Table(
    "transactions",
    metadata,
    Column("source_row_id", BigInteger, nullable=False),
    Column("business_date", Date, nullable=False),
    Column("transaction_id", String(40), primary_key=True),
    Column("account_id", String(32), nullable=False),
    Column("amount", Numeric(20, 4), nullable=False),
    Column("currency", String(3), nullable=False),
    Column("direction", String(8), nullable=False),
    Column("status", String(8), nullable=False),
    Column("channel", String(32), nullable=False),
    Column("merchant_id", String(32)),
    Column("counterparty_name", String(140)),
    Column("counterparty_iban", String(40)),
    Column("description", String(140)),
    Column("booked_at", DateTime(timezone=True), nullable=False),
    Column("value_date", Date),
    Column("category", String(32), nullable=False),
    Column("fx_rate_eur", Numeric(18, 8), nullable=False),
    Column("amount_eur", Numeric(20, 2), nullable=False),
    Column("amount_account", Numeric(20, 4), nullable=False),
    Column("first_load", Integer, nullable=False),
    Column("last_load", Integer, nullable=False),
    # PostgreSQL: a BRIN index (a summary per range of pages, next to nothing to keep up on a load: loads append a
    # day's rows in source_row_id order); SQLite: a B-tree. See TRANSACTIONS_DAY_INDEX.
    Index("ix_transactions_business_date_source_row_id", "business_date", "source_row_id", postgresql_using="brin"),
)
TRANSACTIONS_DAY_INDEX = "ix_transactions_business_date_source_row_id"
"""The index that finds a business day's rows (loads, publishing). On PostgreSQL it is a BRIN index: a B-tree cost
every load about a fifth of its database time to keep up, for the few queries by day; warehouses made before are
migrated by :func:`ensure_schema`."""

accounts = Table(
    "accounts",
    metadata,
    Column("account_id", String(32), primary_key=True),
    Column("customer_id", String(32), nullable=False),
    Column("currency", String(3), nullable=False),
    Column("account_type", String(16)),
    Column("opened_on", Date),
    Column("opening_balance", Numeric(20, 4)),
    Column("last_load", Integer, nullable=False),
)

merchants = Table(
    "merchants",
    metadata,
    Column("merchant_id", String(32), primary_key=True),
    Column("name", String(100), nullable=False),
    Column("mcc", String(4)),
    Column("city", String(100)),
    Column("country", String(2)),
    Column("category", String(32), nullable=False),
    Column("last_load", Integer, nullable=False),
)

loads = Table(
    "loads",
    metadata,
    Column("load_key", Integer, primary_key=True, autoincrement=True),
    Column("load_id", String(250), nullable=False, unique=True),
    Column("run_id", String(250), nullable=False),
    Column("business_date", Date, nullable=False),
    Column("loaded_at", DateTime(timezone=True), nullable=False),
    Column("new_rows", Integer, nullable=False, default=0),
    Column("changed_rows", Integer, nullable=False, default=0),
    Column("published_rows", Integer, nullable=False, default=0),
    Column("publish_cursor", BigInteger, nullable=False, default=-1),
    Column("published_at", DateTime(timezone=True)),
)

account_daily_balances = Table(
    "account_daily_balances",
    metadata,
    Column("account_id", String(32), primary_key=True),
    Column("business_date", Date, primary_key=True),
    Column("currency", String(3), nullable=False),
    Column("opening_balance", Numeric(20, 4), nullable=False),
    Column("debits", Numeric(20, 4), nullable=False),
    Column("credits", Numeric(20, 4), nullable=False),
    Column("closing_balance", Numeric(20, 4), nullable=False),
    Column("booked_count", Integer, nullable=False),
    Column("last_load", Integer, nullable=False),
)

quarantine_transactions = Table(
    "quarantine_transactions",
    metadata,
    Column("source_row_id", BigInteger, primary_key=True),
    Column("business_date", Date, nullable=False),
    Column("transaction_id", String(200)),
    Column("reasons", Text, nullable=False),
    Column("raw_row", Text, nullable=False),
    Column("quarantined_at", DateTime(timezone=True), nullable=False),
    Column("quarantined_by_run", String(250), nullable=False),
    Index("ix_quarantine_transactions_business_date", "business_date"),
)

customers = Table(
    "customers",
    metadata,
    Column("customer_id", String(32), primary_key=True),
    Column("full_name", String(200), nullable=False),
    Column("email", String(320)),
    Column("customer_type", String(16), nullable=False),
    Column("segment", String(32), nullable=False),
    Column("country_of_residence", String(2), nullable=False),
    Column("preferred_language", String(16)),
    Column("onboarding_channel", String(32), nullable=False),
    Column("kyc_status", String(16), nullable=False),
    Column("marketing_consent", Boolean),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("synced_at", DateTime(timezone=True), nullable=False),
    Column("synced_by_run", String(250), nullable=False),
)

customer_event_queue = Table(
    "customer_event_queue",
    metadata,
    Column("customer_id", String(32), primary_key=True),
    Column("queued_at", DateTime(timezone=True), nullable=False),
    Column("queued_by_run", String(250), nullable=False),
)

sync_watermarks = Table(
    "sync_watermarks",
    metadata,
    Column("source", String(200), primary_key=True),
    Column("watermark", String(40), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("updated_by_run", String(250), nullable=False),
)

WAREHOUSE_TABLES: tuple[str, ...] = tuple(metadata.tables)


def ensure_schema(engine: Engine) -> None:
    """Create the warehouse tables that are missing and migrate older ones (idempotent; safe when two processes
    race).

    Migration: on PostgreSQL, a ``transactions`` day index made as a B-tree (before it became a BRIN index) is
    dropped and made again as a BRIN index (in one transaction; the table is locked meanwhile).
    """
    existing = set(inspect(engine).get_table_names())
    if not set(WAREHOUSE_TABLES) <= existing:
        for attempt in range(3):
            try:
                metadata.create_all(engine, checkfirst=True)
                break
            except DBAPIError:  # another process created a table between the check and the CREATE
                if attempt == 2:
                    raise
    if engine.dialect.name == "postgresql":
        _migrate_day_index(engine)


def _migrate_day_index(engine: Engine) -> None:
    """Make the ``transactions`` day index a BRIN index if it is still a B-tree (PostgreSQL)."""
    find = text("SELECT indexdef FROM pg_indexes WHERE schemaname = current_schema() AND tablename = 'transactions' "
                "AND indexname = :name")
    with engine.connect() as connection:
        definition = connection.execute(find, {"name": TRANSACTIONS_DAY_INDEX}).scalar()
    if definition is not None and " USING brin " in definition:
        return
    with engine.begin() as connection:
        connection.exec_driver_sql("LOCK TABLE transactions IN SHARE ROW EXCLUSIVE MODE")  # one migrator at a time
        definition = connection.execute(find, {"name": TRANSACTIONS_DAY_INDEX}).scalar()
        if definition is not None and " USING brin " in definition:
            return
        log.info("warehouse: making the transactions day index %s a BRIN index", TRANSACTIONS_DAY_INDEX)
        connection.exec_driver_sql(f"DROP INDEX IF EXISTS {TRANSACTIONS_DAY_INDEX}")
        connection.exec_driver_sql(f"CREATE INDEX {TRANSACTIONS_DAY_INDEX} ON transactions USING brin "
                                   "(business_date, source_row_id)")


# -- bulk writes -----------------------------------------------------------------------------------------------


def _escape_text(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")


def copy_text(columns: Sequence[Sequence[Any]], *, may_need_escaping: Sequence[bool] | None = None,
              may_be_null: Sequence[bool] | None = None) -> io.StringIO:
    """Columns of text values as the text format of PostgreSQL's ``COPY`` (tab separated, ``\\N`` for NULL).

    ``None`` and NaN are NULL. Values containing a backslash, tab, newline or carriage return are escaped, so any
    text survives; a column is scanned for them in one pass (skip the scan for columns known to be safe, such as
    validated ids, codes and numbers, with ``may_need_escaping``; likewise ``may_be_null`` for columns that are
    never NULL).
    """
    prepared = []
    for position, values in enumerate(columns):
        array = np.asarray(values, dtype=object)
        if may_be_null is None or may_be_null[position]:
            nulls = pd.isna(array)
            has_nulls = bool(nulls.any())
        else:
            nulls, has_nulls = np.zeros(len(array), dtype=bool), False
        if may_need_escaping is None or may_need_escaping[position]:
            present = array[~nulls] if has_nulls else array
            joined = "\x00".join(present.tolist()) if present.size else ""
            if any(char in joined for char in "\\\t\n\r"):
                array = np.array([value if null else _escape_text(value) for value, null in zip(array, nulls,
                                                                                                 strict=True)],
                                 dtype=object)
        if has_nulls:
            array = np.where(nulls, "\\N", array)
        prepared.append(array.tolist())
    buffer = io.StringIO()
    buffer.writelines(["\t".join(row) + "\n" for row in zip(*prepared, strict=True)])
    buffer.seek(0)
    return buffer


def db_values(values: Sequence[Any]) -> list[Any]:
    """A column as a list for the DB-API (``None`` for NaN)."""
    array = np.asarray(values, dtype=object)
    nulls = pd.isna(array)
    return np.where(nulls, None, array).tolist() if nulls.any() else array.tolist()


def create_temp_like(connection: Connection, table: Table, temp_name: str, columns: Sequence[str],
                     extra: dict[str, str] | None = None) -> None:
    """(Re)create an empty temporary table (this connection only) with ``columns`` of ``table`` and ``extra``
    columns (name: SQL type)."""
    dialect = connection.dialect
    schema = "temp" if dialect.name == "sqlite" else "pg_temp"
    connection.exec_driver_sql(f"DROP TABLE IF EXISTS {schema}.{temp_name}")
    definitions = [f"{name} {table.c[name].type.compile(dialect=dialect)}" for name in columns]
    definitions += [f"{name} {sql_type}" for name, sql_type in (extra or {}).items()]
    connection.exec_driver_sql(f"CREATE TEMPORARY TABLE {temp_name} ({', '.join(definitions)})")


def bulk_insert(connection: Connection, table_name: str, columns: Sequence[str],
                values: Sequence[Sequence[Any]], *, may_need_escaping: Sequence[bool] | None = None,
                may_be_null: Sequence[bool] | None = None) -> None:
    """Insert column-wise ``values`` into ``table_name``: ``COPY`` on PostgreSQL, ``executemany`` on SQLite.

    :param values: one sequence per column: text (or ``None``/NaN) for PostgreSQL's ``COPY``; any DB-API value
        (or NaN for NULL) for SQLite.
    :param may_need_escaping: see :func:`copy_text` (PostgreSQL only).
    :param may_be_null: see :func:`copy_text` (PostgreSQL only).
    """
    if not values or not len(values[0]):
        return
    raw = connection.connection.driver_connection
    if connection.dialect.name == "postgresql":
        buffer = copy_text(values, may_need_escaping=may_need_escaping, may_be_null=may_be_null)
        with raw.cursor() as cursor:
            cursor.copy_expert(f"COPY {table_name} ({', '.join(columns)}) FROM STDIN", buffer, size=1 << 20)
        return
    cursor = raw.cursor()
    try:
        cursor.executemany(
            f"INSERT INTO {table_name} ({', '.join(columns)}) VALUES ({', '.join('?' for _ in columns)})",  # noqa: S608
            zip(*(db_values(column) for column in values), strict=True),
        )
    finally:
        cursor.close()


def upsert_from(
    connection: Connection,
    table: Table,
    source: str,
    columns: Sequence[str],
    *,
    compare: Iterable[str],
    keep: Iterable[str] = (),
    extra_values: dict[str, Any] | None = None,
) -> int:
    """``INSERT INTO table SELECT … FROM source ON CONFLICT (primary key) DO UPDATE … WHERE <content differs>``.

    :param source: the (temporary) table holding the rows, with ``columns``.
    :param compare: the columns whose difference makes a row "changed" (the others do not count).
    :param keep: columns never overwritten on conflict (e.g. ``first_load``).
    :param extra_values: constants for further columns (bound parameters), e.g. ``loaded_at``.
    :return: the number of rows inserted or changed.
    """
    extra_values = extra_values or {}
    keys = [column.name for column in table.primary_key.columns]
    names = [*columns, *extra_values]
    placeholders = _placeholders(connection, len(extra_values))
    select_list = ", ".join([*columns, *placeholders])
    keep = set(keep) | set(keys)
    updates = ", ".join(f"{name} = excluded.{name}" for name in names if name not in keep)
    compared = list(compare)
    if connection.dialect.name == "postgresql":
        differs = f"({', '.join(f'{table.name}.{c}' for c in compared)}) IS DISTINCT FROM " \
                  f"({', '.join(f'excluded.{c}' for c in compared)})"
        where = ""
    else:
        differs = f"({', '.join(f'{table.name}.{c}' for c in compared)}) IS NOT " \
                  f"({', '.join(f'excluded.{c}' for c in compared)})"
        where = " WHERE true"  # SQLite needs it to parse ON CONFLICT after INSERT … SELECT
    sql = (  # identifiers from our table definitions; values are bound parameters
        f"INSERT INTO {table.name} ({', '.join(names)}) SELECT {select_list} FROM {source}{where} "  # noqa: S608
        f"ON CONFLICT ({', '.join(keys)}) DO UPDATE SET {updates} WHERE {differs}"
    )
    result = connection.exec_driver_sql(sql, tuple(extra_values.values()))
    return max(result.rowcount, 0)


def _placeholders(connection: Connection, count: int) -> list[str]:
    mark = "?" if connection.dialect.name == "sqlite" else "%s"
    return [mark] * count


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m demobank.data_factory.warehouse init [--url URL | --conn-id warehouse] [--create-database]``:
    create the warehouse's tables (and, with ``--create-database``, its PostgreSQL database); idempotent."""
    import argparse

    from demobank.db.engine import get_engine, safe_url
    from demobank.db.migrate import ensure_database

    parser = argparse.ArgumentParser(prog="python -m demobank.data_factory.warehouse",
                                     description="Create the Data Factory warehouse's tables (idempotent).")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    init = commands.add_parser("init", help="create the database (optional) and the missing tables")
    init.add_argument("--url", help="SQLAlchemy URL of the warehouse (default: the Airflow connection)")
    init.add_argument("--conn-id", default="warehouse", help="Airflow connection id (default: %(default)s)")
    init.add_argument("--create-database", action="store_true", help="create the PostgreSQL database if missing")
    args = parser.parse_args(argv)
    if args.url:
        url = args.url
    else:
        from demobank.db.engine import connection_url

        url = connection_url(args.conn_id)
    if args.create_database and ensure_database(url):
        print(f"created database {safe_url(url)}")
    ensure_schema(get_engine(url))
    print(f"{safe_url(url)}: warehouse tables in place ({', '.join(WAREHOUSE_TABLES)})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
