"""Replaying events to a target: queue again, for one target, the events of a type in a time window.

The dispatcher (:mod:`demobank.events.dispatcher`) delivers what a replay queues. A replay is bounded:

* at most ``DEMOBANK_REPLAY_MAX_EVENTS`` (default 10,000) events of the type in the window, counted first (on the
  outbox's ``(type, time)`` index); a larger window is refused with :class:`ReplayTooLargeError`, which names the
  count and the cap, before anything is queued;
* the window is read in chunks of :data:`REPLAY_CHUNK` events, in outbox order, each queued in a transaction of its
  own (a chunk of deliveries written, locks held for one chunk); the envelopes a target's ``match`` needs are read at
  most :data:`REPLAY_READ_BYTES` at a time. Memory and transaction size do not grow with the window.

Events published into the window while a replay runs are not part of it (the replay stops at the newest event that
it counted). A replay that fails half-way has queued its first chunks; running it again is safe: a queued delivery
is reset, not duplicated.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Engine, func, select, update
from sqlalchemy.orm import Session

from demobank.db.models import EventDelivery, EventDeliveryStatus, EventTarget, OutboxEvent
from demobank.events.dispatcher import _now
from demobank.events.filters import data_matches
from demobank.exceptions import DemoBankError
from demobank.limits import REPLAY_MAX_EVENTS

log = logging.getLogger(__name__)

REPLAY_CHUNK = 500
"""Events queued per transaction."""

REPLAY_READ_BYTES = 4 * 1024 * 1024
"""At most this many bytes of envelopes are read at once (only a target with a ``match`` needs them)."""

_PENDING = EventDeliveryStatus.PENDING.value


class ReplayTooLargeError(DemoBankError, ValueError):
    """The window holds more events than one replay may queue (``DEMOBANK_REPLAY_MAX_EVENTS``).

    :ivar count: the events of the type in the window.
    :ivar limit: the cap.
    """

    def __init__(self, message: str, count: int, limit: int) -> None:
        super().__init__(message)
        self.count = count
        self.limit = limit


def _window(event_type: str, start: datetime, end: datetime) -> list[ColumnElement[bool]]:
    return [OutboxEvent.type == event_type, OutboxEvent.time >= start, OutboxEvent.time < end]


def _too_large(event_type: str, start: datetime, end: datetime, count: int, limit: int) -> ReplayTooLargeError:
    parts = math.ceil(count / limit)
    return ReplayTooLargeError(
        f"the window from {start.isoformat()} to {end.isoformat()} holds {count} {event_type} events, over the cap "
        f"of {REPLAY_MAX_EVENTS.describe(limit)} events per replay: nothing was queued. Narrow the window: replay it "
        f"in at least {parts} shorter windows (e.g. {(end - start) / parts} each), one after the other",
        count, limit,
    )


def _envelope_batches(sizes: Sequence[tuple[str, int]]) -> Iterator[list[str]]:
    """Event ids in groups whose envelopes together stay under :data:`REPLAY_READ_BYTES` (at least one each)."""
    batch: list[str] = []
    total = 0
    for event_id, size in sizes:
        if batch and total + size > REPLAY_READ_BYTES:
            yield batch
            batch, total = [], 0
        batch.append(event_id)
        total += size
    if batch:
        yield batch


def _selected(session: Session, match: dict[str, Any] | None, sizes: Sequence[tuple[str, int]]) -> list[str]:
    """The ids (in the given order) of the events that ``match`` selects."""
    if not match:
        return [event_id for event_id, _ in sizes]
    chosen: set[str] = set()
    for batch in _envelope_batches(sizes):
        for event_id, envelope in session.execute(
                select(OutboxEvent.id, OutboxEvent.envelope).where(OutboxEvent.id.in_(batch))):
            if data_matches(match, json.loads(envelope).get("data")):
                chosen.add(event_id)
    return [event_id for event_id, _ in sizes if event_id in chosen]


def _queue(session: Session, target_id: int, event_ids: Sequence[str]) -> None:
    """Reset the target's existing deliveries of these events to ``pending`` and insert the missing ones."""
    if not event_ids:
        return
    existing = set(session.scalars(select(EventDelivery.event_id).where(
        EventDelivery.target_id == target_id, EventDelivery.event_id.in_(event_ids))))
    if existing:
        session.execute(
            update(EventDelivery)
            .where(EventDelivery.target_id == target_id, EventDelivery.event_id.in_(sorted(existing)))
            .values(status=_PENDING, attempts=0, last_error=None, next_attempt_at=None, claimed_by=None,
                    claimed_until=None, delivered_at=None, external_id=None)
            .execution_options(synchronize_session=False)
        )
    session.add_all(EventDelivery(event_id=event_id, target_id=target_id, status=_PENDING, attempts=0)
                    for event_id in event_ids if event_id not in existing)


def replay(engine: Engine, target_id: int, event_type: str, start: datetime, end: datetime, *,
           chunk_size: int = REPLAY_CHUNK) -> int:
    """Queue again, for one target, every event of ``event_type`` whose ``time`` is in ``[start, end)`` and that the
    target's ``match`` filter selects (its ``event_types`` are not consulted: the type is chosen explicitly).

    Existing deliveries are reset to ``pending`` (attempts 0, error, claim and delivery cleared); missing ones are
    inserted. The window is counted first and queued in chunks (see the module docstring).

    :param chunk_size: events queued per transaction.
    :return: the number of deliveries queued.
    :raises LookupError: the target does not exist.
    :raises ValueError: an empty window.
    :raises ReplayTooLargeError: the window holds more than ``DEMOBANK_REPLAY_MAX_EVENTS`` events of the type;
        nothing was queued.
    """
    start, end = _now(start), _now(end)
    if end <= start:
        raise ValueError(f"replay window is empty: start {start.isoformat()} is not before end {end.isoformat()}")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be at least 1, got {chunk_size}")
    limit = REPLAY_MAX_EVENTS.value()
    window = _window(event_type, start, end)
    with Session(engine) as session:
        target = session.get(EventTarget, target_id)
        if target is None:
            raise LookupError(f"event target {target_id} does not exist: list targets in event_targets")
        match = dict(target.match) if target.match else None
        count, newest = session.execute(select(func.count(), func.max(OutboxEvent.sequence)).where(*window)).one()
    if count > limit:
        raise _too_large(event_type, start, end, count, limit)

    queued, after, chunks = 0, None, 0
    while newest is not None:
        with Session(engine) as session, session.begin():
            query = select(OutboxEvent.sequence, OutboxEvent.id, OutboxEvent.size_bytes).where(
                *window, OutboxEvent.sequence <= newest)
            if after is not None:
                query = query.where(OutboxEvent.sequence > after)
            rows = session.execute(query.order_by(OutboxEvent.sequence).limit(chunk_size)).all()
            if not rows:
                break
            after = rows[-1].sequence
            event_ids = _selected(session, match, [(row.id, row.size_bytes) for row in rows])
            _queue(session, target_id, event_ids)
        queued += len(event_ids)
        chunks += 1
        if len(rows) < chunk_size:
            break
    log.info("replay: %d %s event(s) from %s to %s queued for target %d (%d in the window, %d chunk(s))", queued,
             event_type, start.isoformat(), end.isoformat(), target_id, count, chunks)
    return queued


__all__ = ["REPLAY_CHUNK", "ReplayTooLargeError", "replay"]
