"""The compose init service (``python -m demobank.compose_init``), run for real against local PostgreSQL databases
with the environment that docker-compose.yaml gives the service (rendered by ``docker-compose config``), only the
databases' addresses moved to the test server: on databases that hold someone else's tables, run on every `up`, it
drops nothing and overwrites nothing edited in the UI; with demo seeding asked for, the seed refuses the foreign
database by name and the init fails loudly.

One test walks the whole story: three runs of the init (each runs ``airflow db migrate`` as the service does, about
4 s; the first on an empty metadata database, the later ones find it migrated).
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.engine import make_url

from demobank.db.engine import safe_url
from tests.compose_support import REQUIRED_SECRETS, render
from tests.conftest import PROJECT_DIR
from tests.db.conftest import _find_postgres
from tests.events.conftest_moto import MotoAws, moto_aws_fixture  # noqa: F401 - registers the moto_aws fixture

pytestmark = pytest.mark.postgres

INIT_COMMAND = [sys.executable, "-m", "demobank.compose_init"]
COMPOSE_DATABASES = ("airflow", "demobank", "core_banking", "warehouse")
"""The PostgreSQL databases that docker-compose.yaml names."""

FOREIGN_TABLES: dict[str, dict[str, list[tuple[Any, ...]]]] = {
    # What a bank's own databases hold: a core banking `customers` table has the generator's table name.
    "core_banking": {"customers": [("C-1", "Ada Real"), ("C-2", "Grace Real")],
                     "general_ledger": [("GL-1", "opening balance")]},
    "warehouse": {"finance_reports": [("R-1", "Q3 close")]},
    "demobank": {"branch_notes": [("N-1", "keep me")]},
}

EDITED_TWILIO = {"host": None, "login": "AC" + "1" * 32, "password": "real-auth-token",
                 "extra": {"from_number": "+14155550100"}}

_EDIT_IN_THE_UI = f"""
import json
from airflow.models.connection import Connection
from airflow.models.pool import Pool
from airflow.models.variable import Variable
from airflow.utils.session import create_session
edited = json.loads({json.dumps(json.dumps(EDITED_TWILIO))})
with create_session() as session:
    session.add(Connection(conn_id="twilio_default", conn_type="twilio", host=edited["host"], login=edited["login"],
                           password=edited["password"], extra=json.dumps(edited["extra"])))
Pool.create_or_update_pool(name="connect_sms", slots=3, description="edited", include_deferred=False)
Variable.set("demobank_environment", "production")
"""

_PROBE = """
import json
from airflow.models.connection import Connection
from airflow.models.pool import Pool
from airflow.models.variable import Variable
from airflow.utils.session import create_session
with create_session() as session:
    connections = {c.conn_id: {"host": c.host, "login": c.login, "password": c.password, "extra": c.extra_dejson}
                   for c in session.query(Connection)}
    pools = {p.pool: p.slots for p in session.query(Pool)}
print(json.dumps({"connections": connections, "pools": pools, "environment": Variable.get("demobank_environment")}))
"""


@pytest.fixture(name="databases")
def databases_fixture() -> Iterator[dict[str, str]]:
    """A uniquely named, empty PostgreSQL database for each database of docker-compose.yaml: {compose name: URL}."""
    admin_url = make_url(_find_postgres())
    prefix = f"demobank_test_init_{uuid.uuid4().hex[:8]}"
    names = {name: f"{prefix}_{name}" for name in COMPOSE_DATABASES}
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            for name in names.values():
                connection.execute(text(f'CREATE DATABASE "{name}"'))
        yield {compose: admin_url.set(database=name).render_as_string(hide_password=False)
               for compose, name in names.items()}
    finally:
        with admin.connect() as connection:
            for name in names.values():
                connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def _relocated(init_env: dict[str, str], databases: dict[str, str]) -> dict[str, str]:
    """The entries of the init service's environment that name the compose PostgreSQL service, pointed at the
    test server's databases instead (same keys, same drivers, same database roles)."""
    moved: dict[str, str] = {}
    for key, value in init_env.items():
        if value.startswith(("postgresql", "db+postgresql")):
            prefix = "db+" if value.startswith("db+") else ""
            url = make_url(value.removeprefix(prefix))
            assert url.host == "postgres", (key, url.host)
            target = make_url(databases[url.database])
            moved[key] = prefix + url.set(host=target.host, port=target.port, username=target.username,
                                          password=None, database=target.database).render_as_string(False)
        elif value.startswith("{") and json.loads(value).get("conn_type") == "postgres":
            connection = json.loads(value)
            assert connection["host"] == "postgres", key
            target = make_url(databases[connection["schema"]])
            connection.update(host=target.host, port=target.port, login=target.username, password=None,
                              schema=target.database)
            moved[key] = json.dumps(connection)
    return moved


