"""The backlog of each event target: what waits for it, how fast it drains, and how long the oldest event has waited.

Per target (:class:`Backlog`):

* ``pending`` -- its deliveries with status ``pending`` (due now, backing off, or waiting for a paused or disabled
  target: everything it has still to take);
* ``delivered_in_window`` and ``rate_per_minute`` / ``rate_per_second`` -- its deliveries marked delivered
  (``delivered_at``) in the last ``window`` (5 minutes by default) up to ``now``, and that count per minute and per
  second over the window;
* ``oldest_pending_at`` and ``oldest_pending_age_seconds`` -- when the outbox event of its oldest pending delivery
  was published (``outbox_events.created_at``), and ``now`` minus that (never negative); ``None`` when nothing is
  pending. A replayed event counts from its original publication.

A slow target shows as a large ``pending`` with a low rate and an old oldest event; a healthy one drains what it gets
(``pending`` near 0, the age a few seconds).

Two grouped statements for all targets, whatever the number of deliveries: one over the pending deliveries (count and
the oldest event's time, through the index on ``(target_id, status, next_attempt_at)`` and the unique index on
``outbox_events.id``), one over the deliveries delivered in the window (a range of the index on
``(status, delivered_at, target_id)``, migration 0010, so that the millions of older delivered rows are not read).
Airflow-free: the Targets API (:mod:`demobank.events.targets`) and the page show it.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from pydantic import BaseModel
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from demobank.db.models import EventDelivery, EventDeliveryStatus, EventTarget, OutboxEvent
from demobank.events.target_health import _now

DEFAULT_WINDOW = timedelta(minutes=5)
"""The window of the delivery rate."""

_PENDING = EventDeliveryStatus.PENDING.value
_DELIVERED = EventDeliveryStatus.DELIVERED.value


class Backlog(BaseModel):
    """One target's backlog at a time ``now`` (see the module docstring)."""

    pending: int = 0
    """Deliveries to the target with status ``pending``."""
    delivered_in_window: int = 0
    """Deliveries to the target marked delivered in ``(now - window, now]``."""
    window_seconds: int
    """The window of ``delivered_in_window`` and the rates, in seconds (300: the last 5 minutes)."""
    rate_per_minute: float = 0.0
    """``delivered_in_window`` per minute of the window."""
    rate_per_second: float = 0.0
    """``delivered_in_window`` per second of the window."""
    oldest_pending_at: datetime | None = None
    """When the outbox event of the oldest pending delivery was published; ``None``: nothing pending."""
    oldest_pending_age_seconds: float | None = None
    """``now - oldest_pending_at`` in seconds (at least 0); ``None``: nothing pending."""


def backlog_of(session: Session, target_ids: Sequence[int], *, now: datetime | None = None,
               window: timedelta = DEFAULT_WINDOW) -> dict[int, Backlog]:
    """The backlog of each of ``target_ids`` (every id gets one; a target with no deliveries has zeros).

    :param now: the time the figures are for (aware; default: now). Deliveries marked delivered after it do not
        count, nor do those at or before ``now - window``.
    :param window: the window of the delivery rate (positive).
    :raises ValueError: ``now`` is naive, or the window is not positive.
    """
    if window.total_seconds() <= 0:
        raise ValueError(f"the rate's window must be positive, got {window}")
    current = _now(now)
    ids = list(dict.fromkeys(target_ids))
    if not ids:
        return {}
    since = current - window

    pending: dict[int, tuple[int, datetime | None]] = {
        target_id: (count, oldest) for target_id, count, oldest in session.execute(
            select(EventDelivery.target_id, func.count(), func.min(OutboxEvent.created_at))
            .select_from(EventDelivery)
            .outerjoin(OutboxEvent, OutboxEvent.id == EventDelivery.event_id)
            .where(EventDelivery.status == _PENDING, EventDelivery.target_id.in_(ids))
            .group_by(EventDelivery.target_id))}
    delivered: dict[int, int] = {
        target_id: count for target_id, count in session.execute(
            select(EventDelivery.target_id, func.count())
            .where(EventDelivery.status == _DELIVERED, EventDelivery.delivered_at > since,
                   EventDelivery.delivered_at <= current, EventDelivery.target_id.in_(ids))
            .group_by(EventDelivery.target_id))}

    seconds = window.total_seconds()
    backlogs = {}
    for target_id in ids:
        count, oldest = pending.get(target_id, (0, None))
        done = delivered.get(target_id, 0)
        age = None if oldest is None else max(0.0, (current - oldest).total_seconds())
        backlogs[target_id] = Backlog(
            pending=count, delivered_in_window=done, window_seconds=round(seconds),
            rate_per_minute=round(done * 60 / seconds, 3), rate_per_second=round(done / seconds, 3),
            oldest_pending_at=oldest if count else None, oldest_pending_age_seconds=age if count else None)
    return backlogs


def backlog_by_target(engine: Engine, now: datetime | None = None,
                      window: timedelta = DEFAULT_WINDOW) -> dict[int, Backlog]:
    """``{target id: Backlog}`` for every target (see :func:`backlog_of`)."""
    with Session(engine) as session:
        ids = list(session.scalars(select(EventTarget.id).order_by(EventTarget.id)))
        return backlog_of(session, ids, now=now, window=window)


__all__ = ["DEFAULT_WINDOW", "Backlog", "backlog_by_target", "backlog_of"]
