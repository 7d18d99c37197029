"""The ``demobank`` command line on a migrated SQLite file: targets, requeue and dismiss of dead letters, the check,
and the errors a user can make (each with a message and a non-zero exit code). The console script itself runs in a
subprocess in ``tests/events/test_target_health.py`` and below once."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine

from demobank.cli import main
from demobank.db.engine import get_engine
from demobank.events.dispatcher import dispatch_once, dispatch_until_empty
from tests.db.conftest import _isolated_engines, sqlite_url  # noqa: F401 - fixtures
from tests.events.test_dispatcher import add_target, deliveries, publish_events
from tests.events.test_target_health import RejectingPublisher, make_dead_letters


@pytest.fixture
def engine(sqlite_url: str, monkeypatch: pytest.MonkeyPatch) -> Engine:  # noqa: F811
    from demobank.db.migrate import upgrade

    upgrade(sqlite_url)
    monkeypatch.setenv("DEMOBANK_DB_URL", sqlite_url)
    return get_engine(sqlite_url)


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_requeue_by_id_and_by_window_then_dismiss(engine: Engine, capsys) -> None:
    day = datetime(2026, 11, 20, 12, tzinfo=UTC)
    target_id, early = make_dead_letters(engine, 3, time=day)
    late = publish_events(engine, 2, time=day + timedelta(hours=5))
    dispatch_until_empty(engine, "w", RejectingPublisher)

    code, out, _ = run(capsys, "check")
    assert code == 1 and "has 5 new dead letter(s) (5 in all)" in out

    code, out, _ = run(capsys, "requeue", "dead-letters", "--target", "partner-bus", "--event-id", early[0])
    assert code == 0 and "1 dead letter(s) of event target 'partner-bus' requeued" in out and early[0] in out
    code, out, _ = run(capsys, "requeue", "dead-letters", "--target", "partner-bus",
                       "--since", "2026-11-20T16:00:00Z", "--until", "2026-11-20T18:00:00+00:00")
    assert code == 0 and "2 dead letter(s)" in out
    rows = deliveries(engine, target_id)
    assert {event_id for event_id, row in rows.items() if row.status == "pending"} == {early[0], *late}
    assert all(row.attempts == 0 and row.next_attempt_at is None for row in rows.values() if row.status == "pending")
    assert rows[early[0]].last_error.startswith("requeued by cli:")
    assert "dead-letter error: permanent failure at target 'partner-bus': InvalidArgument" in rows[early[0]].last_error

    code, out, _ = run(capsys, "dismiss", "dead-letters", "--target", "partner-bus")
    assert code == 0 and "2 dead letter(s) of event target 'partner-bus' dismissed" in out
    assert run(capsys, "check")[0] == 0, "dismissed: no longer new"
    # A requeued dead letter that dies again is new again (the three pending ones die at the next dispatch).
    dispatch_until_empty(engine, "w", RejectingPublisher)
    code, out, _ = run(capsys, "check")
    assert code == 1 and "has 3 new dead letter(s) (5 in all)" in out
    code, out, _ = run(capsys, "requeue", "dead-letters", "--target", "partner-bus")
    assert code == 0 and "5 dead letter(s)" in out and "… and" not in out


def test_user_errors_say_what_was_wrong(engine: Engine, capsys) -> None:
    target_id, ids = make_dead_letters(engine, 1)
    pending = publish_events(engine, 1)[0]

    code, _, err = run(capsys, "requeue", "dead-letters", "--target", "nope")
    assert code == 1 and "no event target has name 'nope'" in err and "demobank targets list" in err
    code, _, err = run(capsys, "requeue", "dead-letters", "--target", "partner-bus", "--event-id", pending)
    assert code == 1 and f"not dead letters of this target: {pending} (pending)" in err
    assert deliveries(engine, target_id)[ids[0]].status == "dead", "nothing changed"
    with pytest.raises(SystemExit) as usage:  # argparse: a usage error
        main(["requeue", "dead-letters", "--target", "partner-bus", "--since", "2026-11-20T16:00"])
    assert usage.value.code == 2 and "'2026-11-20T16:00' has no UTC offset: add Z" in capsys.readouterr().err
    code, _, err = run(capsys, "requeue", "dead-letters", "--target", "partner-bus",
                       "--since", "2026-11-20T18:00:00Z", "--until", "2026-11-20T16:00:00Z")
    assert code == 1 and "the window is empty" in err
    code, _, err = run(capsys, "targets", "resume", "nope")
    assert code == 1 and "no event target has name 'nope'" in err


def test_targets_list_shows_health_and_resume_clears_a_streak(engine: Engine, capsys) -> None:
    from demobank.events.eventbridge import Failed, PublishResult

    add_target(engine, "partner-bus")
    publish_events(engine, 2)

    class Refusing:
        def __init__(self, target):
            pass

        def publish(self, envelopes):
            return PublishResult({e["id"]: Failed("AccessDeniedException", "no (injected)", False, target_error=True)
                                  for e in envelopes}, requests=1)

    dispatch_once(engine, "w", Refusing)
    code, out, _ = run(capsys, "targets", "list")
    assert code == 0 and "partner-bus\teventbridge\tenabled\tfailing (1 in a row, next probe" in out
    code, out, _ = run(capsys, "targets", "resume", "partner-bus")
    assert code == 0 and "failure streak cleared, it is dispatched again at once" in out
    code, out, _ = run(capsys, "targets", "list")
    assert "\tok\t" in out
    code, out, _ = run(capsys, "targets", "resume", "partner-bus")
    assert "was neither paused nor failing" in out


def test_the_installed_script_and_the_old_python_m_entry_point(engine: Engine, sqlite_url: str,  # noqa: F811
                                                               tmp_path: Path) -> None:
    env = {"DEMOBANK_DB_URL": sqlite_url, "AIRFLOW_HOME": str(tmp_path / "airflow"), "PATH": "/usr/bin:/bin"}
    script = Path(sys.executable).parent / "demobank"
    usage = subprocess.run([str(script), "requeue"], capture_output=True, text=True, env=env, check=False)
    assert usage.returncode == 2 and "dead-letters" in usage.stderr and "reports" in usage.stderr
    add_target(engine, "partner-bus")
    listed = subprocess.run([sys.executable, "-m", "demobank.events.targets", "list"], capture_output=True,
                            text=True, env=env, check=False)
    assert listed.returncode == 0 and "partner-bus" in listed.stdout, listed.stderr
    healthy = subprocess.run([str(script), "check"], capture_output=True, text=True, env=env, check=False)
    assert healthy.returncode == 0 and healthy.stdout.strip() == "suite health: OK", healthy.stderr
