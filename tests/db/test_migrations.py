"""Alembic migrations of the suite's database, on SQLite and PostgreSQL."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Column, MetaData, String, Table, create_engine, inspect, text
from sqlalchemy.engine import make_url

from demobank.db.engine import dispose_engines, get_engine
from demobank.db.migrate import (
    MIGRATIONS_DIR,
    VERSION_TABLE,
    alembic_config,
    current_revision,
    ensure_database,
    head_revision,
    schema_diff,
    upgrade,
)
from demobank.db.models import Base


def _diffs(url: str, metadata: MetaData) -> list[object]:
    with get_engine(url).connect() as connection:
        context = MigrationContext.configure(connection, opts={"version_table": VERSION_TABLE, "compare_type": True})
        return compare_metadata(context, metadata)


def test_head_revision_is_the_only_head() -> None:
    versions = Path(__file__).resolve().parents[2] / "src" / "demobank" / "db" / "migrations" / "versions"
    newest = max(p.name.split("_", 1)[0] for p in versions.glob("[0-9][0-9][0-9][0-9]_*.py"))
    assert head_revision() == newest
    assert (MIGRATIONS_DIR / "env.py").is_file()


def test_fresh_database_has_no_revision(db_url: str) -> None:
    assert current_revision(db_url) is None


def test_upgrade_creates_tables_and_records_head(db_url: str) -> None:
    result = upgrade(db_url)

    assert (result.previous, result.current, result.changed) == (None, head_revision(), True)
    assert current_revision(db_url) == head_revision()
    tables = set(inspect(get_engine(db_url)).get_table_names())
    assert {"deliveries", "demo_customers", VERSION_TABLE} <= tables
    assert "alembic_version" not in tables  # Never Airflow's version table.


def test_second_upgrade_is_a_no_op(migrated_url: str) -> None:
    engine = get_engine(migrated_url)
    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO demo_customers (customer_id, full_name, phone, email, currency) "
                "VALUES ('C-1', 'Ada Lovelace', '+12025550100', 'ada@example.com', 'GBP')"
            )
        )

    result = upgrade(migrated_url)

    assert (result.previous, result.current, result.changed) == (head_revision(), head_revision(), False)
    with engine.connect() as connection:
        assert connection.execute(text("SELECT count(*) FROM demo_customers")).scalar() == 1


def test_models_match_migrated_schema(migrated_url: str) -> None:
    assert _diffs(migrated_url, Base.metadata) == []
    assert schema_diff(migrated_url) == []


def test_schema_comparison_detects_drift(migrated_url: str) -> None:
    """The comparison above can fail: a model change without a migration shows up as a difference."""
    drifted = MetaData(naming_convention=Base.metadata.naming_convention)
    for table in Base.metadata.sorted_tables:
        table.to_metadata(drifted)
    Table("unmigrated_table", drifted, Column("id", String(10), primary_key=True))
    drifted.tables["deliveries"].append_column(Column("unmigrated_column", String(10)))

    kinds = {diff[0] for diff in _diffs(migrated_url, drifted) if isinstance(diff, tuple)}

    assert {"add_table", "add_column"} <= kinds


def test_downgrade_to_base_and_upgrade_again(migrated_url: str) -> None:
    """Also runs env.py's own-connection path (no connection handed over, URL from the config)."""
    command.downgrade(alembic_config(migrated_url), "base")
    assert current_revision(migrated_url) is None
    assert not {"deliveries", "demo_customers"} & set(inspect(get_engine(migrated_url)).get_table_names())

    assert upgrade(migrated_url).current == head_revision()


# Each process imports everything first, then waits for the go file, so that the upgrades really overlap.
_RACER = """
import sys, time
from pathlib import Path
from demobank.db.migrate import upgrade
go = Path(sys.argv[2])
print("ready", flush=True)
while not go.exists():
    time.sleep(0.001)
result = upgrade(sys.argv[1])
print("upgraded" if result.changed else "nothing to do", result.current)
"""


def test_concurrent_upgrades_from_several_processes(db_url: str, cli_env: dict[str, str], tmp_path: Path) -> None:
    go = tmp_path / "go"
    processes = []
    for _ in range(6):
        processes.append(
            subprocess.Popen(
                [sys.executable, "-c", _RACER, db_url, str(go)],
                env=cli_env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    for process in processes:  # Every process has done its imports before the start signal.
        assert process.stdout is not None
        assert process.stdout.readline().strip() == "ready", process.communicate(timeout=60)
    go.touch()
    outputs = [process.communicate(timeout=120) for process in processes]

    for process, (stdout, stderr) in zip(processes, outputs, strict=True):
        assert process.returncode == 0, f"stdout: {stdout}\nstderr: {stderr}"
    messages = [stdout for stdout, _ in outputs]
    assert sum("upgraded" in message for message in messages) == 1, messages
    assert sum("nothing to do" in message for message in messages) == 5, messages
    assert current_revision(db_url) == head_revision()


def test_cli_upgrade_current_check(db_url: str, cli_env: dict[str, str]) -> None:
    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "demobank.db", "--url", db_url, *args],
            env=cli_env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    first, second, current, check = run("upgrade"), run("upgrade"), run("current"), run("check")

    assert first.returncode == 0, first.stderr
    head = head_revision()
    assert f"from <empty> to {head}" in first.stdout
    assert f"already at {head}: nothing to do" in second.stdout
    assert f"current {head}, head {head} (up to date)" in current.stdout
    assert check.returncode == 0, check.stdout + check.stderr
    assert "0 difference(s)" in check.stdout
    password = make_url(db_url).password
    if password:
        assert password not in first.stdout


def test_ensure_database_creates_sqlite_folder(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'nested' / 'dir' / 'demobank.db'}"

    assert ensure_database(url) is True
    assert (tmp_path / "nested" / "dir").is_dir()
    upgrade(url)
    assert ensure_database(url) is False


@pytest.mark.postgres
def test_ensure_database_creates_missing_postgres_database(postgres_url: str) -> None:
    missing = make_url(postgres_url).set(database=f"{make_url(postgres_url).database}_new")
    missing_url = missing.render_as_string(hide_password=False)
    admin = create_engine(make_url(postgres_url).set(database="postgres"), isolation_level="AUTOCOMMIT")
    try:
        assert ensure_database(missing_url) is True
        assert ensure_database(missing_url) is False
        assert upgrade(missing_url).current == head_revision()
    finally:
        dispose_engines()
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{missing.database}" WITH (FORCE)'))
        admin.dispose()


def test_ensure_database_rejects_other_backends() -> None:
    with pytest.raises(ValueError, match="only sqlite and postgresql"):
        ensure_database("mysql+pymysql://u:p@h/db")
