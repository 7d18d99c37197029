"""The steps of the ``data_factory_transactions`` DAG, Airflow-free (tested without Airflow).

1. :func:`check_source_step` -- which business day (the run's ``conf`` ``{"date": "YYYY-MM-DD"}``, else the day
   before the run's time), and whether its source is there: the ``core_banking`` database can be opened, has the
   export's tables and columns, has exported that day (``export_batches``) and has its FX rates. A missing source
   fails with :class:`~demobank.data_factory.sources.SourceUnavailableError` saying what is missing and what to do.
2. :func:`load_step` -- one streaming pass over the day's export, in chunks of ``chunk_size`` rows (memory stays
   bounded whatever the day's size): extract, validate (:mod:`~demobank.data_factory.validate`), put bad rows aside
   with their reasons, transform the good ones (:mod:`~demobank.data_factory.transform`) and upsert them into the
   warehouse, all in **one warehouse transaction**. At the end the quality gate decides: if the share of bad rows
   is above ``max_bad_share``, or fewer rows were read than the export announced, the transaction is rolled back
   (nothing of the day is loaded) and :class:`DataQualityError` says why (share and threshold); otherwise the
   day's balances are written and it commits. Either way the bad rows are written to ``quarantine_transactions``.
3. :func:`publish_step` -- ``transaction.created`` for every new row (inserted by a load, not updated), through the
   outbox, 500 events per transaction, with the transaction id as idempotency key.

**Idempotency.** The warehouse upsert changes a row only when its content differs, so re-running a day changes
nothing. New rows carry the key of the load that inserted them (``first_load``); ``loads`` keeps, per load, a
cursor of what was published. Publishing resumes any unfinished load (also one of an earlier run), and
the outbox's idempotency keys make the window between the outbox's commit and the cursor's a no-op when retried.

**Speed** (PostgreSQL; see ``bench/data_factory.py`` and ``BENCHMARKS.md``). A PostgreSQL source is read with
``COPY … TO STDOUT`` by a helper process (:mod:`~demobank.data_factory.pgcopy`) in large blocks, parsed by Arrow's CSV
reader into Arrow-backed pandas columns; checks and transformations are Arrow and numpy kernels over whole columns, so
no value becomes a Python object. The rows go to a PostgreSQL warehouse in ``COPY``'s binary format (the server
parses no text). The database work of a chunk runs in a second thread while the next chunk is checked: the first load
of a day ``COPY``s straight into ``transactions`` (every key is new); later loads ``COPY`` into a temporary table and
upsert from it.
"""

from __future__ import annotations

import contextlib
import logging
import re
import tempfile
import time
from collections.abc import Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any, TextIO

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
from sqlalchemy import Connection, Engine, inspect, select, text
from sqlalchemy.exc import DBAPIError, OperationalError

from demobank.data_factory import warehouse as wh
from demobank.data_factory.core_banking import SOURCE_TABLES, TRANSACTION_COLUMNS
from demobank.data_factory.pgcopy import POSTGRES_EPOCH_DAYS, BinaryColumn, BinaryCopyReader, binary_rows
from demobank.data_factory.quality import CheckResult, QualityRecorder, TableCounts
from demobank.data_factory.sources import (
    CORE_BANKING_CONN_ID,
    WAREHOUSE_CONN_ID,
    SourceUnavailableError,
    check_declared_uri,
    source_read_engine,
    table_uri,
)
from demobank.data_factory.transform import (
    Movements,
    Transformed,
    daily_balances,
    merchant_categories,
    transform_chunk,
)
from demobank.data_factory.validate import (
    CHECKS,
    MERCHANT_CHANNELS,
    DuplicateTracker,
    ReferenceData,
    as_bool,
    to_arrow,
    validate_chunk,
)
from demobank.data_factory.warehouse import FACT_COLUMNS
from demobank.db.engine import safe_url
from demobank.db.models import QualityCheckStatus, QualityRunStatus
from demobank.exceptions import DemoBankError

log = logging.getLogger(__name__)

DAG_ID = "data_factory_transactions"
DEFAULT_CHUNK_SIZE = 50_000
DEFAULT_MAX_BAD_SHARE = 0.10
PUBLISH_BATCH = 500
EARLIEST_DAY = date(2000, 1, 1)



class InvalidRunConfError(DemoBankError, ValueError):
    """The run's ``conf`` is malformed (the message names the value and the expected form)."""


class SourceUnreachableError(DemoBankError):
    """The source's database server did not answer (may be transient: the task is retried)."""


class DataQualityError(DemoBankError):
    """The day failed the quality gate: too many bad rows, or an incomplete export. Nothing was loaded."""

    def __init__(self, message: str, *, bad_share: float, max_bad_share: float, report: LoadReport | None = None
                 ) -> None:
        super().__init__(message)
        self.bad_share = bad_share
        self.max_bad_share = max_bad_share
        self.report = report


# -- step 1: which day, and is its source there -------------------------------------------------------------------


def resolve_day(conf_date: Any, fallback: datetime | None, *, today: date | None = None) -> date:
    """The business day of a run: ``conf_date`` (``YYYY-MM-DD``) if given, else the day before ``fallback``.

    :param conf_date: the ``date`` of the run's ``conf`` (``None`` or empty when not given).
    :param fallback: the run's time (e.g. the end of its data interval): the day before it is processed, since a
        day's export is complete after midnight.
    :raises InvalidRunConfError: for a value that is not a date, or a day in the future.
    """
    today = today or datetime.now(UTC).date()
    if conf_date is None or conf_date == "":
        if fallback is None:
            raise InvalidRunConfError('no business day: trigger the run with conf {"date": "YYYY-MM-DD"}')
        return (fallback.astimezone(UTC) - timedelta(days=1)).date()
    if not isinstance(conf_date, str):
        raise InvalidRunConfError(
            f'conf "date" must be a text YYYY-MM-DD, got {type(conf_date).__name__} {conf_date!r}: '
            'trigger with conf {"date": "2026-01-05"}'
        )
    try:
        if len(conf_date) != 10:
            raise ValueError(conf_date)
        day = date.fromisoformat(conf_date)
    except ValueError:
        raise InvalidRunConfError(
            f'conf "date" is {conf_date!r}, which is not a date YYYY-MM-DD: trigger with conf '
            '{"date": "2026-01-05"}'
        ) from None
    if day > today:
        raise InvalidRunConfError(f'conf "date" {conf_date} is in the future (today is {today}): its export cannot '
                                  "exist yet; give a past business day")
    if day < EARLIEST_DAY:
        raise InvalidRunConfError(f'conf "date" {conf_date} is before {EARLIEST_DAY}: give a recent business day')
    return day