def _script_env(demo: bool, databases: dict[str, str], home: Path, moto_url: str | None = None) -> dict[str, str]:
    """docker-compose.yaml's environment for airflow-init (demo mode on or off), its databases, home and moto moved
    to this machine."""
    variables = {**REQUIRED_SECRETS, "DEMOBANK_DEMO_MODE": "true" if demo else "false"}
    init_env = {key: str(value) for key, value in render(variables=variables)["services"]["airflow-init"]
                ["environment"].items()}
    overrides = _relocated(init_env, databases)
    assert set(overrides) == {"AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", "AIRFLOW__CELERY__RESULT_BACKEND",
                              "AIRFLOW_CONN_DEMOBANK_DB", "AIRFLOW_CONN_CORE_BANKING", "AIRFLOW_CONN_WAREHOUSE",
                              "DEMOBANK_SANDBOX_CORE_BANKING_URL"}
    overrides["AIRFLOW_HOME"] = str(home / "airflow-home")
    overrides["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"] = str(home / "auth" / "passwords.json")
    if moto_url is not None:
        overrides["DEMOBANK_MOTO_URL"] = moto_url
    assert set(overrides) <= set(init_env), "the test may only move what docker-compose.yaml sets"
    (home / "auth").mkdir(exist_ok=True)
    basics = {key: os.environ[key] for key in ("HOME", "LANG") if key in os.environ}
    # The image's python and airflow: this machine's virtualenv.
    basics["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    return {**basics, **init_env, **overrides}


def _run_init(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(INIT_COMMAND, cwd=PROJECT_DIR, env=env, capture_output=True, text=True, timeout=600,
                          check=False)


def _python(env: dict[str, str], code: str) -> str:
    result = subprocess.run([sys.executable, "-c", code], cwd=PROJECT_DIR, env=env, capture_output=True, text=True,
                            timeout=300, check=False)
    assert result.returncode == 0, result.stderr
    return result.stdout


def _add_foreign_tables(databases: dict[str, str]) -> None:
    for database, tables in FOREIGN_TABLES.items():
        engine = create_engine(databases[database])
        with engine.begin() as connection:
            for table, rows in tables.items():
                connection.execute(text(f"CREATE TABLE {table} (id text PRIMARY KEY, body text NOT NULL)"))
                connection.execute(text(f"INSERT INTO {table} VALUES (:id, :body)"),
                                   [{"id": row[0], "body": row[1]} for row in rows])
        engine.dispose()


def _foreign_rows(databases: dict[str, str]) -> dict[str, dict[str, list[tuple[Any, ...]]]]:
    found: dict[str, dict[str, list[tuple[Any, ...]]]] = {}
    for database, tables in FOREIGN_TABLES.items():
        engine = create_engine(databases[database])
        with engine.connect() as connection:
            present = set(inspect(connection).get_table_names())
            found[database] = {
                table: [tuple(row) for row in connection.execute(text(f"SELECT id, body FROM {table} ORDER BY id"))]
                for table in tables if table in present}
        engine.dispose()
    return found


def _tables(url: str) -> set[str]:
    engine = create_engine(url)
    try:
        return set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def _scalar(url: str, query: str) -> Any:
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            return connection.execute(text(query)).scalar()
    finally:
        engine.dispose()


def test_init_on_foreign_databases_drops_nothing_and_overwrites_nothing_edited(
    databases: dict[str, str], moto_aws: MotoAws, tmp_path: Path
) -> None:
    _add_foreign_tables(databases)
    default = _script_env(False, databases, tmp_path)

    # 1. The first `docker compose up` (demo mode off, the default) on databases that already hold the bank's tables.
    first = _run_init(default)
    assert first.returncode == 0, f"{first.stdout}\n{first.stderr}"
    assert "8 connections not imported (--no-connections)" in first.stdout
    assert "pool 'connect_sms': created" in first.stdout
    assert "event target 'connect-transaction-alerts': created" in first.stdout
    assert "compose-init: done" in first.stdout
    passwords = Path(default["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"])
    assert json.loads(passwords.read_text()) == {"admin": REQUIRED_SECRETS["DEMOBANK_ADMIN_PASSWORD"]}
    assert stat.S_IMODE(passwords.stat().st_mode) == 0o600
    assert {"demobank_alembic_version", "event_targets", "demo_customers"} <= _tables(databases["demobank"])
    assert {"transactions", "quarantine_transactions"} <= _tables(databases["warehouse"])

    # 2. The operator sets up the real Twilio connection, a pool and a variable in the UI, and disables a target.
    _python(default, _EDIT_IN_THE_UI)
    suite = databases["demobank"]
    engine = create_engine(suite)
    with engine.begin() as connection:
        connection.execute(text("UPDATE event_targets SET enabled = false WHERE name = 'connect-transaction-alerts'"))
    engine.dispose()

    # 3. The next `up`: the same script, the same environment.
    second = _run_init(default)
    assert second.returncode == 0, f"{second.stdout}\n{second.stderr}"
    assert "pool 'connect_sms': kept (differs from the file in slots, description" in second.stdout
    assert "variable 'demobank_environment': kept (differs from the file in value" in second.stdout
    assert "event target 'connect-transaction-alerts': kept" in second.stdout

    # 4. Demo mode turned on, over the same databases: the connections of airflow_settings.yaml that are missing are
    # created (pointing at the sandbox and moto that compose then runs), the edited one is kept; then the core
    # banking seed finds the bank's tables and refuses, and the script stops there, loudly.
    demo = _script_env(True, databases, tmp_path, moto_url=moto_aws.url)
    third = _run_init(demo)
    assert third.returncode != 0, third.stdout
    assert ("connection 'twilio_default': kept (differs from the file in description, host, login, password, "
            "extra; --overwrite resets it)") in third.stdout
    assert "connection 'sendgrid_default': created" in third.stdout
    assert f"moto at {moto_aws.url}: bus" in third.stdout
    assert f"refusing to seed {safe_url(databases['core_banking'])} with the core_banking demo data" in third.stderr
    assert "holds 2 table(s) that this seed did not create (customers, general_ledger)" in third.stderr
    assert "compose-init: FAILED at step 'Core banking source" in third.stderr
    assert "compose-init: done" not in third.stdout

    # After all three runs: every foreign row is where it was, nothing edited was reset, no demo data was written.
    assert _foreign_rows(databases) == FOREIGN_TABLES
    state = json.loads(_python(default, _PROBE).strip().splitlines()[-1])
    assert {key: state["connections"]["twilio_default"][key] for key in EDITED_TWILIO} == EDITED_TWILIO
    assert state["connections"]["sendgrid_default"]["host"] == "http://airflow-apiserver:8080/sandbox"
    assert state["connections"]["aws_default"]["extra"]["endpoint_url"] == moto_aws.url  # moto, moved like the DBs
    assert state["pools"] == {"default_pool": 128, "connect_sms": 3, "connect_email": 4}
    assert state["environment"] == "production"
    assert _scalar(suite, "SELECT enabled FROM event_targets WHERE name = 'connect-transaction-alerts'") is False
    assert _scalar(suite, "SELECT count(*) FROM demo_customers") == 0
    assert "demobank_seed_marker" not in _tables(databases["core_banking"])
    assert _tables(databases["core_banking"]) == set(FOREIGN_TABLES["core_banking"])


@pytest.mark.parametrize(("variable", "value", "message"), [
    ("DEMOBANK_SANDBOX_ENABLED", "yes", "DEMOBANK_SANDBOX_ENABLED must be true or false, got 'yes'"),
    ("DEMOBANK_SEED_DEMO_DATA", "on", "DEMOBANK_SEED_DEMO_DATA must be true or false, got 'on'"),
    ("DEMOBANK_ADMIN_PASSWORD", "", "DEMOBANK_ADMIN_PASSWORD not set"),
    ("AIRFLOW__CORE__FERNET_KEY", "not-a-key", "AIRFLOW__CORE__FERNET_KEY (AIRFLOW_FERNET_KEY in .env) is not a "
                                               "Fernet key"),
])
def test_the_init_refuses_unclear_input_before_it_touches_anything(
    variable: str, value: str, message: str, tmp_path: Path
) -> None:
    env = {"PATH": os.environ["PATH"], "DEMOBANK_SANDBOX_ENABLED": "false", "DEMOBANK_SEED_DEMO_DATA": "false",
           "DEMOBANK_ADMIN_PASSWORD": "pw", "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(tmp_path / "p"),
           "AIRFLOW__CORE__FERNET_KEY": REQUIRED_SECRETS["AIRFLOW_FERNET_KEY"], variable: value}

    result = _run_init(env)

    assert result.returncode == 2
    assert message in result.stderr
    assert "== " not in result.stdout  # no step began
    assert not (tmp_path / "p").exists()
