"""PostgreSQL ``COPY`` helpers: the extraction's helper process, and the binary format the loads write.

Reading: stream ``COPY (…) TO STDOUT`` from PostgreSQL through a pipe.

:func:`copy_out` starts ``psql`` when it is installed (the PostgreSQL client, C all the way), else
``python -m demobank.data_factory.pgcopy`` (psycopg2), and hands over the output in large blocks. Why a process of
its own: libpq hands ``COPY`` data over one row at a time, and each row costs the calling process a round trip
through Python (and, in a threaded process, a handover of the GIL); in a separate process that work runs beside the
pipeline's instead of inside it. Credentials go through the child's environment (libpq's ``PG*`` variables or a
connection string), never its command line.

Writing: :func:`binary_rows` builds rows in ``COPY``'s binary format from columns (numpy and Arrow arrays), and
:class:`BinaryCopyReader` hands them to ``cursor.copy_expert`` with the format's header and trailer.
"""

from __future__ import annotations

import os
import queue
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date
from typing import IO, Any

import numpy as np

DSN_ENV = "DEMOBANK_PGCOPY_DSN"
QUERY_ENV = "DEMOBANK_PGCOPY_QUERY"
BLOCK_SIZE = 1 << 20
PREFETCH_BLOCKS = 16


def dsn_from_url(url: Any) -> str:
    """A libpq connection string for a SQLAlchemy URL (``postgresql+psycopg2://…``)."""
    from psycopg2.extensions import make_dsn

    params: dict[str, Any] = {"host": url.host, "port": url.port, "user": url.username, "password": url.password,
                              "dbname": url.database}
    params.update({key: value for key, value in url.query.items() if isinstance(value, str)})
    return make_dsn(**{key: value for key, value in params.items() if value is not None})


class _Prefetcher:
    """Reads the helper's output in a thread (the GIL is free while it waits), up to ``PREFETCH_BLOCKS`` blocks
    ahead, so the helper never waits for the pipeline; :meth:`read` hands the blocks over (``b""`` at the end)."""

    def __init__(self, stream: IO[bytes]) -> None:
        self.stream = stream
        self.blocks: queue.Queue[bytes] = queue.Queue(maxsize=PREFETCH_BLOCKS)
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, name="pgcopy-prefetch", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stopped.is_set():
            try:
                block = self.stream.read(BLOCK_SIZE * 4)  # a buffered read: up to 4 MiB, the GIL free meanwhile
            except (OSError, ValueError):
                block = b""
            while not self.stopped.is_set():
                try:
                    self.blocks.put(block, timeout=0.5)
                    break
                except queue.Full:
                    continue
            if not block:
                return

    def read(self, _size: int = -1) -> bytes:
        return self.blocks.get()

    def stop(self) -> None:
        self.stopped.set()
        self.thread.join(timeout=10)


def _enlarge_pipe(stream: IO[bytes]) -> None:
    """Let the pipe hold up to 1 MiB (Linux; 64 KiB by default): fewer wake-ups on both sides."""
    try:
        import fcntl

        fcntl.fcntl(stream.fileno(), getattr(fcntl, "F_SETPIPE_SZ", 1031), BLOCK_SIZE)
    except (ImportError, OSError):
        pass


_LIBPQ_ENV = {"host": "PGHOST", "port": "PGPORT", "user": "PGUSER", "password": "PGPASSWORD", "dbname": "PGDATABASE",
              "sslmode": "PGSSLMODE", "sslrootcert": "PGSSLROOTCERT", "sslcert": "PGSSLCERT", "sslkey": "PGSSLKEY",
              "connect_timeout": "PGCONNECT_TIMEOUT", "application_name": "PGAPPNAME", "options": "PGOPTIONS"}