def resolve_max_bad_share(value: Any) -> float:
    """The quality gate's threshold: a share from 0 to 1 (``0.1`` = 10%).

    :raises InvalidRunConfError: for anything else.
    """
    if value is None:
        return DEFAULT_MAX_BAD_SHARE
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
        raise InvalidRunConfError(
            f'conf "max_bad_share" must be a number from 0 to 1 (0.1 allows 10% bad rows), got {value!r}'
        )
    return float(value)


@dataclass(frozen=True)
class SourceStatus:
    """What :func:`check_source` found for a day."""

    day: date
    expected_rows: int
    exported_at: str
    currencies: tuple[str, ...]


def _open_failure(url: str, error: Exception) -> SourceUnavailableError:
    return SourceUnavailableError(
        f"cannot open the core banking source {safe_url(url)}: {error}. Check the Airflow connection "
        f"{CORE_BANKING_CONN_ID!r} (for SQLite, host = the export database's file; make run creates "
        ".airflow/core_banking.db) and that the database is reachable."
    )


def check_source(url: str, day: date) -> SourceStatus:
    """Check that the day's export is there (see the module docstring).

    :raises SourceUnavailableError: the database cannot be opened (SQLite), lacks the export's tables or columns,
        has no export for ``day`` or no FX rates for it.
    :raises SourceUnreachableError: a PostgreSQL server cannot be reached (a retry may succeed).
    """
    engine = source_read_engine(url)
    try:
        try:
            inspector = inspect(engine)
            tables = set(inspector.get_table_names())
        except OperationalError as error:
            if engine.dialect.name == "sqlite":
                raise _open_failure(url, error.orig or error) from None
            raise SourceUnreachableError(
                f"cannot reach the core banking source {safe_url(url)}: {str(error.orig or error).strip()}. The task "
                f"is retried; if it keeps failing, check the server and the connection {CORE_BANKING_CONN_ID!r}."
            ) from error
        missing = [name for name in SOURCE_TABLES if name not in tables]
        if missing:
            raise SourceUnavailableError(
                f"the core banking source {safe_url(url)} has no table {', '.join(missing)}: it is not the core "
                "banking export's database, or the export was never loaded into it. Point the connection "
                f"{CORE_BANKING_CONN_ID!r} at the export (make run seeds it with python -m "
                "demobank.data_factory.core_banking seed)."
            )
        columns = {column["name"] for column in inspector.get_columns("transactions")}
        missing = [name for name in TRANSACTION_COLUMNS if name not in columns]
        if missing:
            raise SourceUnavailableError(
                f"the core banking source's table transactions has no column {', '.join(missing)} (it has "
                f"{', '.join(sorted(columns))}): the export's format changed; update the pipeline before loading."
            )
        with engine.connect() as connection:
            batch = connection.execute(
                text("SELECT row_count, exported_at FROM export_batches WHERE business_date = :day"),
                {"day": day.isoformat()},
            ).first()
            if batch is None:
                first, last, count = connection.execute(
                    text("SELECT min(business_date), max(business_date), count(*) FROM export_batches")).one()
                known = f"it has {count} exported day(s), {first} to {last}" if count else "it has none"
                raise SourceUnavailableError(
                    f"the core banking source has no export for business day {day} (table export_batches; {known}): "
                    "the end-of-day export for that day has not run or has not finished. Re-run this day once it "
                    'has, or trigger the DAG with conf {"date": "YYYY-MM-DD"} for an exported day.'
                )
            currencies = tuple(row[0] for row in connection.execute(
                text("SELECT currency FROM fx_rates WHERE rate_date = :day ORDER BY currency"),
                {"day": day.isoformat()}))
            if not currencies:
                raise SourceUnavailableError(
                    f"the core banking source has no FX rates for {day} (table fx_rates): amounts cannot be "
                    "converted to euros. Re-run once the day's rates are exported."
                )
        return SourceStatus(day, int(batch[0]), str(batch[1]), currencies)
    finally:
        engine.dispose()


def check_source_step(*, dag_id: str, run_id: str, conf_date: Any, fallback: datetime | None,
                      logical_date: datetime | None, max_bad_share: Any, source_url: str,
                      suite_engine: Engine | None = None) -> dict[str, Any]:
    """Step 1 of the DAG: resolve the day, open the quality record, check the source.

    :return: ``{"day", "expected_rows", "exported_at", "max_bad_share"}`` for the next steps.
    """
    recorder = QualityRecorder(suite_engine, dag_id, run_id)
    share = resolve_max_bad_share(max_bad_share)
    try:
        day = resolve_day(conf_date, fallback)
    except InvalidRunConfError:
        recorder.start(None, logical_date, max_bad_share=share)
        raise
    recorder.start(day, logical_date, max_bad_share=share)
    check_declared_uri(CORE_BANKING_CONN_ID, source_url)
    try:
        status = check_source(source_url, day)
    except (SourceUnavailableError, SourceUnreachableError) as error:
        recorder.checks("check_source", [CheckResult("source_available", "source", QualityCheckStatus.FAILED.value,
                                                     message=str(error), table="core_banking.export_batches")])
        raise
    recorder.checks("check_source", [CheckResult(
        "source_available", "source", QualityCheckStatus.PASSED.value, checked_rows=status.expected_rows,
        message=f"export of {day} found: {status.expected_rows} rows, exported at {status.exported_at}; FX rates "
                f"for {', '.join(status.currencies)}",
        table="core_banking.export_batches")])
    log.info("business day %s: %d rows exported at %s", day, status.expected_rows, status.exported_at)
    return {"day": day.isoformat(), "expected_rows": status.expected_rows, "exported_at": status.exported_at,
            "max_bad_share": share}


# -- step 2: extract, validate, quarantine, transform, load ---------------------------------------------------------


def load_reference(engine: Engine, day: date) -> ReferenceData:
    """The day's FX rates and the source's accounts and merchants (sized by the bank, not by the day); merchants
    get their spending category here, once per merchant."""
    with engine.connect() as connection:
        rates = {row[0]: float(row[1]) for row in connection.execute(
            text("SELECT currency, eur_per_unit FROM fx_rates WHERE rate_date = :day"), {"day": day.isoformat()})}
        accounts = pd.DataFrame(
            connection.execute(text(
                "SELECT account_id, customer_id, currency, account_type, opened_on, opening_balance FROM accounts"
            )).all(),
            columns=["account_id", "customer_id", "currency", "account_type", "opened_on", "opening_balance"],
            dtype=object,
        ).set_index("account_id")
        merchants = pd.DataFrame(
            connection.execute(text("SELECT merchant_id, name, mcc, city, country FROM merchants")).all(),
            columns=["merchant_id", "name", "mcc", "city", "country"], dtype=object,
        ).set_index("merchant_id")
    merchants["category"] = merchant_categories(merchants)
    return ReferenceData(day=day, fx_rates=rates, accounts=accounts, merchants=merchants)


