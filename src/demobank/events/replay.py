"""Replaying events to a target: queue again, for one target, the events of a type in a time window.

Moved out of :mod:`demobank.events.dispatcher` unchanged; the dispatcher delivers what this module queues.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime

from sqlalchemy import Engine, select, update
from sqlalchemy.orm import Session

from demobank.db.models import EventDelivery, EventDeliveryStatus, EventTarget, OutboxEvent
from demobank.events.dispatcher import _now
from demobank.events.filters import data_matches

log = logging.getLogger(__name__)

_PENDING = EventDeliveryStatus.PENDING.value


def replay(engine: Engine, target_id: int, event_type: str, start: datetime, end: datetime) -> int:
    """Queue again, for one target, every event of ``event_type`` whose ``time`` is in ``[start, end)`` and that the
    target's ``match`` filter selects (its ``event_types`` are not consulted: the type is chosen explicitly).

    Existing deliveries are reset to ``pending`` (attempts 0, error, claim and delivery cleared); missing ones are
    inserted.

    :return: the number of deliveries queued.
    :raises LookupError: the target does not exist.
    """
    start, end = _now(start), _now(end)
    if end <= start:
        raise ValueError(f"replay window is empty: start {start.isoformat()} is not before end {end.isoformat()}")
    with Session(engine) as session, session.begin():
        target = session.get(EventTarget, target_id)
        if target is None:
            raise LookupError(f"event target {target_id} does not exist: list targets in event_targets")
        rows = session.execute(
            select(OutboxEvent.id, OutboxEvent.envelope).where(OutboxEvent.type == event_type,
                                                               OutboxEvent.time >= start, OutboxEvent.time < end)
            .order_by(OutboxEvent.sequence)).all()
        event_ids = [event_id for event_id, envelope in rows
                     if not target.match or data_matches(target.match, json.loads(envelope).get("data"))]
        existing: set[str] = set()
        for chunk in range(0, len(event_ids), 500):
            existing.update(session.scalars(
                select(EventDelivery.event_id).where(EventDelivery.target_id == target_id,
                                                     EventDelivery.event_id.in_(event_ids[chunk:chunk + 500]))))
        reset = sorted(existing)
        for chunk in range(0, len(reset), 500):
            session.execute(
                update(EventDelivery)
                .where(EventDelivery.target_id == target_id, EventDelivery.event_id.in_(reset[chunk:chunk + 500]))
                .values(status=_PENDING, attempts=0, last_error=None, next_attempt_at=None, claimed_by=None,
                        claimed_until=None, delivered_at=None, external_id=None)
                .execution_options(synchronize_session=False)
            )
        session.add_all(EventDelivery(event_id=event_id, target_id=target_id, status=_PENDING, attempts=0)
                        for event_id in event_ids if event_id not in existing)
    log.info("replay: %d %s event(s) from %s to %s queued for target %d", len(event_ids), event_type,
             start.isoformat(), end.isoformat(), target_id)
    return len(event_ids)


__all__ = ["replay"]
