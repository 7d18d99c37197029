"""Versioned schema migrations of the suite's database (Alembic, configured in code, no alembic.ini).

The migration scripts live in this package (``demobank/db/migrations``), so an installed package can
migrate its database anywhere: ``python -m demobank.db upgrade`` or :func:`upgrade`.

:func:`upgrade` is safe to run from several processes at once (Airflow's init container, ``make run``,
tests): it takes a lock for the whole upgrade (a PostgreSQL advisory lock; SQLite's write lock through
``BEGIN IMMEDIATE``) and then migrates from whatever revision it finds, so a second run is a no-op.
The revision is recorded in the table ``demobank_alembic_version``, not ``alembic_version``, so that the
suite's tables could even share a database with Airflow's without clashing with Airflow's own migrations.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from demobank.db.engine import create_demobank_engine, database_url, get_engine, safe_url
from demobank.db.models import Base
from demobank.db.seed_marker import MARKER_TABLE

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).resolve().with_name("migrations")
"""The Alembic script directory shipped inside the package."""

VERSION_TABLE = "demobank_alembic_version"
"""Table in which Alembic records the suite's schema revision."""

ADVISORY_LOCK_KEY = 0x64656D6F62616E6B  # "demobank" in ASCII, as a 64-bit key.
"""PostgreSQL advisory lock that serialises concurrent upgrades."""


@dataclass(frozen=True)
class UpgradeResult:
    """What :func:`upgrade` did.

    :ivar url: the database's URL with its password masked.
    :ivar previous: the revision before the upgrade (``None`` for an empty database).
    :ivar current: the revision after the upgrade.
    """

    url: str
    previous: str | None
    current: str | None

    @property
    def changed(self) -> bool:
        """Whether any migration ran."""
        return self.previous != self.current


def alembic_config(url: str | None = None) -> Config:
    """Build the Alembic configuration in code.

    :param url: the database URL recorded as ``sqlalchemy.url`` (optional: :func:`upgrade` hands over a
        connection instead).
    """
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("path_separator", "os")
    config.set_main_option("version_table", VERSION_TABLE)
    if url:
        config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def head_revision() -> str:
    """Return the newest revision of the migration scripts.

    :raises RuntimeError: when the scripts have several heads (two migrations with the same parent).
    """
    heads = ScriptDirectory.from_config(alembic_config()).get_heads()
    if len(heads) != 1:
        raise RuntimeError(
            f"the migrations in {MIGRATIONS_DIR} have {len(heads)} heads {sorted(heads)}: exactly one is "
            "expected; make one migration's down_revision the other's revision."
        )
    return heads[0]


def _migration_context(connection: Connection, **opts: Any) -> MigrationContext:
    return MigrationContext.configure(connection, opts={"version_table": VERSION_TABLE, **opts})


def _current(connection: Connection) -> str | None:
    return _migration_context(connection).get_current_revision()


def current_revision(url: str | None = None) -> str | None:
    """Return the revision the database is at, ``None`` for a database that was never migrated.

    :param url: a SQLAlchemy URL; ``None`` resolves it with :func:`demobank.db.engine.database_url`.
    """
    with get_engine(url).connect() as connection:
        return _current(connection)


def upgrade(url: str | None = None, revision: str = "head") -> UpgradeResult:
    """Upgrade the database to ``revision`` (idempotent; safe to call from several processes at once).

    :param url: a SQLAlchemy URL; ``None`` resolves it with :func:`demobank.db.engine.database_url`.
    :param revision: the target revision (``head`` for the newest).
    :return: the revisions before and after.
    """
    resolved = url or database_url()
    engine = get_engine(resolved)
    config = alembic_config(resolved)
    with engine.connect() as connection, connection.begin():
        if connection.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": ADVISORY_LOCK_KEY})
        # On SQLite the transaction began with BEGIN IMMEDIATE (see demobank.db.engine): it holds the write
        # lock, so a concurrent upgrade waits here and then finds the schema at head.
        previous = _current(connection)
        config.attributes["connection"] = connection
        command.upgrade(config, revision)
        current = _current(connection)
    result = UpgradeResult(url=safe_url(resolved), previous=previous, current=current)
    log.info("demobank database %s: %s -> %s", result.url, previous, current)
    return result


def schema_diff(url: str | None = None) -> list[Any]:
    """Compare the migrated schema with the models (Alembic's autogenerate comparison).

    :param url: a SQLAlchemy URL; ``None`` resolves it with :func:`demobank.db.engine.database_url`.
    :return: the differences; empty when the migrations and the models agree.
    """
    with get_engine(url).connect() as connection:
        context = _migration_context(connection, compare_type=True, target_metadata=Base.metadata,
                                     include_name=_not_the_seed_marker)
        return compare_metadata(context, Base.metadata)


def _not_the_seed_marker(name: str | None, type_: str, _parent_names: Any) -> bool:
    """The demo seeds' marker table (:mod:`demobank.db.seed_marker`) is not part of the suite's schema."""
    return not (type_ == "table" and name == MARKER_TABLE)


def ensure_database(url: str | None = None) -> bool:
    """Create the database named in ``url`` if it does not exist yet.

    PostgreSQL: connects to the server's ``postgres`` database as the URL's user (who needs the CREATEDB
    privilege) and runs ``CREATE DATABASE``; a database created concurrently by another process counts as
    existing. SQLite: creates the file's folder (SQLite creates the file itself).

    :param url: a SQLAlchemy URL; ``None`` resolves it with :func:`demobank.db.engine.database_url`.
    :return: whether a database was created.
    """
    resolved = make_url(url or database_url())
    backend = resolved.get_backend_name()
    if backend == "sqlite":
        if resolved.database in (None, "", ":memory:"):
            return False
        path = Path(resolved.database)
        existed = path.exists()
        path.parent.mkdir(parents=True, exist_ok=True)
        return not existed
    if backend != "postgresql":
        raise ValueError(
            f"cannot create a database for {safe_url(str(resolved))}: only sqlite and postgresql URLs are "
            "supported; create the database by hand."
        )
    name = resolved.database
    if not name:
        raise ValueError(f"the URL {safe_url(str(resolved))} names no database: add /<database> to it.")
    admin = create_demobank_engine(resolved.set(database="postgres").render_as_string(hide_password=False))
    try:
        with admin.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            exists = connection.execute(
                text("SELECT 1 FROM pg_database WHERE datname = :name"), {"name": name}
            ).scalar()
            if exists:
                return False
            quoted = connection.dialect.identifier_preparer.quote(name)
            try:
                connection.execute(text(f"CREATE DATABASE {quoted}"))
            except DBAPIError as exc:
                if getattr(exc.orig, "pgcode", None) in ("42P04", "23505"):  # Created meanwhile by another.
                    return False
                raise
            log.info("created database %s", name)
            return True
    finally:
        admin.dispose()