_SELECT_DAY = (f"SELECT {', '.join(TRANSACTION_COLUMNS)} FROM transactions "  # noqa: S608 - fixed column names
               "WHERE business_date = :day ORDER BY row_id")


def extract_chunks(engine: Engine, day: date, chunk_size: int) -> Iterator[pd.DataFrame]:
    """The day's export rows in ``row_id`` order, ``chunk_size`` at a time.

    PostgreSQL: ``COPY (SELECT …) TO STDOUT`` (text format: one line per row, whatever the data), parsed by Arrow's
    CSV reader (C++, one thread: more would only compete with the writer and the source on a small machine) into
    Arrow-backed ``str`` columns (no Python object per value). Values keep ``COPY``'s escapes (``\\t``, ``\\n``,
    ``\\\\``): they only occur in free text. SQLite: a cursor read with ``fetchmany`` (object columns).
    """
    if engine.dialect.name == "postgresql":
        yield from _extract_postgres(engine, day, chunk_size)
        return
    with engine.connect() as connection:
        result = connection.execution_options(stream_results=True).execute(text(_SELECT_DAY),
                                                                           {"day": day.isoformat()})
        while rows := result.fetchmany(chunk_size):
            frame = pd.DataFrame.from_records(rows, columns=list(TRANSACTION_COLUMNS)).astype(object)
            frame["row_id"] = frame["row_id"].astype(str).astype(object)
            yield frame


_TAB_SEPARATED = pacsv.ParseOptions(delimiter="\t", quote_char=False, escape_char=False, newlines_in_values=False)
_AS_TEXT = pacsv.ConvertOptions(column_types=dict.fromkeys(TRANSACTION_COLUMNS, pa.large_string()),
                                null_values=["\\N"], strings_can_be_null=True, quoted_strings_can_be_null=False)


def _parse_copy_text(data: bytes) -> pd.DataFrame:
    """Parse whole lines of ``COPY`` text (Arrow's CSV reader: tab separated, no quoting, ``\\N`` for NULL)."""
    table = pacsv.read_csv(
        pa.BufferReader(pa.py_buffer(data)), parse_options=_TAB_SEPARATED, convert_options=_AS_TEXT,
        read_options=pacsv.ReadOptions(column_names=list(TRANSACTION_COLUMNS), block_size=1 << 22, use_threads=False))
    return table.to_pandas()


class _PendingLines:
    """The ``COPY`` text read and not handed out yet: blocks (views, never copied until a chunk is cut), the number
    of line ends in each, and, once a chunk was cut inside a block, where that block's line ends are."""

    def __init__(self) -> None:
        self.blocks: list[memoryview] = []
        self.counts: list[int] = []
        self.ends: list[np.ndarray | None] = []
        self.lines = 0

    def add(self, block: bytes) -> None:
        self.blocks.append(memoryview(block))
        self.counts.append(block.count(b"\n"))
        self.ends.append(None)
        self.lines += self.counts[-1]

    def take(self, wanted: int) -> bytes:
        """The next ``wanted`` whole lines (there must be as many)."""
        self.lines -= wanted
        parts = []
        while wanted:
            block, count = self.blocks[0], self.counts[0]
            if count < wanted or (count == wanted and block[-1] == 0x0A):  # the whole block
                parts.append(block)
                wanted -= count
                del self.blocks[0], self.counts[0], self.ends[0]
                continue
            ends = self.ends[0]
            if ends is None:
                ends = np.flatnonzero(np.frombuffer(block, dtype=np.uint8) == 0x0A)
            cut = int(ends[wanted - 1]) + 1
            parts.append(block[:cut])
            self.blocks[0], self.counts[0], self.ends[0] = block[cut:], count - wanted, ends[wanted:] - cut
            wanted = 0
        return b"".join(parts)

    def rest(self) -> bytes:
        data = b"".join(self.blocks)
        self.blocks, self.counts, self.ends, self.lines = [], [], [], 0
        return data


def _extract_postgres(engine: Engine, day: date, chunk_size: int) -> Iterator[pd.DataFrame]:
    """``COPY … TO STDOUT`` run by a helper process (:mod:`demobank.data_factory.pgcopy`), read in large blocks and
    cut into chunks of ``chunk_size`` lines (one per row: ``COPY``'s text format escapes line ends in values)."""
    from psycopg2.extensions import QuotedString

    from demobank.data_factory.pgcopy import copy_out, dsn_from_url

    day_literal = QuotedString(day.isoformat()).getquoted().decode()
    query = f"COPY ({_SELECT_DAY.replace(':day', day_literal)}) TO STDOUT"
    with copy_out(dsn_from_url(engine.url), query) as stream:
        pending = _PendingLines()
        while block := stream.read():
            pending.add(block)
            while pending.lines >= chunk_size:
                yield _parse_copy_text(pending.take(chunk_size))
        data = pending.rest()
        if data.strip():
            yield _parse_copy_text(data if data.endswith(b"\n") else data + b"\n")


@dataclass
class LoadReport:
    """What :func:`load_day` did."""

    day: str
    rows_in: int = 0
    rows_good: int = 0
    rows_bad: int = 0
    inserted: int = 0
    changed: int = 0
    unchanged: int = 0
    balances_written: int = 0
    balances_accounts: int = 0
    quarantined_written: int = 0
    committed: bool = False
    fast_path: bool = False
    seconds: float = 0.0
    failures: dict[str, int] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def bad_share(self) -> float:
        return self.rows_bad / self.rows_in if self.rows_in else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {"day": self.day, "rows_in": self.rows_in, "rows_good": self.rows_good, "rows_bad": self.rows_bad,
                "bad_share": round(self.bad_share, 6), "inserted": self.inserted, "changed": self.changed,
                "unchanged": self.unchanged, "balances_written": self.balances_written,
                "quarantined": self.rows_bad, "committed": self.committed, "seconds": round(self.seconds, 3)}


_COPY_ESCAPES = {"\\\\": "\\", "\\t": "\t", "\\n": "\n", "\\r": "\r", "\\b": "\b", "\\f": "\f", "\\v": "\v"}
_COPY_ESCAPE_RE = re.compile(r"\\[\\tnrbfv]")


def unescape_copy_text(value: Any) -> Any:
    """A value of PostgreSQL's ``COPY`` text format as the text it stands for (``\\t`` is a tab, …)."""
    if not isinstance(value, str) or "\\" not in value:
        return value
    return _COPY_ESCAPE_RE.sub(lambda match: _COPY_ESCAPES[match.group(0)], value)


