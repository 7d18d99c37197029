"""Databases of the Data Factory (the core banking source, the warehouse): connections, engines, Asset URIs.

Connections (Airflow connections, so secrets stay in Airflow's connections or secrets backend):

* ``core_banking`` -- the source: ``sqlite`` (host = the file, ``make run``) or ``postgres`` (scaled out);
* ``warehouse`` -- the target: the same two kinds.

Both map to SQLAlchemy URLs with :func:`demobank.db.engine.connection_url` (the suite database's rules).

**Asset URIs.** Every table the pipelines read or write is an Airflow Asset whose URI names the database and
the table, in the form Airflow 3.3.2 stores (checked in ``tests/data_factory/test_sources.py``):

* PostgreSQL: ``postgres://HOST:PORT/DATABASE/SCHEMA/TABLE``. The postgres provider's normaliser requires the
  three path parts, adds the default port 5432 and rewrites ``postgresql://`` to ``postgres://``;
* SQLite: ``sqlite:/ABSOLUTE/PATH/FILE.db/TABLE``. No provider registers the ``sqlite`` scheme, so Airflow only
  applies its generic normalisation, which turns ``sqlite:///path`` (an empty authority) into ``sqlite:/path``
  and mangles SQLAlchemy's four-slash form (``sqlite:////tmp/x.db`` becomes ``sqlite://tmp/x.db``, with ``tmp``
  as the host): we declare the normal form ``sqlite:/…`` so that what we declare is what Airflow stores and
  reports to Monte Carlo;
* the suite's own database (quality record, outbox): ``demobank://…`` names (see :mod:`demobank.events
  .outbox_asset`), since they are the platform's bookkeeping rather than bank data.

DAG files must not read connections when they are parsed, so the URIs come from the environment:
``DEMOBANK_CORE_BANKING_ASSET_URI`` / ``DEMOBANK_WAREHOUSE_ASSET_URI`` (the database's base URI, e.g.
``postgres://postgres:5432/warehouse/public``; ``docker-compose.yaml`` sets them), else the SQLite files
``DEMOBANK_CORE_BANKING_DB`` / ``DEMOBANK_WAREHOUSE_DB`` (``make run`` sets them), else ``.airflow/core_banking.db``
and ``.airflow/warehouse.db`` under the current directory. At run time :func:`check_declared_uri` compares the
declared base with the connection's and warns when they differ (the lineage would name the wrong database).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from sqlalchemy import Engine, create_engine
from sqlalchemy.engine import make_url

from demobank.exceptions import ConfigurationError

log = logging.getLogger(__name__)

CORE_BANKING_CONN_ID = "core_banking"
WAREHOUSE_CONN_ID = "warehouse"

_DEFAULT_FILES = {CORE_BANKING_CONN_ID: "core_banking.db", WAREHOUSE_CONN_ID: "warehouse.db"}
_ENV = {
    CORE_BANKING_CONN_ID: ("DEMOBANK_CORE_BANKING_ASSET_URI", "DEMOBANK_CORE_BANKING_DB"),
    WAREHOUSE_CONN_ID: ("DEMOBANK_WAREHOUSE_ASSET_URI", "DEMOBANK_WAREHOUSE_DB"),
}

QUALITY_RECORD_URI = "demobank://data-factory/quality-record"
"""The Asset URI of the data quality record (tables ``data_quality_*`` of the suite's database)."""


class SourceUnavailableError(ConfigurationError):
    """A database or table the pipeline reads is missing or unreachable (the message says which and why)."""


def source_read_engine(url: str) -> Engine:
    """An engine that only reads: SQLite opened read-only (a missing file is an error, not a new empty
    database), PostgreSQL with the default settings. The caller disposes of it."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        path = parsed.database or ""
        if not path or path == ":memory:":
            raise ConfigurationError(f"the SQLite source URL {url!r} names no file")
        return create_engine(f"sqlite:///file:{Path(path).resolve()}?mode=ro&uri=true", connect_args={"timeout": 30})
    return create_engine(parsed, pool_pre_ping=True)


def source_write_engine(url: str) -> Engine:
    """An engine for the generator (``python -m demobank.data_factory.core_banking seed``)."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database:
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        return create_engine(parsed, connect_args={"timeout": 30})
    return create_engine(parsed)


# -- Asset URIs ------------------------------------------------------------------------------------------------


def base_uri_for_url(url: str, schema: str = "public") -> str:
    """The Asset URI prefix of a database: ``sqlite:/path/file.db`` or ``postgres://host:port/database/schema``."""
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        return f"sqlite:{Path(parsed.database or '').resolve()}"
    if backend == "postgresql":
        return f"postgres://{parsed.host or 'localhost'}:{parsed.port or 5432}/{parsed.database}/{schema}"
    raise ConfigurationError(f"no Asset URI form for a {backend} database: use SQLite or PostgreSQL")


def declared_base_uri(conn_id: str, environ: dict[str, str] | None = None) -> str:
    """The Asset URI prefix the DAG files declare for ``core_banking`` or ``warehouse`` (no I/O: environment
    only, see the module docstring)."""
    env = os.environ if environ is None else environ
    uri_var, file_var = _ENV[conn_id]
    explicit = env.get(uri_var, "").strip().rstrip("/")
    if explicit:
        if explicit.startswith("postgresql://"):
            explicit = "postgres://" + explicit.removeprefix("postgresql://")
        return explicit
    path = env.get(file_var, "").strip() or str(Path(".airflow") / _DEFAULT_FILES[conn_id])
    return f"sqlite:{Path(path).expanduser().resolve()}"


def table_uri(base: str, table: str) -> str:
    """The Asset URI of ``table`` in the database whose prefix is ``base``."""
    return f"{base.rstrip('/')}/{table}"


def check_declared_uri(conn_id: str, url: str) -> str:
    """Compare the declared Asset URI prefix of ``conn_id`` with the one of its connection; warn if they differ.

    :return: the declared prefix.
    """
    declared = declared_base_uri(conn_id)
    try:
        actual = base_uri_for_url(url)
    except ConfigurationError:
        return declared
    if _normal(actual) != _normal(declared):
        log.warning(
            "the Asset URIs declared for connection %r start with %s, but the connection points at %s: the "
            "lineage reported for this run names the declared tables. Set %s to %s (or fix the connection).",
            conn_id, declared, actual, _ENV[conn_id][0], actual,
        )  # fmt: skip
    return declared


def _normal(uri: str) -> str:
    return uri.rstrip("/").replace(":5432/", "/")
