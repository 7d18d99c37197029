"""Command line of the suite's database: ``python -m demobank.db {upgrade,current,check,seed}``.

The database is the Airflow connection ``demobank_db`` (or ``DEMOBANK_DB_URL``, or ``--url``)::

    python -m demobank.db upgrade [--revision head] [--create-database]
    python -m demobank.db current
    python -m demobank.db check
    python -m demobank.db seed [--count 50] [--seed N] [--today YYYY-MM-DD] [--refresh]

Exit status: 0 on success, 1 when ``check`` finds differences or ``seed`` finds an unmigrated database or one
that is not the suite's (other tables and no seed marker, see :mod:`demobank.db.seed_marker`), 2 for a
configuration error (unsupported or missing connection).
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from datetime import date

from sqlalchemy.exc import SQLAlchemyError

from demobank.db.engine import database_url, get_engine, safe_url
from demobank.db.migrate import current_revision, ensure_database, head_revision, schema_diff, upgrade
from demobank.db.seed import DEFAULT_SEED, MAX_CUSTOMERS, seed_demo_customers
from demobank.db.seed_marker import ForeignDatabaseError


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m demobank.db",
        description="Migrate, inspect and seed the Demo Bank suite's own database (not Airflow's).",
    )
    parser.add_argument(
        "--url",
        help="SQLAlchemy URL of the database (default: $DEMOBANK_DB_URL, else the Airflow connection).",
    )
    parser.add_argument("--conn-id", default="demobank_db", help="Airflow connection id (default: %(default)s).")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    up = commands.add_parser("upgrade", help="apply the migrations (idempotent)")
    up.add_argument("--revision", default="head", help="target revision (default: %(default)s)")
    up.add_argument(
        "--create-database",
        action="store_true",
        help="create the PostgreSQL database first if it does not exist (needs CREATEDB)",
    )

    commands.add_parser("current", help="print the database's revision and the newest one")
    commands.add_parser("check", help="compare the migrated schema with the models; exit 1 on differences")

    seed = commands.add_parser("seed", help="insert the demo customers (idempotent)")
    seed.add_argument("--count", type=int, default=50, help=f"1 to {MAX_CUSTOMERS} (default: %(default)s)")
    seed.add_argument("--seed", type=int, default=DEFAULT_SEED, help="random seed (default: %(default)s)")
    seed.add_argument("--today", type=date.fromisoformat, help="date 'due today' refers to (default: today, UTC)")
    seed.add_argument("--refresh", action="store_true", help="overwrite existing demo customers (due dates)")
    return parser


def _run(args: argparse.Namespace) -> int:
    url = args.url or database_url(args.conn_id)
    shown = safe_url(url)
    if args.command == "upgrade":
        if args.create_database and ensure_database(url):
            print(f"created database {shown}")
        result = upgrade(url, args.revision)
        if result.changed:
            print(f"upgraded {shown} from {result.previous or '<empty>'} to {result.current}")
        else:
            print(f"{shown} already at {result.current}: nothing to do")
        return 0
    if args.command == "current":
        current, head = current_revision(url), head_revision()
        state = "up to date" if current == head else "needs `python -m demobank.db upgrade`"
        print(f"{shown}: current {current or '<empty>'}, head {head} ({state})")
        return 0
    if args.command == "check":
        diffs = schema_diff(url)
        for diff in diffs:
            print(f"difference: {diff}")
        print(f"{shown}: {len(diffs)} difference(s) between the migrated schema and the models")
        return 1 if diffs else 0
    if args.command == "seed":
        current, head = current_revision(url), head_revision()
        if current != head:
            print(
                f"error: {shown} is at revision {current or '<empty>'}, not {head}: "
                "run `python -m demobank.db upgrade` first",
                file=sys.stderr,
            )
            return 1
        result = seed_demo_customers(get_engine(url), args.count, args.seed, today=args.today, refresh=args.refresh)
        print(
            f"seeded demo customers in {shown}: {result.inserted} inserted, {result.updated} refreshed, "
            f"{result.unchanged} already present"
        )
        return 0
    raise AssertionError(f"unhandled command {args.command!r}")  # argparse rejects unknown commands


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status.

    :param argv: the arguments (default: ``sys.argv[1:]``).
    """
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        return _run(args)
    except ValueError as exc:  # ConfigurationError, bad --count, ...
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except ForeignDatabaseError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except SQLAlchemyError as exc:
        print(f"error: database operation failed: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