class _Spill:
    """Bad rows put aside on disk while the day streams (bounded memory), written to the quarantine at the end."""

    COLUMNS = ("source_row_id", "business_date", "transaction_id", "reasons", "raw_row")

    def __init__(self) -> None:
        self.file: TextIO = tempfile.TemporaryFile(mode="w+", encoding="utf-8", newline="")
        self.rows = 0

    def add(self, bad: pd.DataFrame, day: date, *, escaped: bool) -> None:
        if bad.empty:
            return
        values = bad[list(TRANSACTION_COLUMNS)]
        if escaped:  # the export's own text, not COPY's escapes, goes to the quarantine
            values = values.map(unescape_copy_text)
        raw = values.to_json(orient="records", lines=True, force_ascii=False).splitlines()
        transaction_id = values["transaction_id"].astype(object)
        frame = pd.DataFrame({
            "source_row_id": bad["row_id"].to_numpy(dtype=object),
            "business_date": day.isoformat(),
            "transaction_id": transaction_id.where(transaction_id.notna(), None)
            .map(lambda v: v[:200] if isinstance(v, str) else v).to_numpy(dtype=object),
            "reasons": bad["reasons"].to_numpy(dtype=object),
            "raw_row": raw,
        })  # fmt: skip
        frame.to_csv(self.file, header=False, index=False)
        self.rows += len(frame)

    def chunks(self, size: int) -> Iterator[pd.DataFrame]:
        if not self.rows:
            return
        self.file.flush()
        self.file.seek(0)
        yield from pd.read_csv(self.file, names=list(self.COLUMNS), header=None, chunksize=size, dtype=object,
                               keep_default_na=False, na_values=[""])

    def close(self) -> None:
        self.file.close()


_LOAD_COLUMNS = (*FACT_COLUMNS, "first_load", "last_load")
_FREE_TEXT = ("counterparty_name", "description")
"""Columns that can hold any text (the others are validated ids, codes, numbers and timestamps)."""
_COMPARED = [c for c in FACT_COLUMNS if c not in ("transaction_id", "source_row_id")]
_NUMERIC_SCALES = {"amount": 4, "fx_rate_eur": 8, "amount_eur": 2, "amount_account": 4}
"""The scale of the numbers :class:`Transformed` carries (``Transformed.units``), as in the warehouse's columns."""
_TEXT_COLUMNS = ("transaction_id", "account_id", "currency", "direction", "status", "channel", "merchant_id",
                 "counterparty_name", "counterparty_iban", "description", "category")
_CODE_COLUMNS = ("currency", "direction", "status", "channel", "category")
"""Text columns of a few distinct values (validated codes): encoded once per distinct combination."""


def _days(values: pa.Array) -> np.ndarray:
    """Days since 2000-01-01 of validated ``YYYY-MM-DD`` texts, none null (few distinct dates: each parsed once)."""
    encoded = pc.dictionary_encode(values)
    days = np.array([date.fromisoformat(text[:10]).toordinal() - POSTGRES_EPOCH_DAYS
                     for text in encoded.dictionary.to_pylist()], dtype=np.int64)
    return days[np.asarray(encoded.indices.to_numpy(zero_copy_only=False), dtype=np.int64)]


_EPOCH_SECONDS = 946_684_800
"""2000-01-01 00:00 UTC in seconds since 1970."""


def _unescaped(values: pa.Array) -> pa.Array:
    """``COPY`` text values as the texts they stand for (only the few with a backslash are looked at)."""
    data = values.buffers()[2]
    if data is None or not (np.frombuffer(data, dtype=np.uint8) == 0x5C).any():
        return values
    escaped = as_bool(pc.match_substring(values, "\\"))
    plain = [unescape_copy_text(value) for value in values.filter(pa.array(escaped)).to_pylist()]
    return pc.replace_with_mask(values, pa.array(escaped), pa.array(plain, type=values.type))


def _copy_payload(chunk: Transformed, load_key: int, *, escaped: bool) -> tuple[list[str], pa.Buffer]:
    """The chunk in ``COPY``'s binary format (:func:`demobank.data_factory.pgcopy.binary_rows`): the column order
    to name in the ``COPY`` and the rows.

    :param escaped: the free texts are ``COPY`` text (read from PostgreSQL with ``COPY``): they are unescaped.
    """
    values = chunk.columns
    n = len(chunk)
    booked = pc.cast(to_arrow(values["booked_at"]), pa.timestamp("s", "UTC")).cast(pa.int64())
    texts = {name: to_arrow(values[name]) for name in _TEXT_COLUMNS}
    if escaped:
        texts.update({name: _unescaped(texts[name]) for name in _FREE_TEXT})
    key = np.full(n, load_key, dtype=np.int64)
    columns = [
        BinaryColumn("source_row_id", "int8", np.asarray(pc.cast(to_arrow(values["source_row_id"], text_only=False),
                                                                 pa.int64()).to_numpy(zero_copy_only=False))),
        BinaryColumn("business_date", "date", _days(to_arrow(values["business_date"], text_only=False))),
        BinaryColumn("booked_at", "timestamp",
                     (np.asarray(booked.to_numpy(zero_copy_only=False), dtype=np.int64) - _EPOCH_SECONDS) * 1_000_000),
        *(BinaryColumn(name, "numeric", chunk.units[name], scale=scale) for name, scale in _NUMERIC_SCALES.items()
          if name != "fx_rate_eur"),
        BinaryColumn("fx_rate_eur", "numeric", pa.array(chunk.units["fx_rate_eur"]), scale=8, few=True),  # per currency
        BinaryColumn("first_load", "int4", key),
        BinaryColumn("last_load", "int4", key),
        BinaryColumn("value_date", "date_text", to_arrow(values["value_date"])),
        *(BinaryColumn(name, "text", texts[name], few=name in _CODE_COLUMNS) for name in _TEXT_COLUMNS),
    ]
    return binary_rows(columns)


@contextlib.contextmanager
def _by_day_index(connection: Connection) -> Iterator[None]:
    """Within the transaction, let PostgreSQL find a day's rows through the day index (a BRIN index) rather than a
    scan of the whole table (which its planner may prefer for a day it has no statistics of yet)."""
    if connection.dialect.name != "postgresql":
        yield
        return
    connection.exec_driver_sql("SET LOCAL enable_seqscan = off")
    yield
    connection.exec_driver_sql("SET LOCAL enable_seqscan = on")


