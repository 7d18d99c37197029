"""Replay is bounded: a cap on the events of one request (counted before anything is queued), and the window read
and queued in chunks, each in a transaction of its own, envelopes read a bounded number of bytes at a time.
On a migrated SQLite file and on PostgreSQL, without Airflow."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, event, func, select
from sqlalchemy.orm import Session

from demobank.db.engine import get_engine, session_scope
from demobank.db.models import EventDelivery, EventTarget, OutboxEvent
from demobank.events import replay as replay_module
from demobank.events.catalog import examples
from demobank.events.outbox import publish, publish_many
from demobank.events.replay import ReplayTooLargeError, replay
from demobank.limits import REPLAY_MAX_EVENTS
from tests.db.conftest import (  # noqa: F401 - pytest registers the imported fixtures for this module
    _isolated_engines,
    db_url,
    migrated_url,
    postgres_admin_url,
    postgres_url,
    sqlite_url,
)

PUBLISHER = "dag:test_replay"
DAY = datetime(2026, 11, 20, 12, tzinfo=UTC)
WINDOW = (DAY - timedelta(hours=1), DAY + timedelta(hours=1))
EVENTS = 57  # 19 of them large (every third)


@pytest.fixture
def engine(migrated_url: str, monkeypatch: pytest.MonkeyPatch) -> Engine:  # noqa: F811
    monkeypatch.delenv(REPLAY_MAX_EVENTS.env, raising=False)
    engine = get_engine(migrated_url)
    events = []
    for n in range(EVENTS):
        data = {**examples("transaction.created")[0], "transaction_id": f"TXN-{n:012d}",
                "amount": "5000.00" if n % 3 == 0 else "10.00"}
        events.append({"type": "transaction.created", "data": data, "time": DAY + timedelta(seconds=n)})
    with session_scope(engine) as session:
        publish_many(session, events, publisher=PUBLISHER)
        publish(session, "transaction.created", examples("transaction.created")[0], publisher=PUBLISHER,
                time=DAY - timedelta(days=1))  # outside the window
    return engine


def add_target(engine: Engine, match: dict[str, Any] | None = None) -> int:
    with session_scope(engine) as session:
        target = EventTarget(name="replayed", event_types=["customer.created"], enabled=True, match=match,
                             config={"bus_name": "demobank-events"})
        session.add(target)
        session.flush()
        return target.id


def queued(engine: Engine, target_id: int) -> int:
    with Session(engine) as session:
        return session.scalar(select(func.count()).select_from(EventDelivery).where(
            EventDelivery.target_id == target_id, EventDelivery.status == "pending")) or 0


@pytest.fixture
def commits(engine: Engine) -> Iterator[list[int]]:
    """One entry per transaction committed on the engine."""
    seen: list[int] = []

    def count(_connection: Any) -> None:
        seen.append(1)

    event.listen(engine, "commit", count)
    yield seen
    event.remove(engine, "commit", count)


def test_a_window_over_the_cap_is_refused_whole_with_the_count_and_what_to_do(
        engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    target = add_target(engine)
    monkeypatch.setenv(REPLAY_MAX_EVENTS.env, str(EVENTS - 1))

    with pytest.raises(ReplayTooLargeError) as refused:
        replay(engine, target, "transaction.created", *WINDOW)

    assert (refused.value.count, refused.value.limit) == (EVENTS, EVENTS - 1)
    message = str(refused.value)
    assert f"holds {EVENTS} transaction.created events, over the cap of {EVENTS - 1} events " \
           f"({REPLAY_MAX_EVENTS.env}) events per replay: nothing was queued" in message
    assert "Narrow the window: replay it in at least 2 shorter windows (e.g. 1:00:00 each)" in message
    assert queued(engine, target) == 0

    monkeypatch.setenv(REPLAY_MAX_EVENTS.env, str(EVENTS))  # at the cap: queued
    assert replay(engine, target, "transaction.created", *WINDOW) == EVENTS
    assert queued(engine, target) == EVENTS


def test_the_default_cap_is_ten_thousand() -> None:
    assert REPLAY_MAX_EVENTS.value() == 10_000


def test_the_window_is_queued_in_chunks_each_its_own_transaction(engine: Engine, commits: list[int]) -> None:
    target = add_target(engine)
    commits.clear()

    assert replay(engine, target, "transaction.created", *WINDOW, chunk_size=10) == EVENTS

    assert len(commits) == 6  # 57 events in chunks of 10
    assert queued(engine, target) == EVENTS
    assert replay(engine, target, "transaction.created", *WINDOW, chunk_size=10) == EVENTS  # resets, no duplicate
    assert queued(engine, target) == EVENTS


def test_envelopes_are_read_a_bounded_number_of_bytes_at_a_time(engine: Engine,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    target = add_target(engine, match={"amount": {">=": "1000"}})
    envelope_reads: list[int] = []

    def watch(_conn: Any, _cursor: Any, statement: str, parameters: Any, _context: Any, _many: bool) -> None:
        if "outbox_events.envelope" in statement:
            envelope_reads.append(len(parameters) if isinstance(parameters, list | tuple) else len(parameters or {}))

    monkeypatch.setattr(replay_module, "REPLAY_READ_BYTES", 3_000)  # a few envelopes of ~1 KB each
    event.listen(engine, "before_cursor_execute", watch)
    try:
        assert replay(engine, target, "transaction.created", *WINDOW, chunk_size=20) == 19
    finally:
        event.remove(engine, "before_cursor_execute", watch)

    assert queued(engine, target) == 19  # the match filter, across chunks
    with Session(engine) as session:
        smallest = session.scalar(select(func.min(OutboxEvent.size_bytes)))
    assert sum(envelope_reads) == EVENTS  # every envelope read once ...
    assert 1 < max(envelope_reads) <= 3_000 // smallest  # ... never more at once than fit the byte budget


def test_events_published_into_the_window_during_a_replay_are_not_part_of_it(
        engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    target = add_target(engine)
    sessions: list[Session] = []

    def session_after_a_publish(bind: Engine) -> Session:
        if len(sessions) == 1:  # the first chunk's, after the count: another publisher writes into the window
            with session_scope(engine) as other:
                publish(other, "transaction.created", examples("transaction.created")[1], publisher=PUBLISHER,
                        time=DAY)
        sessions.append(Session(bind))
        return sessions[-1]

    monkeypatch.setattr(replay_module, "Session", session_after_a_publish)

    assert replay(engine, target, "transaction.created", *WINDOW, chunk_size=25) == EVENTS
    assert len(sessions) == 1 + 3  # the count, then chunks of 25, 25 and 7
    assert queued(engine, target) == EVENTS


def test_a_replay_checks_its_arguments(engine: Engine) -> None:
    target = add_target(engine)
    with pytest.raises(LookupError, match="event target 999 does not exist"):
        replay(engine, 999, "transaction.created", *WINDOW)
    with pytest.raises(ValueError, match="replay window is empty"):
        replay(engine, target, "transaction.created", WINDOW[1], WINDOW[0])
    with pytest.raises(ValueError, match="chunk_size must be at least 1"):
        replay(engine, target, "transaction.created", *WINDOW, chunk_size=0)
    assert replay(engine, target, "customer.created", *WINDOW) == 0
