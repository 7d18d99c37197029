"""Seed markers: a demo seed claims an empty database (or one holding only the tables it expects), seeds a database
it marked again, and refuses any other database, naming it and its tables, without writing or dropping anything."""

from __future__ import annotations

import subprocess
import sys

import pytest
from sqlalchemy import inspect, text

from demobank.db.engine import get_engine, safe_url
from demobank.db.migrate import schema_diff
from demobank.db.seed import seed_demo_customers
from demobank.db.seed_marker import MARKER_TABLE, Claim, ForeignDatabaseError, claim_for_seeding, marked_seeders


def _add_foreign_table(url: str, name: str = "branch_notes") -> None:
    with get_engine(url).begin() as connection:
        connection.execute(text(f"CREATE TABLE {name} (id integer PRIMARY KEY, note varchar(50))"))
        connection.execute(text(f"INSERT INTO {name} VALUES (1, 'keep me'), (2, 'me too')"))


def _rows(url: str, name: str = "branch_notes") -> list[tuple[int, str]]:
    with get_engine(url).connect() as connection:
        return [tuple(row) for row in connection.execute(text(f"SELECT id, note FROM {name} ORDER BY id"))]


def _tables(url: str) -> set[str]:
    return set(inspect(get_engine(url)).get_table_names())


def test_an_empty_database_is_claimed_once_and_then_found_marked(db_url: str) -> None:
    engine = get_engine(db_url)

    assert claim_for_seeding(engine, "some_seed") is Claim.CLAIMED
    assert claim_for_seeding(engine, "some_seed") is Claim.MARKED
    assert claim_for_seeding(engine, "other_seed") is Claim.CLAIMED  # the marker table alone is nothing foreign
    with engine.connect() as connection:
        assert marked_seeders(connection) == {"some_seed", "other_seed"}


def test_a_database_with_foreign_tables_is_refused_by_name_and_left_alone(db_url: str) -> None:
    _add_foreign_table(db_url)
    _add_foreign_table(db_url, "ledger")

    with pytest.raises(ForeignDatabaseError) as refused:
        claim_for_seeding(get_engine(db_url), "some_seed", own_tables={"demo_customers"})

    message = str(refused.value)
    assert f"refusing to seed {safe_url(db_url)} with the some_seed demo data" in message
    assert "holds 2 table(s) that this seed did not create (branch_notes, ledger)" in message
    assert "nothing was written or dropped" in message
    assert "Seed an empty database instead" in message
    assert _tables(db_url) == {"branch_notes", "ledger"}  # no marker either
    assert _rows(db_url) == [(1, "keep me"), (2, "me too")]


def test_the_refusal_lists_twenty_tables_and_counts_the_rest(sqlite_url: str) -> None:
    for number in range(25):
        _add_foreign_table(sqlite_url, f"t{number:02d}")

    with pytest.raises(ForeignDatabaseError, match=r"\(t00, t01, .*, t19 and 5 more\)"):
        claim_for_seeding(get_engine(sqlite_url), "some_seed")


def test_adopt_recognises_earlier_work_and_marks_it(sqlite_url: str) -> None:
    _add_foreign_table(sqlite_url, "seed_info")

    claim = claim_for_seeding(get_engine(sqlite_url), "some_seed",
                              adopt=lambda _connection, tables: "seed_info" in tables)

    assert claim is Claim.ADOPTED
    assert MARKER_TABLE in _tables(sqlite_url)


def test_demo_customers_are_seeded_into_the_suites_own_database_and_the_schema_check_ignores_the_marker(
    migrated_url: str,
) -> None:
    first = seed_demo_customers(get_engine(migrated_url), 5)
    again = seed_demo_customers(get_engine(migrated_url), 5)

    assert (first.inserted, again.unchanged) == (5, 5)
    assert MARKER_TABLE in _tables(migrated_url)
    assert schema_diff(migrated_url) == []


def test_demo_customers_refuse_a_database_shared_with_foreign_tables(
    migrated_url: str, cli_env: dict[str, str]
) -> None:
    _add_foreign_table(migrated_url)

    result = subprocess.run([sys.executable, "-m", "demobank.db", "--url", migrated_url, "seed", "--count", "5"],
                            env=cli_env, capture_output=True, text=True, timeout=120, check=False)

    assert result.returncode == 1
    assert f"error: refusing to seed {safe_url(migrated_url)} with the demo_customers demo data" in result.stderr
    assert "(branch_notes)" in result.stderr
    with get_engine(migrated_url).connect() as connection:
        assert connection.execute(text("SELECT count(*) FROM demo_customers")).scalar() == 0
    assert MARKER_TABLE not in _tables(migrated_url)
    assert _rows(migrated_url) == [(1, "keep me"), (2, "me too")]