class _Writer:
    """The warehouse side of a load: one connection, one transaction, used from one thread only."""

    def __init__(self, engine: Engine, load_id: str, run_id: str, day: date, *, escaped: bool = False) -> None:
        self.engine = engine
        self.escaped = escaped  # free text arrives as COPY text (a PostgreSQL source)
        self.load_id = load_id
        self.run_id = run_id
        self.day = day
        self.loaded_at = datetime.now(UTC)
        self.connection: Connection | None = None
        self.load_key = 0
        self.fast = False
        self.upserted = 0
        self.dimension_changes = 0
        self.seconds = 0.0

    @property
    def postgres(self) -> bool:
        return self.engine.dialect.name == "postgresql"

    @property
    def _stamp(self) -> Any:
        if self.engine.dialect.name == "sqlite":
            return self.loaded_at.strftime("%Y-%m-%d %H:%M:%S.%f")
        return self.loaded_at

    def open(self, ref: ReferenceData) -> None:
        """Begin the transaction, register the load, refresh the dimensions, choose the path."""
        self.connection = connection = self.engine.connect()
        connection.begin()
        if self.postgres:
            # One load of a day at a time (SQLite: BEGIN IMMEDIATE already serialises writers).
            connection.exec_driver_sql("SELECT pg_advisory_xact_lock(hashtext(%s))",
                                       (f"{DAG_ID}/{self.day.isoformat()}",))
        connection.execute(wh.loads.delete().where(wh.loads.c.load_id == self.load_id, wh.loads.c.new_rows == 0,
                                                   wh.loads.c.changed_rows == 0))
        existing = connection.execute(select(wh.loads.c.load_key).where(wh.loads.c.load_id == self.load_id)).first()
        if existing is not None:  # the same run loaded before (a retry after the commit): keep its key
            self.load_key = int(existing[0])
        else:
            self.load_key = int(connection.execute(wh.loads.insert().values(
                load_id=self.load_id, run_id=self.run_id, business_date=self.day, loaded_at=self.loaded_at,
                new_rows=0, changed_rows=0, published_rows=0, publish_cursor=-1,
            )).inserted_primary_key[0])
        self._refresh_dimensions(ref)
        if self.postgres:
            with _by_day_index(connection):
                self.fast = connection.execute(
                    text("SELECT 1 FROM transactions WHERE business_date = :day LIMIT 1"),
                    {"day": self.day.isoformat()}).first() is None
        wh.create_temp_like(connection, wh.transactions, "tmp_df_transactions", _LOAD_COLUMNS)

    def _refresh_dimensions(self, ref: ReferenceData) -> None:
        connection = self.connection
        assert connection is not None
        accounts = ref.accounts
        columns = ["account_id", "customer_id", "currency", "account_type", "opened_on", "opening_balance"]
        wh.create_temp_like(connection, wh.accounts, "tmp_df_accounts", columns)
        wh.bulk_insert(connection, "tmp_df_accounts", columns,
                       [accounts.index.to_numpy(dtype=object), *(accounts[c].to_numpy(dtype=object)
                                                                 for c in columns[1:])])
        self.dimension_changes += wh.upsert_from(connection, wh.accounts, "tmp_df_accounts", columns,
                                                 compare=columns[1:], extra_values={"last_load": self.load_key})
        merchants = ref.merchants
        columns = ["merchant_id", "name", "mcc", "city", "country", "category"]
        wh.create_temp_like(connection, wh.merchants, "tmp_df_merchants", columns)
        wh.bulk_insert(connection, "tmp_df_merchants", columns,
                       [merchants.index.to_numpy(dtype=object), *(merchants[c].to_numpy(dtype=object)
                                                                  for c in columns[1:])])
        self.dimension_changes += wh.upsert_from(connection, wh.merchants, "tmp_df_merchants", columns,
                                                 compare=columns[1:], extra_values={"last_load": self.load_key})

    def _copy(self, table: str, payload: tuple[list[str], pa.Buffer]) -> None:
        assert self.connection is not None
        columns, rows = payload
        with self.connection.connection.driver_connection.cursor() as cursor:
            cursor.copy_expert(f"COPY {table} ({', '.join(columns)}) FROM STDIN WITH (FORMAT binary)",
                               BinaryCopyReader(rows), size=1 << 20)

    def _copy_new(self, payload: tuple[list[str], pa.Buffer]) -> bool:
        """First load of a day on PostgreSQL: ``COPY`` straight into ``transactions`` (every row is new, so this is
        the upsert); ``False`` (and nothing written) if a key exists already under another day."""
        import psycopg2.errors

        connection = self.connection
        assert connection is not None
        savepoint = connection.begin_nested()
        try:
            self._copy("transactions", payload)
        except psycopg2.errors.UniqueViolation:
            savepoint.rollback()
            log.info("a transaction id of %s exists already under another day: upserting from now on", self.day)
            return False
        savepoint.commit()
        return True

    def write(self, chunk: Transformed | tuple[list[str], pa.Buffer], rows: int) -> None:
        """Write one chunk: binary ``COPY`` input (PostgreSQL, see :func:`_copy_payload`) or the transformed columns
        (SQLite)."""
        started = time.perf_counter()
        connection = self.connection
        assert connection is not None
        if isinstance(chunk, tuple):
            if self.fast and self._copy_new(chunk):
                self.upserted += rows
                self.seconds += time.perf_counter() - started
                return
            self.fast = False
            connection.exec_driver_sql("TRUNCATE tmp_df_transactions")
            self._copy("tmp_df_transactions", chunk)
        else:
            connection.exec_driver_sql("DELETE FROM tmp_df_transactions")
            values: list[Any] = [chunk.columns[name].to_numpy(dtype=object) for name in FACT_COLUMNS]
            position = FACT_COLUMNS.index("booked_at")  # SQLAlchemy's SQLite storage format for DateTime
            values[position] = [f"{v[:10]} {v[11:19]}.000000" for v in values[position].tolist()]
            if self.escaped:  # the export's own text, not COPY's escapes
                for name in _FREE_TEXT:
                    values[FACT_COLUMNS.index(name)] = [unescape_copy_text(v) for v in
                                                        values[FACT_COLUMNS.index(name)].tolist()]
            values += [[self.load_key] * rows, [self.load_key] * rows]
            wh.bulk_insert(connection, "tmp_df_transactions", _LOAD_COLUMNS, values)
        self.upserted += wh.upsert_from(connection, wh.transactions, "tmp_df_transactions", _LOAD_COLUMNS,
                                        compare=_COMPARED, keep=("first_load",))
        self.seconds += time.perf_counter() - started

    def new_rows(self) -> int:
        assert self.connection is not None
        with _by_day_index(self.connection):
            return int(self.connection.execute(
                text("SELECT count(*) FROM transactions WHERE business_date = :day AND first_load = :load"),
                {"day": self.day.isoformat(), "load": self.load_key}).scalar() or 0)

    def write_balances(self, movements: Movements, accounts: pd.DataFrame) -> int:
        connection = self.connection
        assert connection is not None
        totals = movements.totals
        if totals.empty:
            return 0
        wh.create_temp_like(connection, wh.account_daily_balances, "tmp_df_active", ["account_id"])
        wh.bulk_insert(connection, "tmp_df_active", ["account_id"], [totals.index.to_numpy(dtype=object)])
        previous = connection.execute(text(
            "SELECT b.account_id, b.closing_balance FROM account_daily_balances b JOIN ("
            " SELECT account_id, max(business_date) AS last_day FROM account_daily_balances"
            " WHERE business_date < :day AND account_id IN (SELECT account_id FROM tmp_df_active)"
            " GROUP BY account_id) latest ON b.account_id = latest.account_id AND b.business_date = latest.last_day"
        ), {"day": self.day.isoformat()}).all()
        previous_closing = pd.Series({row[0]: row[1] for row in previous}, dtype=object)
        balances = daily_balances(movements, previous_closing, accounts)
        columns = ["account_id", "business_date", "currency", "opening_balance", "debits", "credits",
                   "closing_balance", "booked_count"]
        wh.create_temp_like(connection, wh.account_daily_balances, "tmp_df_balances", columns)
        values = [balances.index.to_numpy(dtype=object), np.full(len(balances), self.day.isoformat(), dtype=object),
                  *(balances[c].to_numpy(dtype=object) for c in columns[2:-1]),
                  balances["booked_count"].astype(str).to_numpy(dtype=object)]
        wh.bulk_insert(connection, "tmp_df_balances", columns, values)
        return wh.upsert_from(connection, wh.account_daily_balances, "tmp_df_balances", columns,
                              compare=columns[2:], extra_values={"last_load": self.load_key})

    def write_quarantine(self, spill: _Spill) -> int:
        connection = self.connection
        assert connection is not None
        columns = list(_Spill.COLUMNS)
        wh.create_temp_like(connection, wh.quarantine_transactions, "tmp_df_quarantine", columns)
        written = 0
        for frame in spill.chunks(DEFAULT_CHUNK_SIZE):
            connection.exec_driver_sql("DELETE FROM tmp_df_quarantine")
            wh.bulk_insert(connection, "tmp_df_quarantine", columns, [frame[c].to_numpy(dtype=object) for c in columns])
            written += wh.upsert_from(
                connection, wh.quarantine_transactions, "tmp_df_quarantine", columns,
                compare=["business_date", "transaction_id", "reasons", "raw_row"],
                extra_values={"quarantined_at": self._stamp, "quarantined_by_run": self.run_id})
        return written

    def finish_load(self, new_rows: int, changed_rows: int, other_changes: int) -> None:
        """Record the load's counts; a load that changed nothing at all leaves no row (a re-run changes nothing)."""
        assert self.connection is not None
        if new_rows == 0 and changed_rows == 0 and other_changes == 0:
            self.connection.execute(wh.loads.delete().where(wh.loads.c.load_key == self.load_key))
            return
        self.connection.execute(wh.loads.update().where(wh.loads.c.load_key == self.load_key).values(
            new_rows=new_rows, changed_rows=changed_rows))

    def commit(self) -> None:
        assert self.connection is not None
        self.connection.commit()

    def rollback(self) -> None:
        if self.connection is not None:
            self.connection.rollback()

    def begin_again(self) -> None:
        assert self.connection is not None
        self.connection.begin()

    def close(self) -> None:
        if self.connection is not None:
            self.connection.close()
            self.connection = None


