"""Alembic environment of the suite's database, driven by :mod:`demobank.db.migrate` (no alembic.ini).

:func:`demobank.db.migrate.upgrade` passes an open connection, already inside a transaction that holds the
migration lock, as ``config.attributes["connection"]``; every migration runs in that transaction. Run
directly (``alembic -c ...``), the URL comes from the ``sqlalchemy.url`` option or the ``demobank_db``
connection.
"""

from __future__ import annotations

from typing import Any

from alembic import context
from sqlalchemy import DateTime
from sqlalchemy.engine import Connection

from demobank.db.engine import get_engine
from demobank.db.migrate import VERSION_TABLE
from demobank.db.models import Base, UTCDateTime

config = context.config
target_metadata = Base.metadata


def render_item(type_: str, obj: Any, autogen_context: Any) -> str | bool:
    """Render the suite's custom column types as plain SQLAlchemy types in generated migrations."""
    if type_ == "type" and isinstance(obj, UTCDateTime):
        return repr(DateTime(timezone=True)).replace("DateTime", "sa.DateTime", 1)
    return False


def _configure(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        version_table=VERSION_TABLE,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
        render_item=render_item,
    )


def run_migrations_offline() -> None:
    """Emit SQL to stdout instead of running it (``alembic upgrade --sql``)."""
    context.configure(
        url=config.get_main_option("sqlalchemy.url"),
        target_metadata=target_metadata,
        version_table=VERSION_TABLE,
        literal_binds=True,
        render_item=render_item,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    """Run the migrations on the connection handed over by the caller, or on a new one."""
    connection = config.attributes.get("connection")
    if connection is not None:
        _configure(connection)
        with context.begin_transaction():
            context.run_migrations()
        return
    engine = get_engine(config.get_main_option("sqlalchemy.url") or None)
    with engine.connect() as new_connection:
        _configure(new_connection)
        with context.begin_transaction():
            context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