def _command(dsn: str, query: str) -> tuple[list[str], dict[str, str]]:
    """``psql`` (when installed and every connection parameter maps to its environment) or the Python helper."""
    from psycopg2.extensions import parse_dsn

    base = {key: value for key, value in os.environ.items() if not key.startswith("PG")}
    psql = shutil.which("psql")
    params = parse_dsn(dsn)
    if psql and set(params) <= set(_LIBPQ_ENV):
        env = {**base, **{_LIBPQ_ENV[key]: str(value) for key, value in params.items()}}
        return [psql, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-c", query], env
    return [sys.executable, "-m", "demobank.data_factory.pgcopy"], {**base, DSN_ENV: dsn, QUERY_ENV: query}


@contextmanager
def copy_out(dsn: str, query: str) -> Iterator[_Prefetcher]:
    """Run ``query`` (a ``COPY … TO STDOUT``) in a helper process; yield a reader of its output (``read()``
    returns the next block, ``b""`` at the end). Memory: at most ``PREFETCH_BLOCKS`` blocks of 4 MiB wait.

    :raises RuntimeError: the helper failed (the message has PostgreSQL's error).
    """
    command, env = _command(dsn, query)
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, bufsize=BLOCK_SIZE)
    assert process.stdout is not None and process.stderr is not None
    _enlarge_pipe(process.stdout)
    prefetcher = _Prefetcher(process.stdout)
    completed = False
    try:
        yield prefetcher
        completed = True
    finally:
        if not completed and process.poll() is None:
            process.kill()
        prefetcher.stop()
        process.stdout.close()
        error = process.stderr.read().decode("utf-8", "replace").strip()
        process.stderr.close()
        code = process.wait()
    if code != 0:
        raise RuntimeError(f"COPY from the source failed (helper exit code {code}): {error or 'no message'}")


def main() -> int:
    """Copy the query's output to stdout; exit 1 with PostgreSQL's error on stderr."""
    import psycopg2

    dsn, query = os.environ.get(DSN_ENV), os.environ.get(QUERY_ENV)
    if not dsn or not query:
        print(f"set {DSN_ENV} and {QUERY_ENV}", file=sys.stderr)
        return 2
    try:
        with psycopg2.connect(dsn) as connection, connection.cursor() as cursor:
            cursor.copy_expert(query, sys.stdout.buffer, size=BLOCK_SIZE)
        sys.stdout.buffer.flush()
    except BrokenPipeError:
        return 0  # the reader stopped early (it failed or was cancelled); nothing to report
    except psycopg2.Error as error:
        print(str(error).strip(), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())


# -- COPY's binary format --------------------------------------------------------------------------------------------
#
# Loading in PostgreSQL's binary ``COPY`` format spares the server parsing every number, date and timestamp from text
# (about a fifth of what a load costs it). The rows are built column-wise: the fixed-width fields of every row in
# one numpy record array (big-endian, as the format wants), the texts with their length prefixes, all joined per row
# by one Arrow kernel; no Python object per row or value.

BINARY_HEADER = b"PGCOPY\n\xff\r\n\x00" + (0).to_bytes(4, "big") + (0).to_bytes(4, "big")
BINARY_TRAILER = (-1).to_bytes(2, "big", signed=True)
POSTGRES_EPOCH_DAYS = 730_120
"""``date(2000, 1, 1).toordinal()``: PostgreSQL counts dates and timestamps from 2000-01-01."""
NUMERIC_INT_GROUPS = 4
"""Base-10,000 digits before the decimal point of a binary numeric: up to 10^16 (PostgreSQL strips leading zeros)."""
_NUMERIC_NEGATIVE = 0x4000
BINARY_NULL = (-1).to_bytes(4, "big", signed=True)
"""A NULL field: its length -1 and no data."""


@dataclass(frozen=True)
class BinaryColumn:
    """One column of a binary ``COPY``: its name and its values, already in the field's form.

    ``kind`` is ``"int8"``, ``"int4"``, ``"date"`` (days since 2000-01-01), ``"timestamp"`` (microseconds since
    2000-01-01 00:00 UTC) or ``"numeric"`` (integer ``values`` in units of 10^-``scale``): numpy arrays, fixed
    width, never NULL (``few=True`` for a numeric column of a few distinct values: an Arrow int64 array); ``"text"``
    (an Arrow text array, NULLs allowed; ``few=True`` for a column of a few distinct values, such as codes); or
    ``"date_text"`` (an Arrow array of validated ``YYYY-MM-DD`` texts, NULLs allowed, few distinct values).
    """

    name: str
    kind: str
    values: Any
    scale: int = 0
    few: bool = False


_FIXED = {"int8": (">i8", 8), "int4": (">i4", 4), "date": (">i4", 4), "timestamp": (">i8", 8)}


