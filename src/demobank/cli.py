"""``demobank``: the suite's command line (installed by ``make install`` as ``.venv/bin/demobank``).

::

    demobank check [--json]                          # exit 1 and say what is wrong when something needs acting on
    demobank targets list                            # every event target with its state, health, deliveries
    demobank targets import airflow_settings.yaml [--overwrite]
    demobank targets resume NAME                     # clear a pause and failure streak
    demobank requeue dead-letters --target NAME [--event-id ID ...] [--since TIME] [--until TIME]
    demobank requeue reports [--dag-id DAG] [--since TIME]
    demobank dismiss dead-letters --target NAME [--event-id ID ...] [--since TIME] [--until TIME]
    demobank dismiss reports [--dag-id DAG]

It works on the suite's database, found like the DAGs find it: ``DEMOBANK_DB_URL`` or the Airflow connection
``demobank_db``. Times are ISO 8601 with a UTC offset (``2026-11-26T09:00:00Z``); for dead letters they select by
the event's time. Every command prints its outcome; it exits 0 on success, 1 when it failed or the check found
problems, 2 on a usage error.
"""

from __future__ import annotations

import argparse
import getpass
import json
import sys
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from demobank.exceptions import DemoBankError


def _engine() -> Engine:
    from demobank.db.engine import get_engine

    return get_engine()


def actor() -> str:
    """Who runs the command, for the audit trail: ``cli:<login name>``."""
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):  # no login name (a container without a passwd entry)
        return "cli:unknown"


def _time(value: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not an ISO 8601 time: write e.g. 2026-11-26T09:00:00Z"
                                         ) from None
    if parsed.tzinfo is None:
        raise argparse.ArgumentTypeError(f"{value!r} has no UTC offset: add Z or +HH:MM (e.g. 2026-11-26T09:00:00Z)")
    return parsed


# -- commands -------------------------------------------------------------------------------------------------------


def _check(args: argparse.Namespace) -> int:
    from demobank.health import check_suite

    health = check_suite(_engine())
    print(json.dumps(health.as_dict(), indent=2) if args.json else health.describe())
    return 0 if health.ok else 1


def _selection(args: argparse.Namespace) -> Any:
    from demobank.events.target_health import DeadLetterSelection

    return DeadLetterSelection(event_ids=tuple(args.event_id) if args.event_id else None, since=args.since,
                               until=args.until)


def _requeue_dead_letters(args: argparse.Namespace) -> int:
    from demobank.events.target_health import requeue_dead_letters

    outcome = requeue_dead_letters(_engine(), args.target, _selection(args), actor=actor())
    print(outcome.describe())
    for event_id in outcome.event_ids[:20]:
        print(f"  {event_id}")
    if outcome.count > 20:
        print(f"  … and {outcome.count - 20} more")
    return 0


def _dismiss_dead_letters(args: argparse.Namespace) -> int:
    from demobank.events.target_health import dismiss_dead_letters

    print(dismiss_dead_letters(_engine(), args.target, _selection(args), actor=actor()).describe())
    return 0


def _requeue_reports(args: argparse.Namespace) -> int:
    from demobank.data_factory.report_outbox import requeue_rejected

    count = requeue_rejected(_engine(), dag_id=args.dag_id, since=args.since)
    which = f" of DAG {args.dag_id!r}" if args.dag_id else ""
    print(f"{count} rejected Monte Carlo run report(s){which} requeued: data_factory_report_sweep sends them within "
          "5 minutes")
    return 0


def _dismiss_reports(args: argparse.Namespace) -> int:
    from demobank.data_factory.report_outbox import dismiss_rejected

    count = dismiss_rejected(_engine(), dag_id=args.dag_id)
    which = f" of DAG {args.dag_id!r}" if args.dag_id else ""
    print(f"{count} rejected Monte Carlo run report(s){which} dismissed (they stay rejected, no longer new)")
    return 0


def _resume(args: argparse.Namespace) -> int:
    from demobank.events.target_health import resume

    print(resume(_engine(), args.target, actor=actor()).describe())
    return 0


# -- the parser -----------------------------------------------------------------------------------------------------


def _dead_letter_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--target", required=True, help="the target's name (see `demobank targets list`)")
    parser.add_argument("--event-id", action="append", metavar="ID",
                        help="only this event (repeat for several); default: every dead letter of the target")
    parser.add_argument("--since", type=_time, metavar="TIME", help="only events whose time is at or after TIME")
    parser.add_argument("--until", type=_time, metavar="TIME", help="only events whose time is before TIME")


def build_parser() -> argparse.ArgumentParser:
    """The ``demobank`` argument parser (each command sets ``handler``)."""
    from demobank.events import targets

    parser = argparse.ArgumentParser(prog="demobank", description="The Demo Bank Connectivity Suite's command line.",
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True,
                                     metavar="{check,targets,requeue,dismiss,workflows}")

    check = commands.add_parser("check", help="exit 1 and list what needs acting on: paused targets, new dead "
                                              "letters, new rejected Monte Carlo reports")
    check.add_argument("--json", action="store_true", help="print the full answer as JSON")
    check.set_defaults(handler=_check)

    target_commands = commands.add_parser("targets", help="event targets").add_subparsers(
        dest="targets_command", required=True, metavar="{list,import,resume}")
    targets.add_commands(target_commands)
    resume = target_commands.add_parser("resume", help="clear a target's pause and failure streak")
    resume.add_argument("target", help="the target's name")
    resume.set_defaults(handler=_resume)

    requeue = commands.add_parser("requeue", help="send dead letters or rejected reports again").add_subparsers(
        dest="requeue_command", required=True, metavar="{dead-letters,reports}")
    dead = requeue.add_parser("dead-letters", help="a target's dead letters back to pending (attempts reset)")
    _dead_letter_options(dead)
    dead.set_defaults(handler=_requeue_dead_letters)
    reports = requeue.add_parser("reports", help="rejected Monte Carlo run reports back to pending")
    reports.add_argument("--dag-id", help="only this DAG's reports")
    reports.add_argument("--since", type=_time, metavar="TIME", help="only reports created at or after TIME")
    reports.set_defaults(handler=_requeue_reports)

    dismiss = commands.add_parser("dismiss", help="mark dead letters or rejected reports as seen (no longer new)"
                                  ).add_subparsers(dest="dismiss_command", required=True,
                                                        metavar="{dead-letters,reports}")
    dead = dismiss.add_parser("dead-letters", help="a target's new dead letters: seen, they stay dead")
    _dead_letter_options(dead)
    dead.set_defaults(handler=_dismiss_dead_letters)
    reports = dismiss.add_parser("reports", help="new rejected Monte Carlo run reports: seen, they stay rejected")
    reports.add_argument("--dag-id", help="only this DAG's reports")
    reports.set_defaults(handler=_dismiss_reports)
    from demobank.logic_apps import commands as workflow_commands

    workflow_commands.add_commands(commands.add_parser("workflows", help="Logic App definitions").add_subparsers(
        dest="workflows_command", required=True,
        metavar="{validate,list,render,dry-run,new,deploy,diff,versions,show}"))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; return the exit code (the console script exits with it)."""
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except (LookupError, ValueError, DemoBankError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except SQLAlchemyError as error:
        print(f"error: the suite's database could not be used ({type(error).__name__}: {error}); check "
              "DEMOBANK_DB_URL or the demobank_db connection, and that the database is migrated "
              "(python -m demobank.db upgrade)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())


__all__ = ["actor", "build_parser", "main"]
