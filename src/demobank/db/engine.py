"""Engines and sessions for the suite's own database (never Airflow's metadata database).

The database is reached through the Airflow connection ``demobank_db``:

* ``conn_type: sqlite``   -- the embedded shape (``make run``); ``host`` is the database file's path.
* ``conn_type: postgres`` -- the scaled-out shape (``docker compose up``); ``schema`` is the database name.

The environment variable ``DEMOBANK_DB_URL`` (a SQLAlchemy URL) overrides the connection, for tests and tools.

Several Airflow worker processes write at once, so SQLite engines run in WAL mode with a busy timeout and
open every transaction with ``BEGIN IMMEDIATE`` (a writer waits for the lock instead of failing on a lock
upgrade), and PostgreSQL engines ping pooled connections before use.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Generator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.orm import Session

from demobank.exceptions import ConfigurationError

DEFAULT_CONN_ID = "demobank_db"
"""The Airflow connection id of the suite's database."""

URL_ENV_VAR = "DEMOBANK_DB_URL"
"""Environment variable holding a SQLAlchemy URL that overrides the Airflow connection."""

SQLITE_BUSY_TIMEOUT_MS = 30_000
"""How long a SQLite writer waits for another process's write lock before failing."""

SUPPORTED_CONN_TYPES: tuple[str, ...] = ("sqlite", "postgres")
"""Airflow connection types :func:`database_url` can map (``postgresql`` is accepted as an alias)."""

# libpq connection parameters taken over from the connection's extra (``{"sslmode": "require"}``, ...).
_POSTGRES_EXTRA_PARAMS = (
    "sslmode",
    "sslrootcert",
    "sslcert",
    "sslkey",
    "connect_timeout",
    "application_name",
    "options",
)

_engines: dict[str, Engine] = {}
_engines_lock = threading.Lock()


def _after_fork_in_child() -> None:
    """Give a forked process (Airflow task runners, Celery pool workers) pools of its own.

    A pooled connection must never be used by two processes: the child drops the inherited ones without
    closing them (they still belong to the parent) and opens its own on first use.
    """
    global _engines_lock
    _engines_lock = threading.Lock()  # Another thread may have held it at the moment of the fork.
    for engine in _engines.values():
        engine.dispose(close=False)


os.register_at_fork(after_in_child=_after_fork_in_child)


def url_from_connection(
    conn_type: str | None,
    *,
    host: str | None = None,
    login: str | None = None,
    password: str | None = None,
    port: int | None = None,
    schema: str | None = None,
    extra: Mapping[str, Any] | None = None,
    conn_id: str = DEFAULT_CONN_ID,
) -> str:
    """Map the fields of an Airflow connection to a SQLAlchemy URL.

    :param conn_type: the connection type: ``sqlite`` or ``postgres`` (alias ``postgresql``).
    :param host: SQLite: the database file's path (relative paths are made absolute against the current
        directory); PostgreSQL: the server's host name.
    :param login: PostgreSQL user name.
    :param password: PostgreSQL password (escaped in the URL as needed).
    :param port: PostgreSQL port (the driver's default, 5432, when empty).
    :param schema: PostgreSQL database name.
    :param extra: the connection's extra; libpq parameters such as ``sslmode`` are passed on.
    :param conn_id: the connection's id, only used in error messages.
    :return: a URL string with the password in clear (pass it to :func:`get_engine`, never log it).
    :raises ConfigurationError: (a :class:`ValueError`) for an unsupported connection type or a missing
        required field.
    """
    kind = (conn_type or "").strip().lower()
    if kind == "sqlite":
        if not host or not host.strip():
            raise ConfigurationError(
                f"Airflow connection {conn_id!r} is of type 'sqlite' but has no host: set its host to the "
                "database file's path, e.g. /opt/airflow/demobank.db."
            )
        path = Path(host.strip()).expanduser().resolve()
        return URL.create("sqlite", database=str(path)).render_as_string(hide_password=False)
    if kind in ("postgres", "postgresql"):
        missing = [name for name, value in (("host", host), ("schema", schema)) if not value]
        if missing:
            raise ConfigurationError(
                f"Airflow connection {conn_id!r} is of type 'postgres' but has no {' or '.join(missing)}: "
                "set host to the server's name and schema to the database name (e.g. 'demobank')."
            )
        query = {key: str(extra[key]) for key in _POSTGRES_EXTRA_PARAMS if extra and extra.get(key) is not None}
        url = URL.create(
            "postgresql+psycopg2",
            username=login or None,
            password=password or None,
            host=host,
            port=int(port) if port else None,
            database=schema,
            query=query,
        )
        return url.render_as_string(hide_password=False)
    raise ConfigurationError(
        f"Airflow connection {conn_id!r} has conn_type {conn_type!r}, which the suite's database layer does "
        f"not support: use one of {', '.join(SUPPORTED_CONN_TYPES)} (sqlite: host = database file path; "
        "postgres: host, port, login, password, schema = database name)."
    )