def load_day(
    *,
    source_url: str,
    warehouse_engine: Engine,
    day: date,
    run_id: str,
    load_id: str,
    max_bad_share: float = DEFAULT_MAX_BAD_SHARE,
    expected_rows: int | None = None,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
) -> LoadReport:
    """Extract, validate, quarantine, transform and load one business day (see the module docstring).

    :param source_url: the core banking source.
    :param warehouse_engine: the warehouse (tables are created if missing).
    :param day: the business day.
    :param run_id: the DAG run (recorded in ``loads``).
    :param load_id: unique per load (``<dag_id>/<run_id>``): a retried task reuses it.
    :param max_bad_share: the quality gate's threshold (0 to 1).
    :param expected_rows: the export's announced row count (from :func:`check_source`); ``None`` skips the
        completeness check.
    :param chunk_size: rows per chunk (memory scales with it, not with the day).
    :raises DataQualityError: the gate failed; the day's bad rows are in the quarantine, nothing else changed.
    """
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be at least 1, got {chunk_size}")
    started = time.perf_counter()
    report = LoadReport(day=day.isoformat())
    wh.ensure_schema(warehouse_engine)
    source = source_read_engine(source_url)
    spill = _Spill()
    escaped = source.dialect.name == "postgresql"
    writer = _Writer(warehouse_engine, load_id, run_id, day, escaped=escaped)
    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="warehouse-writer")
    pending: list[Future[None]] = []
    copy_out_binary = warehouse_engine.dialect.name == "postgresql"
    try:
        ref = load_reference(source, day)
        opened = executor.submit(writer.open, ref)  # registers the load, refreshes the dimensions meanwhile
        tracker = DuplicateTracker()
        movements = Movements(ref.accounts.index)
        failures = dict.fromkeys((check.name for check in CHECKS), 0)
        timing = {"extract": 0.0, "validate": 0.0, "transform": 0.0, "serialize": 0.0, "wait": 0.0}
        mark = time.perf_counter()
        for frame in extract_chunks(source, day, chunk_size):
            timing["extract"] += time.perf_counter() - mark
            mark = time.perf_counter()
            result = validate_chunk(frame, ref, tracker)
            spill.add(result.bad, day, escaped=escaped)
            report.rows_in += len(frame)
            report.rows_bad += len(result.bad)
            for name, count in result.failures.items():
                failures[name] += count
            timing["validate"] += time.perf_counter() - mark
            mark = time.perf_counter()
            if not result.good.empty:
                transformed = transform_chunk(result.good, ref, movements)
                report.rows_good += len(transformed)
                timing["transform"] += time.perf_counter() - mark
                mark = time.perf_counter()
                opened.result()  # the load key, needed from the first chunk on
                payload: Transformed | tuple[list[str], pa.Buffer] = (
                    _copy_payload(transformed, writer.load_key, escaped=escaped) if copy_out_binary else transformed)
                timing["serialize"] += time.perf_counter() - mark
                mark = time.perf_counter()
                while len(pending) >= 2:  # at most two chunks waiting for the database: bounded memory
                    pending.pop(0).result()
                timing["wait"] += time.perf_counter() - mark
                pending.append(executor.submit(writer.write, payload, len(transformed)))
            mark = time.perf_counter()
        opened.result()
        for future in pending:
            future.result()
        pending.clear()
        report.failures = failures
        timing["wait"] += time.perf_counter() - mark
        timing["load_db"] = writer.seconds
        report.timings = timing
        report.fast_path = writer.fast

        problem = _gate(report, max_bad_share, expected_rows)
        if problem is not None:
            executor.submit(writer.rollback).result()
            executor.submit(writer.begin_again).result()
            report.quarantined_written = executor.submit(writer.write_quarantine, spill).result()
            executor.submit(writer.commit).result()
            report.seconds = time.perf_counter() - started
            raise DataQualityError(problem, bad_share=report.bad_share, max_bad_share=max_bad_share, report=report)

        def finish() -> None:
            new = writer.upserted if writer.fast else writer.new_rows()  # the fast path only inserts
            report.inserted = new
            report.changed = max(writer.upserted - new, 0)
            report.unchanged = report.rows_good - writer.upserted
            report.balances_accounts = int((movements.booked_count > 0).sum())
            report.balances_written = writer.write_balances(movements, ref.accounts)
            report.quarantined_written = writer.write_quarantine(spill)
            writer.finish_load(report.inserted, report.changed,
                               writer.dimension_changes + report.balances_written + report.quarantined_written)
            writer.commit()

        executor.submit(finish).result()
        report.committed = True
    except BaseException:
        for future in pending:
            with contextlib.suppress(BaseException):
                future.result()
        try:
            executor.submit(writer.rollback).result()
        except (DBAPIError, RuntimeError):
            log.warning("rollback of the warehouse transaction failed", exc_info=True)
        raise
    finally:
        try:
            executor.submit(writer.close).result()
        finally:
            executor.shutdown(wait=True)
            spill.close()
            source.dispose()
    report.seconds = time.perf_counter() - started
    log.info("loaded %s: %s", day, report.as_dict())
    return report


