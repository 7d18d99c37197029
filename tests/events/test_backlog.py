"""Each target's backlog (:mod:`demobank.events.backlog`) on SQLite and PostgreSQL: pending deliveries, the delivery
rate over a window that ends at an injected ``now``, the age of the oldest pending event, and a target with nothing
pending. Events are published through the outbox and delivered (or dead-lettered) by the real dispatcher, with time
injected; only the outbox events' publication times are set back, to give them a known age."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, event, select, text, update
from sqlalchemy.orm import Session

from demobank.db.engine import get_engine, session_scope
from demobank.db.models import EventDelivery, OutboxEvent
from demobank.events.backlog import Backlog, backlog_by_target, backlog_of
from demobank.events.dispatcher import dispatch_once
from demobank.events.eventbridge import Delivered, PublishResult
from tests.db.conftest import (  # noqa: F401 - pytest registers the imported fixtures for this module
    _isolated_engines,
    db_url,
    migrated_url,
    postgres_admin_url,
    postgres_url,
    sqlite_url,
)
from tests.events.test_dispatcher import add_target, publish_events
from tests.events.test_target_health import RejectingPublisher

EVENTS = 50


@pytest.fixture
def engine(migrated_url: str) -> Engine:  # noqa: F811
    """A fresh database of each kind (SQLite, PostgreSQL), migrated to head."""
    return get_engine(migrated_url)


@pytest.fixture
def sqlite_engine(sqlite_url: str) -> Engine:  # noqa: F811
    from demobank.db.migrate import upgrade

    upgrade(sqlite_url)
    return get_engine(sqlite_url)


class AcceptingPublisher:
    """The target takes every event (as EventBridge answering with an id for each)."""

    def __init__(self, target: Any) -> None:
        pass

    def publish(self, envelopes):
        return PublishResult({envelope["id"]: Delivered(f"eb-{envelope['id']}") for envelope in envelopes},
                             requests=1)


def deliver(engine: Engine, target_id: int, count: int, at: datetime, factory: Any = AcceptingPublisher) -> None:
    """The dispatcher delivers the target's ``count`` oldest due deliveries at ``at`` (``delivered_at``)."""
    report = dispatch_once(engine, "backlog-test", factory, target_id=target_id, limit=count, now=at)
    assert report.claimed == count


def set_published(engine: Engine, first: datetime) -> list[datetime]:
    """Outbox event ``n`` (in sequence order) was published at ``first + n`` seconds; returns those times."""
    with session_scope(engine) as session:
        sequences = list(session.scalars(select(OutboxEvent.sequence).order_by(OutboxEvent.sequence)))
        times = [first + timedelta(seconds=n) for n in range(len(sequences))]
        for sequence, moment in zip(sequences, times, strict=True):
            session.execute(update(OutboxEvent).where(OutboxEvent.sequence == sequence).values(created_at=moment))
    return times


@pytest.fixture
def scenario(engine: Engine) -> dict[str, Any]:
    """Three targets and 50 events (published 20 minutes before ``now``, one a second):

    * ``slow-bus``: 5 delivered 2 minutes before ``now``, 3 delivered 1 minute *after* ``now``, the next one dead
      (refused), 41 pending: its oldest pending event is the 10th;
    * ``fast-bus``: all 50 delivered: 4 seven minutes before ``now`` (outside the 5-minute window), 2 exactly 5
      minutes before (the window's open end), 6 three minutes before, 38 one minute before; nothing pending;
    * ``idle-bus``: its filter selects none of them: no deliveries at all.
    """
    slow, fast = add_target(engine, "slow-bus"), add_target(engine, "fast-bus")
    idle = add_target(engine, "idle-bus", event_types=["demobank.nothing-of-this-type"])
    publish_events(engine, EVENTS)
    now = datetime.now(UTC).replace(microsecond=0) + timedelta(minutes=10)  # every delivery is due by then
    published = set_published(engine, now - timedelta(minutes=20))
    for count, before in ((4, timedelta(minutes=7)), (2, timedelta(minutes=5)), (6, timedelta(minutes=3)),
                          (38, timedelta(minutes=1))):
        deliver(engine, fast, count, now - before)
    deliver(engine, slow, 5, now - timedelta(minutes=2))
    deliver(engine, slow, 3, now + timedelta(minutes=1))
    deliver(engine, slow, 1, now + timedelta(minutes=1), RejectingPublisher)
    return {"now": now, "slow": slow, "fast": fast, "idle": idle, "published": published}


