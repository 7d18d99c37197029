"""Fixtures of the Data Factory's pipeline tests (imported by the test modules that use them).

A small core banking source, seeded by the real generator (a few thousand rows, a few hundred customers): on SQLite
in a temporary folder, and on the PostgreSQL test server (``tests/db/conftest.py``'s server discovery); fresh
warehouses and suite databases per test. A test module imports the ``*_fixture`` functions; the fixtures are named
without the suffix (``dbs``, ``sqlite_source``, ``postgres_source``, ``postgres_database``).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url

from demobank.data_factory.core_banking import DaySpec, seed
from demobank.data_factory.sources import source_write_engine
from demobank.db.engine import dispose_engines, get_engine
from demobank.db.migrate import upgrade
from tests.db.conftest import _find_postgres

CLEAN_DAY = date(2026, 1, 5)
"""1,500 rows, none malformed."""
FIVE_PERCENT_DAY = date(2026, 1, 6)
"""2,000 rows, 5% malformed (100 rows)."""
HALF_BAD_DAY = date(2026, 1, 7)
"""1,000 rows, 50% malformed (500 rows)."""
TEST_PLAN = (DaySpec(CLEAN_DAY, 1_500, 0.0), DaySpec(FIVE_PERCENT_DAY, 2_000, 0.05),
             DaySpec(HALF_BAD_DAY, 1_000, 0.5))
TEST_CUSTOMERS = 300


@dataclass(frozen=True)
class Databases:
    """One kind of database (``sqlite`` or ``postgres``): the seeded source, an empty warehouse, a migrated suite."""

    kind: str
    source_url: str
    warehouse_url: str
    suite_url: str

    @property
    def warehouse(self) -> Engine:
        return get_engine(self.warehouse_url)

    @property
    def suite(self) -> Engine:
        return get_engine(self.suite_url)


def _seed(url: str) -> None:
    engine = source_write_engine(url)
    try:
        seed(engine, TEST_PLAN, customers_count=TEST_CUSTOMERS)
    finally:
        engine.dispose()


@pytest.fixture(scope="session", name="sqlite_source")
def sqlite_source_fixture(tmp_path_factory: pytest.TempPathFactory) -> str:
    url = f"sqlite:///{tmp_path_factory.mktemp('core-banking') / 'core_banking.db'}"
    _seed(url)
    return url


@pytest.fixture(scope="session", name="postgres_source")
def postgres_source_fixture() -> Iterator[str]:
    admin_url = _find_postgres()
    name = f"demobank_test_source_{uuid.uuid4().hex[:10]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    try:
        _seed(url)
        yield url
    finally:
        dispose_engines()
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(name="postgres_database")
def postgres_database_fixture() -> Iterator[str]:
    """A new, empty PostgreSQL database, dropped after the test."""
    admin_url = _find_postgres()
    name = f"demobank_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    finally:
        dispose_engines()
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(name="dbs", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def dbs_fixture(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Databases]:
    """The seeded source, an empty warehouse and a migrated suite database, on SQLite and on PostgreSQL."""
    dispose_engines()
    if request.param == "sqlite":
        suite_url = f"sqlite:///{tmp_path / 'demobank.db'}"
        upgrade(suite_url)
        yield Databases("sqlite", request.getfixturevalue("sqlite_source"), f"sqlite:///{tmp_path / 'warehouse.db'}",
                        suite_url)
    else:
        source = request.getfixturevalue("postgres_source")
        warehouse = request.getfixturevalue("postgres_database")
        suite_url = f"sqlite:///{tmp_path / 'demobank.db'}"  # the suite database's own tests cover PostgreSQL
        upgrade(suite_url)
        yield Databases("postgres", source, warehouse, suite_url)
    dispose_engines()


def table_rows(engine: Engine, table: str, order_by: str) -> list[tuple]:
    """Every row of ``table`` (all columns), in a stable order; on PostgreSQL with the row version (``xmin``)."""
    extra = ", xmin::text" if engine.dialect.name == "postgresql" else ""
    with engine.connect() as connection:
        return [tuple(row) for row in connection.execute(text(f"SELECT *{extra} FROM {table} ORDER BY {order_by}"))]


def count(engine: Engine, sql: str, **params: object) -> int:
    with engine.connect() as connection:
        return int(connection.execute(text(sql), params).scalar() or 0)