def _gate(report: LoadReport, max_bad_share: float, expected_rows: int | None) -> str | None:
    """The quality gate's verdict: ``None`` to commit, else the message of the failure."""
    day = report.day
    if expected_rows is not None and report.rows_in != expected_rows:
        return (f"the export of {day} is incomplete: {report.rows_in:,} rows read but export_batches announces "
                f"{expected_rows:,}: nothing was loaded. Re-run the day once the export is complete.")
    if report.bad_share > max_bad_share:
        top = sorted(((count, name) for name, count in report.failures.items() if count), reverse=True)[:5]
        problems = ", ".join(f"{name} {count:,}" for count, name in top)
        return (f"{report.bad_share:.1%} of the rows of {day} are bad ({report.rows_bad:,} of {report.rows_in:,}), "
                f"above the threshold of {max_bad_share:.1%} (max_bad_share): nothing was loaded. The bad rows are "
                f"in the warehouse table quarantine_transactions with their reasons (most frequent: {problems}). Fix "
                "the export at the source and re-run the day, or re-run with a higher max_bad_share if these rows "
                "may be left out.")
    return None


def load_step(*, dag_id: str, run_id: str, task_id: str, day: str, expected_rows: int | None, max_bad_share: float,
              source_url: str, warehouse_url: str, suite_engine: Engine | None = None,
              chunk_size: int = DEFAULT_CHUNK_SIZE) -> dict[str, Any]:
    """Step 2 of the DAG: :func:`load_day` plus the quality record (counts per table, each check's result)."""
    from demobank.db.engine import get_engine

    business_day = date.fromisoformat(day)
    warehouse_base = check_declared_uri(WAREHOUSE_CONN_ID, warehouse_url)
    source_base = check_declared_uri(CORE_BANKING_CONN_ID, source_url)
    recorder = QualityRecorder(suite_engine, dag_id, run_id)
    failure: DataQualityError | None = None
    try:
        report = load_day(source_url=source_url, warehouse_engine=get_engine(warehouse_url), day=business_day,
                          run_id=run_id, load_id=f"{dag_id}/{run_id}", max_bad_share=max_bad_share,
                          expected_rows=expected_rows, chunk_size=chunk_size)
    except DataQualityError as error:
        if error.report is None:
            raise
        report, failure = error.report, error
    checks = [
        CheckResult(check.name, check.kind,
                    QualityCheckStatus.PASSED.value if not report.failures.get(check.name) else
                    QualityCheckStatus.WARNING.value,
                    checked_rows=report.rows_in, failed_rows=report.failures.get(check.name, 0),
                    message=check.description, table="core_banking.transactions")
        for check in CHECKS
    ]
    complete = expected_rows is None or report.rows_in == expected_rows
    checks.append(CheckResult(
        "export_complete", "volume", QualityCheckStatus.PASSED.value if complete else QualityCheckStatus.FAILED.value,
        checked_rows=report.rows_in,
        message=f"{report.rows_in:,} rows read, export_batches announces "
                f"{expected_rows if expected_rows is not None else 'no count'}",
        table="core_banking.transactions"))
    within = report.bad_share <= max_bad_share
    checks.append(CheckResult(
        "bad_share_threshold", "gate", QualityCheckStatus.PASSED.value if within else QualityCheckStatus.FAILED.value,
        checked_rows=report.rows_in, failed_rows=report.rows_bad,
        message=f"{report.bad_share:.2%} bad rows ({report.rows_bad:,} of {report.rows_in:,}); threshold "
                f"{max_bad_share:.2%}", table="core_banking.transactions"))
    recorder.checks(task_id, checks)
    recorder.tables([
        TableCounts("core_banking.transactions", table_uri(source_base, "transactions"), rows_in=report.rows_in,
                    rows_out=report.rows_good, rows_quarantined=report.rows_bad),
        TableCounts("warehouse.transactions", table_uri(warehouse_base, "transactions"), rows_in=report.rows_good,
                    rows_out=(report.inserted + report.changed) if report.committed else 0,
                    detail={"inserted": report.inserted, "changed": report.changed, "unchanged": report.unchanged,
                            "committed": report.committed}),
        TableCounts("warehouse.account_daily_balances", table_uri(warehouse_base, "account_daily_balances"),
                    rows_in=report.balances_accounts, rows_out=report.balances_written),
        TableCounts("warehouse.quarantine_transactions", table_uri(warehouse_base, "quarantine_transactions"),
                    rows_in=report.rows_bad, rows_out=report.quarantined_written, rows_quarantined=report.rows_bad),
    ])
    recorder.update(rows_in=report.rows_in, rows_loaded=report.rows_good if report.committed else 0,
                    rows_quarantined=report.rows_bad, bad_share=report.bad_share, max_bad_share=max_bad_share)
    if failure is not None:
        raise failure
    return report.as_dict()


# -- step 3: publish transaction.created for new rows -------------------------------------------------------------


def _amount_text(value: Any, currency: str) -> str:
    from demobank.data_factory.validate import CURRENCY_DECIMALS

    places = CURRENCY_DECIMALS.get(currency, 2)
    amount = Decimal(str(value)).quantize(Decimal(1).scaleb(-places))
    return format(amount, "f")