def test_pending_rate_and_oldest_age_per_target(engine: Engine, scenario: dict[str, Any]) -> None:
    now, published = scenario["now"], scenario["published"]
    backlog = backlog_by_target(engine, now=now)

    assert set(backlog) == {scenario["slow"], scenario["fast"], scenario["idle"]}
    slow = backlog[scenario["slow"]]
    assert slow.pending == EVENTS - 5 - 3 - 1  # the dead letter is not pending
    assert slow.delivered_in_window == 5  # the 3 delivered after now do not count
    assert slow.window_seconds == 300
    assert slow.rate_per_minute == pytest.approx(1.0)
    assert slow.rate_per_second == pytest.approx(5 / 300, abs=1e-3)
    assert slow.oldest_pending_at == published[9]  # the 10th event: the 9 before it were delivered or refused
    assert slow.oldest_pending_age_seconds == pytest.approx(20 * 60 - 9)

    fast = backlog[scenario["fast"]]
    assert (fast.pending, fast.oldest_pending_at, fast.oldest_pending_age_seconds) == (0, None, None)
    assert fast.delivered_in_window == 6 + 38  # not the 4 before the window, nor the 2 at its open end
    assert fast.rate_per_minute == pytest.approx(44 / 5)
    assert fast.rate_per_second == pytest.approx(44 / 300, abs=1e-3)

    assert backlog[scenario["idle"]] == Backlog(window_seconds=300)


def test_the_window_and_now_are_parameters(engine: Engine, scenario: dict[str, Any]) -> None:
    now = scenario["now"]
    wide = backlog_by_target(engine, now=now, window=timedelta(minutes=10))
    assert wide[scenario["fast"]].delivered_in_window == EVENTS
    assert wide[scenario["fast"]].window_seconds == 600
    assert wide[scenario["fast"]].rate_per_minute == pytest.approx(5.0)

    later = now + timedelta(minutes=2)  # the 3 delivered at now + 1 min are in; those at now - 2 min still are
    moved = backlog_by_target(engine, now=later)
    assert moved[scenario["slow"]].delivered_in_window == 5 + 3
    assert moved[scenario["fast"]].delivered_in_window == 38  # only those of one minute before now remain
    assert moved[scenario["slow"]].oldest_pending_age_seconds == pytest.approx(22 * 60 - 9)

    with Session(engine) as session:
        only = backlog_of(session, [scenario["slow"], 999_999], now=now)
    assert set(only) == {scenario["slow"], 999_999}
    assert only[scenario["slow"]].pending == 41
    assert only[999_999].pending == 0


def test_an_event_published_after_now_has_no_negative_age(engine: Engine) -> None:
    target = add_target(engine, "bus")
    publish_events(engine, 2)
    published = set_published(engine, datetime(2030, 1, 1, tzinfo=UTC))
    backlog = backlog_by_target(engine, now=published[0] - timedelta(seconds=30))[target]
    assert backlog.pending == 2
    assert backlog.oldest_pending_at == published[0]
    assert backlog.oldest_pending_age_seconds == 0.0


def test_few_grouped_statements_whatever_the_number_of_deliveries(engine: Engine) -> None:
    """Three queries (the targets, the pending deliveries, the delivered ones), as many for 1 event as for 600: no
    query per delivery or per target (SQLite's engine also sends its ``BEGIN IMMEDIATE``, not counted)."""
    for name in ("a", "b", "c", "d"):
        add_target(engine, name)

    def statements(events: int) -> int:
        publish_events(engine, events)
        seen: list[str] = []
        listener = lambda *args: seen.append(args[2])  # noqa: E731 - (conn, cursor, statement, ...)
        event.listen(engine, "before_cursor_execute", listener)
        try:
            backlog = backlog_by_target(engine)
        finally:
            event.remove(engine, "before_cursor_execute", listener)
        assert {item.pending for item in backlog.values()} == {count_pending(engine) // 4}
        return len([statement for statement in seen if statement.lstrip().upper().startswith("SELECT")])

    assert statements(1) == statements(600) == 3


def count_pending(engine: Engine) -> int:
    with Session(engine) as session:
        return len(session.scalars(select(EventDelivery.event_id).where(EventDelivery.status == "pending")).all())


def test_the_rate_reads_a_range_of_its_index_on_sqlite(sqlite_engine: Engine) -> None:
    """The delivered deliveries of the window are a range of ``(status, delivered_at, target_id)`` (migration 0010),
    not a scan of every delivered row (SQLite's plan; PostgreSQL chooses by its statistics)."""
    with sqlite_engine.connect() as connection:
        plan = " ".join(str(row[-1]) for row in connection.execute(text(
            "EXPLAIN QUERY PLAN SELECT target_id, count(*) FROM event_deliveries WHERE status = 'delivered' "
            "AND delivered_at > '2026-01-01 00:00:00' AND delivered_at <= '2026-01-01 00:05:00' "
            "AND target_id IN (1, 2) GROUP BY target_id")))
    assert "COVERING INDEX ix_event_deliveries_status_delivered_at_target_id" in plan, plan
    assert "delivered_at>? AND delivered_at<?" in plan, plan


def test_naive_now_and_empty_window_are_refused(engine: Engine) -> None:
    with pytest.raises(ValueError, match="naive datetime"):
        backlog_by_target(engine, now=datetime(2026, 1, 1))
    with pytest.raises(ValueError, match="window must be positive"):
        backlog_by_target(engine, window=timedelta(0))
