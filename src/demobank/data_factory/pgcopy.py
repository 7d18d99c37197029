"""Helper process of the extraction: stream ``COPY (…) TO STDOUT`` from PostgreSQL through a pipe.

:func:`copy_out` starts ``psql`` when it is installed (the PostgreSQL client, C all the way), else
``python -m demobank.data_factory.pgcopy`` (psycopg2), and hands over the output in large blocks. Why a process of
its own: libpq hands ``COPY`` data over one row at a time, and each row costs the calling process a round trip
through Python (and, in a threaded process, a handover of the GIL); in a separate process that work runs beside the
pipeline's instead of inside it. Credentials go through the child's environment (libpq's ``PG*`` variables or a
connection string), never its command line.
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
from typing import IO, Any

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