def _rfc3339(value: Any) -> str:
    if isinstance(value, str):
        value = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def event_data(row: Mapping[str, Any]) -> dict[str, Any]:
    """The ``transaction.created`` data of a warehouse row (see ``include/events/transaction.created``)."""
    data: dict[str, Any] = {
        "transaction_id": row["transaction_id"],
        "account_id": row["account_id"],
        "customer_id": row["customer_id"],
        "amount": _amount_text(row["amount"], row["currency"]),
        "currency": row["currency"],
        "direction": row["direction"],
        "status": row["status"],
        "channel": row["channel"],
        "booked_at": _rfc3339(row["booked_at"]),
    }
    if row.get("merchant_name") and row.get("channel") in MERCHANT_CHANNELS:
        merchant = {"name": row["merchant_name"], "category_code": row["mcc"]}
        if row.get("merchant_city"):
            merchant["city"] = row["merchant_city"]
        if row.get("merchant_country"):
            merchant["country"] = row["merchant_country"]
        data["merchant"] = merchant
    if row.get("counterparty_name"):
        counterparty = {"name": row["counterparty_name"]}
        if row.get("counterparty_iban"):
            counterparty["iban_masked"] = row["counterparty_iban"]
        data["counterparty"] = counterparty
    if row.get("description"):
        data["description"] = row["description"]
    if row.get("value_date"):
        value_date = row["value_date"]
        data["value_date"] = value_date.isoformat() if isinstance(value_date, date) else str(value_date)[:10]
    return data


_EVENT_SELECT = (
    "SELECT t.transaction_id, t.account_id, a.customer_id, t.amount, t.currency, t.direction, t.status, t.channel, "
    "t.merchant_id, m.name AS merchant_name, m.city AS merchant_city, m.country AS merchant_country, "
    "m.mcc AS mcc, t.counterparty_name, t.counterparty_iban, t.description, t.booked_at, t.value_date, "
    "t.source_row_id FROM transactions t JOIN accounts a ON a.account_id = t.account_id "
    "LEFT JOIN merchants m ON m.merchant_id = t.merchant_id "
    "WHERE t.business_date = :day AND t.first_load = :load AND t.source_row_id > :cursor "
    "ORDER BY t.source_row_id"
)
_EVENT_QUERY = text(_EVENT_SELECT + " LIMIT :limit")
_EVENT_STREAM = text(_EVENT_SELECT)


def _new_rows(engine: Engine, day: date, load_key: int, cursor: int, batch_size: int
              ) -> Iterator[list[dict[str, Any]]]:
    """The new rows of a load after ``cursor``, in ``source_row_id`` order, ``batch_size`` at a time.

    PostgreSQL: one query, read through a server-side cursor (the warehouse's index on the business day is a BRIN
    index, cheap to keep up on every load, which finds a day's rows but does not order them: the day's new rows
    are sorted once). SQLite: one query per batch, resuming after the last row (its index is a B-tree in that order).
    """
    params = {"day": day.isoformat(), "load": load_key, "cursor": cursor}
    if engine.dialect.name == "postgresql":
        with engine.connect() as connection:
            result = connection.execution_options(stream_results=True, max_row_buffer=batch_size).execute(
                _EVENT_STREAM, params)
            for rows in result.mappings().partitions(batch_size):
                yield [dict(row) for row in rows]
        return
    while True:
        with engine.connect() as connection:
            rows = [dict(row._mapping) for row in connection.execute(_EVENT_QUERY, {**params, "limit": batch_size})]
        if rows:
            yield rows
        if len(rows) < batch_size:
            return
        params["cursor"] = int(rows[-1]["source_row_id"])


@dataclass
class PublishReport:
    """What :func:`publish_new_transactions` did."""

    published: int = 0
    loads_finished: int = 0
    loads: list[str] = field(default_factory=list)


def publish_new_transactions(warehouse_engine: Engine, suite_engine: Engine | None = None, *,
                             publisher: str | None = None, batch_size: int = PUBLISH_BATCH) -> PublishReport:
    """Publish ``transaction.created`` for the new rows of every load not fully published yet (oldest first).

    Each batch is written to the outbox in one suite-database transaction (idempotency key: the transaction id,
    in the publisher's own scope: no key an API user chose can block it), then the load's cursor moves on in the
    warehouse; a crash between the two republishes the batch, which the outbox ignores (same ids, same data).

    :param publisher: the events' publisher; ``dag:data_factory_transactions`` by default.
    """
    from demobank.db.engine import session_scope
    from demobank.events.outbox import dag_publisher, publish_many

    publisher = publisher or dag_publisher(DAG_ID)

    if not 1 <= batch_size <= PUBLISH_BATCH:
        raise ValueError(f"batch_size must be 1 to {PUBLISH_BATCH}, got {batch_size}")
    wh.ensure_schema(warehouse_engine)
    report = PublishReport()
    with warehouse_engine.connect() as connection:
        loads = connection.execute(
            select(wh.loads.c.load_key, wh.loads.c.load_id, wh.loads.c.business_date, wh.loads.c.publish_cursor,
                   wh.loads.c.published_rows)
            .where(wh.loads.c.new_rows > 0, wh.loads.c.published_at.is_(None)).order_by(wh.loads.c.load_key)
        ).all()
    for load_key, load_id, business_date, cursor, published in loads:
        report.loads.append(load_id)
        day = business_date if isinstance(business_date, date) else date.fromisoformat(str(business_date)[:10])
        for rows in _new_rows(warehouse_engine, day, load_key, cursor, batch_size):
            events = [{"type": "transaction.created", "data": event_data(row),
                       "idempotency_key": row["transaction_id"], "time": _event_time(row["booked_at"])}
                      for row in rows]
            with session_scope(suite_engine) as session:
                publish_many(session, events, publisher=publisher)
            cursor = int(rows[-1]["source_row_id"])
            published += len(rows)
            report.published += len(rows)
            with warehouse_engine.begin() as connection:
                connection.execute(wh.loads.update().where(wh.loads.c.load_key == load_key).values(
                    publish_cursor=cursor, published_rows=published))
        with warehouse_engine.begin() as connection:
            connection.execute(wh.loads.update().where(wh.loads.c.load_key == load_key).values(
                publish_cursor=cursor, published_rows=published, published_at=datetime.now(UTC)))
        report.loads_finished += 1
    return report


def _event_time(value: Any) -> datetime:
    return datetime.fromisoformat(_rfc3339(value).replace("Z", "+00:00"))


def publish_step(*, dag_id: str, run_id: str, task_id: str, warehouse_url: str,
                 suite_engine: Engine | None = None) -> dict[str, Any]:
    """Step 3 of the DAG: publish, record the count, close the run's quality record as a success."""
    from demobank.db.engine import get_engine
    from demobank.events.outbox import dag_publisher

    recorder = QualityRecorder(suite_engine, dag_id, run_id)
    report = publish_new_transactions(get_engine(warehouse_url), suite_engine, publisher=dag_publisher(dag_id))
    recorder.update(events_published=report.published)
    recorder.tables([TableCounts("demobank.outbox_events", "demobank://events/outbox", rows_out=report.published,
                                 detail={"event_type": "transaction.created", "loads": report.loads})])
    recorder.finish(QualityRunStatus.SUCCESS)
    log.info("published %d transaction.created event(s) for %d load(s)", report.published, len(report.loads))
    return {"published": report.published, "loads_finished": report.loads_finished}
