"""Fixtures for the suite's database: a fresh SQLite file and a fresh PostgreSQL database per test.

PostgreSQL: the server on 127.0.0.1:5432 (trust auth, user root or postgres), or the admin URL in
``DEMOBANK_TEST_POSTGRES_URL``. Each test gets a uniquely named database, dropped afterwards. When the server
is unreachable the PostgreSQL tests fail under CI (``CI=true``) and are skipped elsewhere.
"""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import OperationalError

from demobank.db.engine import URL_ENV_VAR, dispose_engines

# database_url() imports Airflow: keep its home (config, logs) out of ~/airflow when no outer conftest set one.
os.environ.setdefault("AIRFLOW_HOME", str(Path(tempfile.gettempdir()) / f"demobank-tests-airflow-{os.getuid()}"))

_PG_ADMIN_CANDIDATES = (
    "postgresql+psycopg2://root@127.0.0.1:5432/postgres",
    "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres",
)
_pg_admin_url: str | None = None
_pg_error: str | None = None


def _find_postgres() -> str:
    """Return a working admin URL for the test server, or fail/skip with what was tried."""
    global _pg_admin_url, _pg_error
    if _pg_admin_url is None and _pg_error is None:
        candidates = (
            [os.environ["DEMOBANK_TEST_POSTGRES_URL"]]
            if os.environ.get("DEMOBANK_TEST_POSTGRES_URL")
            else list(_PG_ADMIN_CANDIDATES)
        )
        errors = []
        for candidate in candidates:
            engine = create_engine(candidate, connect_args={"connect_timeout": 3})
            try:
                with engine.connect() as connection:
                    connection.execute(text("SELECT 1"))
                _pg_admin_url = candidate
                break
            except OperationalError as exc:
                errors.append(f"{make_url(candidate).render_as_string(hide_password=True)}: {exc.orig}")
            finally:
                engine.dispose()
        else:
            _pg_error = "; ".join(errors)
    if _pg_admin_url is None:
        message = (
            f"PostgreSQL test server unreachable ({_pg_error}). Start PostgreSQL on 127.0.0.1:5432 with trust "
            "auth for user root or postgres, or set DEMOBANK_TEST_POSTGRES_URL to an admin URL."
        )
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    return _pg_admin_url


@pytest.fixture(autouse=True)
def _isolated_engines(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No test sees another's cached engines or a DEMOBANK_DB_URL from the environment."""
    monkeypatch.delenv(URL_ENV_VAR, raising=False)
    dispose_engines()
    yield
    dispose_engines()


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """URL of a SQLite file that does not exist yet."""
    return URL.create("sqlite", database=str(tmp_path / "demobank.db")).render_as_string(hide_password=False)


@pytest.fixture
def postgres_admin_url() -> str:
    """Admin URL (database ``postgres``) of the PostgreSQL test server."""
    return _find_postgres()


@pytest.fixture
def postgres_url(postgres_admin_url: str) -> Iterator[str]:
    """URL of a new, empty, uniquely named PostgreSQL database, dropped after the test."""
    name = f"demobank_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(postgres_admin_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
        yield make_url(postgres_admin_url).set(database=name).render_as_string(hide_password=False)
    finally:
        dispose_engines()
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest) -> str:
    """A fresh, empty database of each supported kind."""
    return request.getfixturevalue(f"{request.param}_url")


@pytest.fixture
def migrated_url(db_url: str) -> str:
    """A fresh database of each kind, migrated to head."""
    from demobank.db.migrate import upgrade

    upgrade(db_url)
    return db_url


@pytest.fixture
def cli_env(tmp_path: Path) -> dict[str, str]:
    """Environment for running ``python -m demobank.db`` in a subprocess (no Airflow import needed)."""
    env = {key: value for key, value in os.environ.items() if key != URL_ENV_VAR}
    env["PYTHONPATH"] = os.pathsep.join(
        filter(None, [str(Path(__file__).resolve().parents[2] / "src"), env.get("PYTHONPATH")])
    )
    env.setdefault("AIRFLOW_HOME", str(tmp_path / "airflow-home"))
    return env
