"""database_url(), get_engine() and session_scope()."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from sqlalchemy import select, text
from sqlalchemy.engine import make_url

from demobank.db.engine import (
    SQLITE_BUSY_TIMEOUT_MS,
    URL_ENV_VAR,
    database_url,
    get_engine,
    safe_url,
    session_scope,
    url_from_connection,
)
from demobank.db.models import DemoCustomer
from demobank.exceptions import ConfigurationError

CONN_ENV = "AIRFLOW_CONN_DEMOBANK_DB"


def test_database_url_maps_sqlite_connection_to_absolute_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(CONN_ENV, json.dumps({"conn_type": "sqlite", "host": "data/demobank.db"}))

    url = make_url(database_url())

    assert url.get_backend_name() == "sqlite"
    assert url.database == str(tmp_path / "data" / "demobank.db")


def test_database_url_maps_postgres_connection(monkeypatch: pytest.MonkeyPatch) -> None:
    conn = {
        "conn_type": "postgres",
        "host": "postgres",
        "port": 5433,
        "login": "airflow",
        "password": "p@ss/w:rd%",
        "schema": "demobank",
        "extra": {"sslmode": "require"},
    }
    monkeypatch.setenv(CONN_ENV, json.dumps(conn))

    url = make_url(database_url())

    assert url.drivername == "postgresql+psycopg2"
    assert (url.host, url.port, url.username, url.database) == ("postgres", 5433, "airflow", "demobank")
    assert url.password == "p@ss/w:rd%"  # Escaped in the string, intact once parsed.
    assert url.query == {"sslmode": "require"}


def test_database_url_accepts_postgres_uri_form(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(CONN_ENV, "postgres://airflow:secret@db.internal:5432/demobank")

    assert database_url() == "postgresql+psycopg2://airflow:secret@db.internal:5432/demobank"


def test_database_url_rejects_unsupported_type_with_helpful_message(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(CONN_ENV, json.dumps({"conn_type": "mysql", "host": "db", "schema": "demobank"}))

    with pytest.raises(ValueError, match=r"'demobank_db' has conn_type 'mysql'") as info:
        database_url()

    assert isinstance(info.value, ConfigurationError)
    assert "sqlite, postgres" in str(info.value)


def test_database_url_explains_a_missing_connection(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AIRFLOW_CONN_DEMOBANK_NO_SUCH_DB", raising=False)

    with pytest.raises(ConfigurationError, match="AIRFLOW_CONN_DEMOBANK_NO_SUCH_DB"):
        database_url("demobank_no_such_db")


def test_env_override_wins_over_connection(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(CONN_ENV, json.dumps({"conn_type": "mysql"}))
    monkeypatch.setenv(URL_ENV_VAR, "sqlite:////tmp/override.db")

    assert database_url() == "sqlite:////tmp/override.db"


@pytest.mark.parametrize(
    ("conn_type", "fields", "message"),
    [
        ("sqlite", {}, "has no host"),
        ("postgres", {"host": "db"}, "has no schema"),
        ("postgres", {"schema": "demobank"}, "has no host"),
        (None, {}, "conn_type None"),
    ],
)
def test_url_from_connection_rejects_incomplete_connections(
    conn_type: str | None, fields: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigurationError, match=message):
        url_from_connection(conn_type, **fields)


def test_safe_url_masks_password() -> None:
    shown = safe_url("postgresql+psycopg2://u:topsecret@h/db")

    assert "topsecret" not in shown
    assert shown == "postgresql+psycopg2://u:***@h/db"


def test_sqlite_engine_uses_wal_foreign_keys_and_busy_timeout(sqlite_url: str) -> None:
    engine = get_engine(sqlite_url)
    with engine.connect() as connection:
        assert connection.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert connection.execute(text("PRAGMA foreign_keys")).scalar() == 1
        assert connection.execute(text("PRAGMA busy_timeout")).scalar() == SQLITE_BUSY_TIMEOUT_MS


@pytest.mark.postgres
def test_postgres_engine_pings_pooled_connections(postgres_url: str) -> None:
    assert get_engine(postgres_url).pool._pre_ping is True


def test_get_engine_is_cached_per_url(tmp_path: Path) -> None:
    first = f"sqlite:///{tmp_path / 'a.db'}"
    second = f"sqlite:///{tmp_path / 'b.db'}"

    assert get_engine(first) is get_engine(first)
    assert get_engine(first) is not get_engine(second)


def test_get_engine_without_url_uses_env_override(monkeypatch: pytest.MonkeyPatch, sqlite_url: str) -> None:
    monkeypatch.setenv(URL_ENV_VAR, sqlite_url)

    assert str(get_engine().url) == sqlite_url


def test_session_scope_commits_and_rolls_back(migrated_url: str) -> None:
    engine = get_engine(migrated_url)
    customer = {
        "full_name": "Ada Lovelace",
        "phone": "+12025550100",
        "email": "ada@example.com",
        "currency": "GBP",
    }
    with session_scope(engine) as session:
        session.add(DemoCustomer(customer_id="C-1", **customer))
    with pytest.raises(RuntimeError, match="boom"), session_scope(engine) as session:
        session.add(DemoCustomer(customer_id="C-2", **customer))
        session.flush()
        raise RuntimeError("boom")

    with session_scope(engine) as session:
        ids = session.scalars(select(DemoCustomer.customer_id).order_by(DemoCustomer.customer_id)).all()
    assert ids == ["C-1"]


def test_forked_child_does_not_reuse_parent_connections(sqlite_url: str) -> None:
    engine = get_engine(sqlite_url)
    with engine.connect() as connection:
        connection.execute(text("SELECT 1"))
    assert engine.pool.checkedin() == 1

    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # Child: report what the pool holds, then use the engine.
        try:
            inherited = engine.pool.checkedin()
            with engine.connect() as connection:
                value = connection.execute(text("SELECT 41 + 1")).scalar()
            os.write(write, f"{inherited} {value}".encode())
        finally:
            os._exit(0)
    os.close(write)
    os.waitpid(pid, 0)
    report = os.read(read, 100).decode()
    os.close(read)

    assert report == "0 42"
    with engine.connect() as connection:  # The parent's pooled connection still works.
        assert connection.execute(text("SELECT 1")).scalar() == 1