def _numeric_dtype(scale: int) -> list[tuple[str, str]]:
    groups = NUMERIC_INT_GROUPS + -(-scale // 4)
    return [("length", ">i4"), ("ndigits", ">i2"), ("weight", ">i2"), ("sign", ">u2"), ("dscale", ">u2"),
            ("digits", ">i2", (groups,))]


def _fill_numeric(record: np.ndarray, units: np.ndarray, scale: int) -> None:
    """Numeric fields of a fixed shape: ``NUMERIC_INT_GROUPS`` base-10,000 digits before the point and enough after
    it for ``scale`` decimals (PostgreSQL strips the zeros and applies the column's scale)."""
    frac_groups = -(-scale // 4)
    groups = NUMERIC_INT_GROUPS + frac_groups
    units = np.asarray(units, dtype=np.int64)
    magnitude = np.abs(units) * (10 ** (4 * frac_groups - scale))
    if len(magnitude) and int(magnitude.max()) >= 10 ** (4 * groups):
        raise ValueError(f"a number of {int(magnitude.max())} units of 10^-{scale} does not fit the binary COPY "
                         f"encoding (below 10^{4 * NUMERIC_INT_GROUPS})")
    digits = np.empty((len(units), groups), dtype=np.int64)
    for k in range(groups - 1, -1, -1):
        magnitude, digits[:, k] = np.divmod(magnitude, 10_000)
    record["length"] = 8 + 2 * groups
    record["ndigits"] = groups
    record["weight"] = NUMERIC_INT_GROUPS - 1
    record["sign"] = np.where(units < 0, _NUMERIC_NEGATIVE, 0)
    record["dscale"] = scale
    record["digits"] = digits


def _field_bytes(kind: str, value: bytes | str | int | None, scale: int = 0) -> bytes:
    """One field (its length and data) of a text, a ``YYYY-MM-DD`` date or a numeric."""
    if value is None:
        return BINARY_NULL
    if kind == "numeric":
        record = np.zeros(1, dtype=np.dtype(_numeric_dtype(scale), align=False))
        _fill_numeric(record, np.array([value], dtype=np.int64), scale)
        return record.tobytes()
    if kind == "date_text":
        day = value.decode() if isinstance(value, bytes) else str(value)
        return (4).to_bytes(4, "big") + (date.fromisoformat(day[:10]).toordinal() - POSTGRES_EPOCH_DAYS).to_bytes(
            4, "big", signed=True)
    data = value if isinstance(value, bytes) else str(value).encode()
    return len(data).to_bytes(4, "big") + data


def _equal_width(values: Any) -> int:
    """The byte length of every value of a text array without NULLs if they are all as long, else 0."""
    import pyarrow.compute as pc

    if values.null_count or not len(values):
        return 0
    lengths = pc.min_max(pc.binary_length(values)).as_py()
    return int(lengths["min"]) if lengths["min"] == lengths["max"] else 0


def binary_rows(columns: list[BinaryColumn]) -> tuple[list[str], Any]:
    """The rows of ``columns`` in ``COPY``'s binary format (without the header and trailer).

    Every fixed-width field (numbers, dates, timestamps, and texts that are all as long) goes into one numpy record
    per row; the columns of few distinct values are encoded once per distinct combination and taken per row; the
    other texts follow with their lengths. One Arrow kernel joins these pieces row by row: its cost grows with the
    number of pieces, so there are few.

    :return: the column order of the rows (name the columns so in the ``COPY`` command) and the rows as one Arrow
        buffer.
    :raises ValueError: a number too large for the encoding (see :data:`NUMERIC_INT_GROUPS`).
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    n = len(columns[0].values)
    columns = [BinaryColumn(c.name, c.kind, c.values.cast(pa.large_binary()), c.scale, c.few) if c.kind == "text"
               else c for c in columns]  # texts as bytes with 64-bit offsets, whatever their Arrow type
    fixed: list[BinaryColumn] = []
    widths: dict[str, int] = {}
    few: list[BinaryColumn] = []
    texts: list[BinaryColumn] = []
    for column in columns:
        if column.kind == "date_text" or column.few:
            few.append(column)
        elif column.kind in _FIXED or column.kind == "numeric":
            fixed.append(column)
        elif width := _equal_width(column.values):
            fixed.append(column)
            widths[column.name] = width
        else:
            texts.append(column)
    # A row: the field count, then the columns of few values (one piece), the record, the texts. The count leads
    # the first piece; the record ends with the first text's length, so that text needs no piece of its own.
    fields: list[tuple[Any, ...]] = [] if few else [("count", ">i2")]
    for column in fixed:
        if column.kind == "numeric":
            fields.append((column.name, _numeric_dtype(column.scale)))
        elif column.kind == "text":
            fields.append((column.name, [("length", ">i4"), ("value", f"S{widths[column.name]}")]))
        else:
            fields.append((column.name, [("length", ">i4"), ("value", _FIXED[column.kind][0])]))
    if texts:
        fields.append(("next_length", ">i4"))  # the length of the first text that follows the record
    record = np.zeros(n, dtype=np.dtype(fields, align=False))
    if not few:
        record["count"] = len(columns)
    for column in fixed:
        if column.kind == "numeric":
            _fill_numeric(record[column.name], column.values, column.scale)
        elif column.kind == "text":
            width = widths[column.name]
            values = column.values
            start = int(np.frombuffer(values.buffers()[1], dtype=np.int64)[values.offset])
            record[column.name]["length"] = width
            record[column.name]["value"] = np.frombuffer(values.buffers()[2], dtype=f"S{width}", count=n,
                                                         offset=start)
        else:
            record[column.name]["length"] = _FIXED[column.kind][1]
            record[column.name]["value"] = column.values
    lengths = [pc.fill_null(pc.binary_length(column.values), -1).to_numpy(zero_copy_only=False).astype(">i4")
               for column in texts]
    if texts:
        record["next_length"] = lengths[0]
    pieces = [_combinations(few, n, count=len(columns)), _as_binary(record, n)] if few else [_as_binary(record, n)]
    for position, column in enumerate(texts):
        if position:
            pieces.append(_as_binary(lengths[position], n))
        pieces.append(column.values)
    rows = pc.binary_join_element_wise(*pieces, pa.scalar(b"", pa.large_binary()), null_handling="replace",
                                       null_replacement="") if len(pieces) > 1 else pieces[0]
    offsets = np.frombuffer(rows.buffers()[1], dtype=np.int64)
    first, last = int(offsets[rows.offset]), int(offsets[rows.offset + n])
    return [column.name for column in (*few, *fixed, *texts)], rows.buffers()[2].slice(first, last - first)


def _combinations(columns: list[BinaryColumn], n: int, *, count: int) -> Any:
    """The row's field ``count`` and the fields of ``columns`` (few distinct values each), encoded once per distinct
    combination of values."""
    import pyarrow as pa
    import pyarrow.compute as pc

    key = np.zeros(n, dtype=np.int64)
    dictionaries = []
    for column in columns:
        encoded = pc.dictionary_encode(column.values)
        size = len(encoded.dictionary) + 1  # + NULL
        codes = np.asarray(pc.fill_null(encoded.indices, size - 1).to_numpy(zero_copy_only=False), dtype=np.int64)
        key = key * size + codes
        dictionaries.append((column.kind, column.scale, [*encoded.dictionary.to_pylist(), None], size))
    combos, inverse = np.unique(key, return_inverse=True)
    encoded_combos = []
    for combo in combos.tolist():
        parts = []
        for kind, scale, values, size in reversed(dictionaries):
            combo, code = divmod(combo, size)
            parts.append(_field_bytes(kind, values[code], scale))
        encoded_combos.append(count.to_bytes(2, "big") + b"".join(reversed(parts)))
    return pa.array(encoded_combos, type=pa.large_binary()).take(pa.array(inverse.reshape(-1)))


def _as_binary(values: np.ndarray, n: int) -> Any:
    """``n`` records of equal width (a numpy array) as an Arrow ``large_binary`` array."""
    import pyarrow as pa

    data = np.ascontiguousarray(values).view(np.uint8).reshape(-1)
    return pa.FixedSizeBinaryArray.from_buffers(pa.binary(len(data) // max(n, 1)), n, [None, pa.py_buffer(data)]
                                                ).cast(pa.large_binary())


class BinaryCopyReader:
    """A file-like reader of a whole binary ``COPY`` input: the header, the rows (one buffer), the trailer, handed out
    in pieces of at most the size asked for (what ``cursor.copy_expert`` reads)."""

    def __init__(self, rows: Any) -> None:
        self.parts = [memoryview(BINARY_HEADER), memoryview(rows), memoryview(BINARY_TRAILER)]

    def read(self, size: int = -1) -> bytes:
        while self.parts and not len(self.parts[0]):
            self.parts.pop(0)
        if not self.parts:
            return b""
        part = self.parts[0]
        if size < 0 or size >= len(part):
            self.parts.pop(0)
            return bytes(part)
        self.parts[0] = part[size:]
        return bytes(part[:size])

    readline = read
