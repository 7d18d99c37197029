"""Seed markers: a demo-data seed writes only into a database that it created, never into someone else's.

A seed that finds a database holding tables it does not know cannot tell a forgotten demo database from a bank's
real one, so it refuses, and says which database, which tables and what to do. When a seed first writes into a
database (an empty one, or one holding only the tables it expects), it records itself in the marker table
``demobank_seed_marker`` (one row per seeder); later runs find the row and may seed again (each seed is
idempotent). The marker table is the seeders' own: no pipeline reads it, and the suite's schema check ignores it.

Used by the core banking generator (:func:`demobank.data_factory.core_banking.seed`, which drops and re-creates its
tables) and the suite's demo customers (:func:`demobank.db.seed.seed_demo_customers`).
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from datetime import UTC, datetime
from enum import StrEnum

from sqlalchemy import Column, Connection, Engine, MetaData, String, Table, inspect, select

from demobank.db.engine import safe_url
from demobank.exceptions import DemoBankError

MARKER_TABLE = "demobank_seed_marker"
"""The table in which each seed records that it created (or first seeded) the database."""

marker_table = Table(
    MARKER_TABLE,
    MetaData(),
    Column("seeder", String(64), primary_key=True),
    Column("marked_at", String(40), nullable=False),  # ISO 8601, UTC: the same text on SQLite and PostgreSQL
)

_MAX_LISTED_TABLES = 20


class ForeignDatabaseError(DemoBankError, RuntimeError):
    """A seed was pointed at a database that it did not create: it wrote nothing and dropped nothing."""


class Claim(StrEnum):
    """How :func:`claim_for_seeding` found the database."""

    MARKED = "marked"
    """The seeder's marker was already there (it seeded this database before)."""
    CLAIMED = "claimed"
    """No marker and nothing foreign: the marker was written now."""
    ADOPTED = "adopted"
    """No marker, but the ``adopt`` test recognised the seeder's own earlier work: the marker was written now."""


def marked_seeders(connection: Connection) -> set[str]:
    """The seeders recorded in the database's marker table (empty without one)."""
    if MARKER_TABLE not in inspect(connection).get_table_names():
        return set()
    return set(connection.scalars(select(marker_table.c.seeder)))


def claim_for_seeding(
    engine: Engine,
    seeder: str,
    *,
    own_tables: Collection[str] = (),
    adopt: Callable[[Connection, set[str]], bool] | None = None,
) -> Claim:
    """Make sure that ``seeder`` may write into this database, and mark the database as the seeder's.

    The database is the seeder's when it carries the seeder's marker, or holds no tables besides ``own_tables``
    (tables the seeder expects to find, e.g. the suite's migrated schema) and the marker table, or when ``adopt``
    recognises it (a database seeded before markers existed). Otherwise nothing is written.

    :param engine: the database.
    :param seeder: the seed's name, recorded in the marker (e.g. ``core_banking``).
    :param own_tables: tables that do not make the database foreign.
    :param adopt: ``adopt(connection, tables)`` says whether an unmarked database with other tables is the
        seeder's own earlier work.
    :return: how the database was found.
    :raises ForeignDatabaseError: naming the database, the foreign tables and what to do.
    """
    with engine.begin() as connection:
        if seeder in marked_seeders(connection):
            return Claim.MARKED
        tables = set(inspect(connection).get_table_names())
        foreign = sorted(tables - set(own_tables) - {MARKER_TABLE})
        outcome = Claim.CLAIMED
        if foreign:
            if adopt is None or not adopt(connection, tables):
                raise ForeignDatabaseError(_refusal(engine, seeder, foreign))
            outcome = Claim.ADOPTED
        marker_table.create(connection, checkfirst=True)
        connection.execute(marker_table.insert().values(seeder=seeder, marked_at=datetime.now(UTC).isoformat()))
        return outcome


def _refusal(engine: Engine, seeder: str, foreign: list[str]) -> str:
    listed = ", ".join(foreign[:_MAX_LISTED_TABLES])
    if len(foreign) > _MAX_LISTED_TABLES:
        listed += f" and {len(foreign) - _MAX_LISTED_TABLES} more"
    where = safe_url(engine.url.render_as_string(hide_password=False))
    return (
        f"refusing to seed {where} with the {seeder} demo data: the database holds {len(foreign)} table(s) that "
        f"this seed did not create ({listed}) and no seed marker (table {MARKER_TABLE}), so it may be a real "
        "database; nothing was written or dropped. Seed an empty database instead (a new database name in the "
        "connection, or --url), or leave demo seeding off (docker compose: DEMOBANK_DEMO_MODE=false, the "
        "default). Only if those tables are disposable: drop them yourself, then seed again."
    )


__all__ = ["MARKER_TABLE", "Claim", "ForeignDatabaseError", "claim_for_seeding", "marked_seeders", "marker_table"]