def database_url(conn_id: str = DEFAULT_CONN_ID) -> str:
    """Resolve the suite's database URL.

    ``DEMOBANK_DB_URL``, when set and not empty, wins; otherwise the Airflow connection ``conn_id`` is read
    with :meth:`airflow.sdk.BaseHook.get_connection` (which also reads ``AIRFLOW_CONN_<CONN_ID>``) and
    mapped by :func:`url_from_connection`.

    :param conn_id: the Airflow connection id.
    :return: a SQLAlchemy URL string (contains the password: do not log it, see :func:`safe_url`).
    :raises ConfigurationError: (a :class:`ValueError`) when the connection is not defined, has an
        unsupported type or misses a required field.
    """
    override = os.environ.get(URL_ENV_VAR, "").strip()
    if override:
        return override

    return connection_url(conn_id)


def connection_url(conn_id: str) -> str:
    """The SQLAlchemy URL of an Airflow connection of type ``sqlite`` or ``postgres`` (no override).

    :raises ConfigurationError: the connection is not defined, of an unsupported type, or incomplete.
    """
    # Lazy: importing Airflow is slow, and tools that set DEMOBANK_DB_URL never need it.
    from airflow.sdk import BaseHook
    from airflow.sdk.exceptions import AirflowNotFoundException

    try:
        conn = BaseHook.get_connection(conn_id)
    except AirflowNotFoundException as exc:
        raise ConfigurationError(
            f"Airflow connection {conn_id!r} is not defined: add it to airflow_settings.yaml (and import "
            f"it), set AIRFLOW_CONN_{conn_id.upper()}, or set {URL_ENV_VAR} to a SQLAlchemy URL."
        ) from exc
    return url_from_connection(
        conn.conn_type,
        host=conn.host,
        login=conn.login,
        password=conn.password,
        port=conn.port,
        schema=conn.schema,
        extra=conn.extra_dejson,
        conn_id=conn_id,
    )


def safe_url(url: str) -> str:
    """Return ``url`` with its password masked, for messages and logs.

    :param url: a SQLAlchemy URL string.
    """
    return make_url(url).render_as_string(hide_password=True)


def _enable_wal(cursor: Any) -> None:
    """Switch the file to WAL mode (once per file; later connections find it in WAL already).

    Changing the journal mode needs the file to itself and SQLite does not call the busy handler for it, so a
    process opening a new database while another migrates it gets "database is locked" at once: wait and retry,
    up to the busy timeout.
    """
    import sqlite3
    import time

    if str(cursor.execute("PRAGMA journal_mode").fetchone()[0]).lower() == "wal":
        return
    deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            cursor.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as error:
            if "locked" not in str(error) or time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def _is_sqlite_file(url: URL) -> bool:
    return url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:")


def _configure_sqlite(engine: Engine) -> None:
    """Apply the pragmas and the ``BEGIN IMMEDIATE`` transaction mode to every SQLite connection."""

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Take transaction control away from the sqlite3 module: it would otherwise issue a deferred BEGIN
        # only before DML, and a deferred transaction that later writes fails at once (no busy wait) when
        # another process holds the write lock.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
            _enable_wal(cursor)
            cursor.execute("PRAGMA synchronous = NORMAL")
            cursor.execute("PRAGMA foreign_keys = ON")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")


def create_demobank_engine(url: str) -> Engine:
    """Create a new (uncached) engine for ``url`` with the suite's settings; prefer :func:`get_engine`.

    :param url: a SQLAlchemy URL string.
    """
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        if _is_sqlite_file(parsed):
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)  # type: ignore[arg-type]
        engine = create_engine(parsed, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000})
        _configure_sqlite(engine)
        return engine
    if backend == "postgresql":
        return create_engine(parsed, pool_pre_ping=True, pool_recycle=1800)
    return create_engine(parsed, pool_pre_ping=True)


def get_engine(url: str | None = None) -> Engine:
    """Return the process-wide engine for ``url`` (created on first use, then cached per URL).

    :param url: a SQLAlchemy URL string; ``None`` resolves it with :func:`database_url`.
    """
    resolved = url or database_url()
    engine = _engines.get(resolved)
    if engine is not None:
        return engine
    with _engines_lock:
        engine = _engines.get(resolved)
        if engine is None:
            engine = create_demobank_engine(resolved)
            _engines[resolved] = engine
        return engine


def dispose_engines() -> None:
    """Dispose of every cached engine and empty the cache (tests, and before forking)."""
    with _engines_lock:
        engines = list(_engines.values())
        _engines.clear()
    for engine in engines:
        engine.dispose()


@contextmanager
def session_scope(engine: Engine | None = None) -> Generator[Session]:
    """Open a session, commit it when the block ends, roll it back if the block raises.

    Objects stay usable after the block (``expire_on_commit=False``).

    :param engine: the engine to bind; ``None`` uses :func:`get_engine` with the configured URL.
    """
    session = Session(bind=engine or get_engine(), expire_on_commit=False)
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()
