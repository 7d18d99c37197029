"""The health of event targets: failure streaks, backoff, automatic pause, and their dead letters.

A target *fails* a publish when it could not take the batch at all: the publisher raised (no credentials, an
unknown connection), EventBridge answered with an error about the target (credentials, access, a bus that does not
exist), or every event of a batch of several failed transiently (the endpoint is down). Events the target refused
on their own merits (a permanent error of one event), or one event alone failing transiently, are the event's
problem, not the target's.

Per target, ``event_target_health`` (:class:`~demobank.db.models.EventTargetHealth`) keeps the current streak:

* **Backoff.** After the ``n``-th failure in a row the target is not claimed at all until
  ``now + min(cap, base * 2**(n-1))`` plus up to ``jitter`` of that (:class:`TargetHealthPolicy`). Then one
  *probe* (at most ``probe_size`` of its oldest due deliveries, a slice of its backlog, never all of it) is sent;
  a probe that succeeds ends the streak and the next round dispatches the target normally. A probe is a real
  attempt for the events in it: an event that was in ``max_attempts`` failed probes is dead-lettered; the rest of
  the backlog waits, pending, without using attempts.
* **Automatic pause.** A failure that comes more than ``pause_after`` after the first failure of the streak pauses
  the target (``paused_at``, ``paused_reason``): it is no longer dispatched, its deliveries stay pending (new events
  are still queued for it), and the suite's check fails (:mod:`demobank.health`). :func:`resume` (the Targets page's
  *Resume*, ``POST /demobank/api/v1/targets/{id}/resume``, ``demobank targets resume NAME``, or enabling the target)
  clears the pause and the streak.

Configuration (environment of the dispatcher): ``DEMOBANK_TARGET_BACKOFF_BASE`` (30s), ``DEMOBANK_TARGET_BACKOFF_CAP``
(15m), ``DEMOBANK_TARGET_PAUSE_AFTER`` (1h; ``never`` to never pause), ``DEMOBANK_TARGET_PROBE_SIZE`` (10); durations
as seconds or with a unit (``90s``, ``15m``, ``1h``, ``2d``).

**Dead letters** (deliveries with status ``dead``) are *new* until they are requeued (:func:`requeue_dead_letters`:
back to ``pending``, attempts reset, the old error kept in ``last_error`` until the next outcome) or dismissed
(:func:`dismiss_dead_letters`: they stay dead and listed, but no longer count as new nor fail the check). A
delivery that dies again is new again.
"""

from __future__ import annotations

import logging
import os
import random
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import BaseModel
from sqlalchemy import ColumnElement, Engine, and_, func, or_, select, update
from sqlalchemy.orm import Session

from demobank.db.models import EventDelivery, EventDeliveryStatus, EventTarget, EventTargetHealth, OutboxEvent
from demobank.events import audit
from demobank.exceptions import ConfigurationError

log = logging.getLogger(__name__)

BACKOFF_BASE_ENV = "DEMOBANK_TARGET_BACKOFF_BASE"
BACKOFF_CAP_ENV = "DEMOBANK_TARGET_BACKOFF_CAP"
PAUSE_AFTER_ENV = "DEMOBANK_TARGET_PAUSE_AFTER"
PROBE_SIZE_ENV = "DEMOBANK_TARGET_PROBE_SIZE"

MAX_SELECTED_EVENT_IDS = 1000
"""At most this many event ids in one requeue or dismiss (use a time window for more)."""

DISPATCHER_ACTOR = "dispatcher"
"""Who pauses a target automatically (in the audit trail)."""

_DEAD = EventDeliveryStatus.DEAD.value
_PENDING = EventDeliveryStatus.PENDING.value


def _now(now: datetime | None) -> datetime:
    if now is None:
        return datetime.now(UTC)
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError(f"naive datetime {now.isoformat()} has no time zone: pass an aware datetime (UTC)")
    return now.astimezone(UTC)


def exponential_backoff(base: float = 30.0, cap: float = 3600.0, jitter: float = 0.2) -> Callable[[int], timedelta]:
    """Return a backoff function: attempt ``n`` (1-based) waits ``min(cap, base * 2**(n-1))`` seconds plus up to
    ``jitter`` times that at random (so that retries of many events spread out)."""
    if base < 0 or cap < 0 or jitter < 0:
        raise ValueError(f"backoff base ({base}), cap ({cap}) and jitter ({jitter}) must not be negative")

    def backoff(attempt: int) -> timedelta:
        delay = min(cap, base * 2 ** min(max(0, attempt - 1), 64))
        return timedelta(seconds=delay * (1 + random.uniform(0, jitter)))

    return backoff


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$", re.IGNORECASE)
_UNIT_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str, name: str) -> timedelta:
    """``"90"``, ``"90s"``, ``"15m"``, ``"1h"``, ``"2d"`` → a timedelta.

    :param name: what the value is (an environment variable), for the error message.
    :raises ConfigurationError: the text is not such a duration.
    """
    match = _DURATION.match(text)
    if match is None:
        raise ConfigurationError(f"{name}={text!r} is not a duration: write seconds (90) or a number with a unit "
                                 "s, m, h or d (90s, 15m, 1h, 2d)")
    return timedelta(seconds=float(match.group(1)) * _UNIT_SECONDS[match.group(2).lower()])


def describe_duration(delta: timedelta) -> str:
    """A short human form: ``1h 5m``, ``42s``."""
    seconds = int(delta.total_seconds())
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            parts.append(f"{seconds // size}{unit}")
            seconds %= size
    if seconds or not parts:
        parts.append(f"{seconds}s")
    return " ".join(parts[:2])


@dataclass(frozen=True)
class TargetHealthPolicy:
    """How the dispatcher treats a failing target (see the module docstring)."""

    backoff_base: timedelta = timedelta(seconds=30)
    backoff_cap: timedelta = timedelta(minutes=15)
    backoff_jitter: float = 0.2
    pause_after: timedelta | None = timedelta(hours=1)
    """``None``: never pause automatically."""
    probe_size: int = 10
    """Deliveries in the probe of a failing target (10: one ``PutEvents`` request)."""

    def __post_init__(self) -> None:
        if self.backoff_base.total_seconds() <= 0 or self.backoff_cap < self.backoff_base:
            raise ConfigurationError(f"target backoff base ({self.backoff_base}) must be positive and at most the cap "
                                     f"({self.backoff_cap}): set {BACKOFF_BASE_ENV} and {BACKOFF_CAP_ENV}")
        if self.backoff_jitter < 0:
            raise ConfigurationError(f"target backoff jitter must not be negative, got {self.backoff_jitter}")
        if self.pause_after is not None and self.pause_after.total_seconds() <= 0:
            raise ConfigurationError(f"pause_after must be positive (or None: never), got {self.pause_after}; "
                                     f"set {PAUSE_AFTER_ENV} to a duration such as 1h, or to never")
        if not 1 <= self.probe_size <= 500:
            raise ConfigurationError(f"probe_size must be between 1 and 500, got {self.probe_size}: set "
                                     f"{PROBE_SIZE_ENV}")

    def backoff(self, failures: int) -> timedelta:
        """How long the target is left alone after its ``failures``-th failure in a row."""
        return exponential_backoff(self.backoff_base.total_seconds(), self.backoff_cap.total_seconds(),
                                   self.backoff_jitter)(failures)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> TargetHealthPolicy:
        """The policy of the ``DEMOBANK_TARGET_*`` variables (defaults for those not set).

        :raises ConfigurationError: a variable holds no valid value (the message names it and the value).
        """
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        if env.get(BACKOFF_BASE_ENV, "").strip():
            values["backoff_base"] = parse_duration(env[BACKOFF_BASE_ENV], BACKOFF_BASE_ENV)
        if env.get(BACKOFF_CAP_ENV, "").strip():
            values["backoff_cap"] = parse_duration(env[BACKOFF_CAP_ENV], BACKOFF_CAP_ENV)
        pause = env.get(PAUSE_AFTER_ENV, "").strip()
        if pause:
            values["pause_after"] = None if pause.lower() in {"never", "off"} else parse_duration(pause,
                                                                                                 PAUSE_AFTER_ENV)
        probe = env.get(PROBE_SIZE_ENV, "").strip()
        if probe:
            if not probe.isdigit():
                raise ConfigurationError(f"{PROBE_SIZE_ENV}={probe!r} is not a whole number: write e.g. 10")
            values["probe_size"] = int(probe)
        return cls(**values)


DEFAULT_POLICY = TargetHealthPolicy()


# -- the streak ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FailureOutcome:
    """What a recorded failure did to the target: its streak, when it may be tried again, and a pause."""

    failures: int
    failing_since: datetime
    next_attempt_at: datetime | None
    paused_reason: str | None = None


def healthy_clause() -> ColumnElement[bool]:
    """For a query outer-joined with ``event_target_health``: the target has no failure streak and no pause."""
    return or_(EventTargetHealth.target_id.is_(None),
               and_(EventTargetHealth.failure_count == 0, EventTargetHealth.paused_at.is_(None)))


def due_probes(engine: Engine, *, now: datetime, target_id: int | None = None) -> list[int]:
    """Enabled, failing, unpaused targets whose backoff is over (their next probe may be sent), by id."""
    query = (select(EventTargetHealth.target_id)
             .join(EventTarget, EventTarget.id == EventTargetHealth.target_id)
             .where(EventTarget.enabled.is_(True), EventTargetHealth.failure_count > 0,
                    EventTargetHealth.paused_at.is_(None),
                    or_(EventTargetHealth.next_attempt_at.is_(None), EventTargetHealth.next_attempt_at <= now))
             .order_by(EventTargetHealth.target_id))
    if target_id is not None:
        query = query.where(EventTargetHealth.target_id == target_id)
    with Session(engine) as session:
        return list(session.scalars(query))


def take_probe(engine: Engine, target_id: int, *, now: datetime, until: datetime) -> bool:
    """Reserve the next probe of a failing target until ``until`` (a lease: a dispatcher that dies gives it back by
    expiry); False if another dispatcher took it, the backoff is not over, or the target recovered or paused."""
    with Session(engine) as session, session.begin():
        return session.execute(
            update(EventTargetHealth)
            .where(EventTargetHealth.target_id == target_id, EventTargetHealth.failure_count > 0,
                   EventTargetHealth.paused_at.is_(None),
                   or_(EventTargetHealth.next_attempt_at.is_(None), EventTargetHealth.next_attempt_at <= now))
            .values(next_attempt_at=until)
            .execution_options(synchronize_session=False)
        ).rowcount == 1


def give_back_probe(engine: Engine, target_id: int, *, now: datetime, until: datetime) -> None:
    """A reserved probe found nothing to send: the target may be probed again at once (when events arrive)."""
    with Session(engine) as session, session.begin():
        session.execute(update(EventTargetHealth)
                        .where(EventTargetHealth.target_id == target_id, EventTargetHealth.next_attempt_at == until)
                        .values(next_attempt_at=now)
                        .execution_options(synchronize_session=False))


def record_failure(engine: Engine, target_id: int, target_name: str, error: str, *, now: datetime,
                   policy: TargetHealthPolicy = DEFAULT_POLICY) -> FailureOutcome:
    """Count a failed publish of the target: back it off, and pause it if the streak lasted past the pause limit."""
    with Session(engine) as session, session.begin():
        row = session.scalar(select(EventTargetHealth).where(EventTargetHealth.target_id == target_id)
                             .with_for_update())
        if row is None:
            row = EventTargetHealth(target_id=target_id, failure_count=0)
            session.add(row)
        if row.paused_at is not None:  # paused meanwhile by another dispatcher: nothing more to decide
            return FailureOutcome(row.failure_count, row.failing_since or now, None, None)
        failures = (row.failure_count or 0) + 1
        since = row.failing_since if row.failure_count and row.failing_since is not None else now
        row.failure_count, row.failing_since = failures, since
        row.last_error, row.last_failure_at = error, now
        reason = None
        if policy.pause_after is not None and now - since >= policy.pause_after:
            reason = (f"paused automatically at {now:%Y-%m-%d %H:%M:%S} UTC: failing continuously for "
                      f"{describe_duration(now - since)} (since {since:%Y-%m-%d %H:%M:%S} UTC, {failures} failed "
                      f"attempts; the limit {PAUSE_AFTER_ENV} is {describe_duration(policy.pause_after)}). Last "
                      f"error: {error} — fix the target, then resume it (or enable it) on the Targets page or with "
                      f"`demobank targets resume {target_name!r}`")
            row.paused_at, row.paused_reason, row.next_attempt_at = now, reason, None
            record_audit(session, actor=DISPATCHER_ACTOR, action="paused", target_id=target_id,
                         target_name=target_name, details={"reason": reason, "failures": failures,
                                                           "failing_since": since.isoformat()})
            log.error("event target %r (id %d) paused: %s", target_name, target_id, reason)
        else:
            row.next_attempt_at = now + policy.backoff(failures)
            log.warning("event target %r (id %d) failed %d time(s) in a row since %s; next probe at %s: %s",
                        target_name, target_id, failures, since.isoformat(), row.next_attempt_at.isoformat(), error)
        return FailureOutcome(failures, since, row.next_attempt_at, reason)


def record_success(engine: Engine, target_id: int) -> bool:
    """The target took a batch: end its failure streak. Returns whether there was one (one cheap statement)."""
    with Session(engine) as session, session.begin():
        ended = session.execute(
            update(EventTargetHealth)
            .where(EventTargetHealth.target_id == target_id, EventTargetHealth.failure_count > 0,
                   EventTargetHealth.paused_at.is_(None))
            .values(failure_count=0, failing_since=None, next_attempt_at=None)
            .execution_options(synchronize_session=False)
        ).rowcount
    if ended:
        log.info("event target %d recovered: its failure streak ended", target_id)
    return bool(ended)


def clear_streak(session: Session, target_id: int) -> bool:
    """In the caller's transaction: forget the target's failure streak and pause (enabling a target calls this).

    :return: whether the target was paused.
    """
    row = session.get(EventTargetHealth, target_id)
    if row is None:
        return False
    was_paused = row.paused_at is not None
    row.failure_count, row.failing_since, row.next_attempt_at = 0, None, None
    row.paused_at, row.paused_reason = None, None
    return was_paused


# -- audit --------------------------------------------------------------------------------------------------------


def record_audit(session: Session, *, actor: str, action: str, target_id: int | None, target_name: str,
                 details: dict[str, Any]) -> None:
    """Record an operator's (or the dispatcher's) action on a target in the targets' audit trail
    (:func:`demobank.events.audit.record`), in the caller's transaction, and log it."""
    audit.record(session, actor=actor, action=action, target_id=target_id, target_name=target_name, details=details)
    log.info("audit: %s %s target %r (id %s): %s", actor, action, target_name, target_id, details)


# -- lookups and views --------------------------------------------------------------------------------------------


def find_target(session: Session, target: int | str) -> EventTarget:
    """A target by id or by name.

    :raises LookupError: no such target (the message says how to list them).
    """
    row = (session.get(EventTarget, target) if isinstance(target, int)
           else session.scalar(select(EventTarget).where(EventTarget.name == target)))
    if row is None:
        what = f"id {target}" if isinstance(target, int) else f"name {target!r}"
        raise LookupError(f"no event target has {what}: list them with `demobank targets list` or on the Targets page")
    return row


class TargetHealth(BaseModel):
    """A target's health as the API, the page and the check show it."""

    state: str
    """``ok``, ``failing`` (backing off between probes) or ``paused``."""
    failure_count: int = 0
    failing_since: datetime | None = None
    next_attempt_at: datetime | None = None
    last_error: str | None = None
    last_failure_at: datetime | None = None
    paused_at: datetime | None = None
    paused_reason: str | None = None
    dead_letters: int = 0
    new_dead_letters: int = 0
    """Dead letters not requeued nor dismissed."""


def dead_letter_counts(session: Session, target_ids: Sequence[int] | None = None) -> dict[int, tuple[int, int]]:
    """``{target id: (dead letters, new dead letters)}`` for the targets that have any."""
    query = (select(EventDelivery.target_id, func.count(),
                    func.count().filter(EventDelivery.dismissed_at.is_(None)))
             .where(EventDelivery.status == _DEAD).group_by(EventDelivery.target_id))
    if target_ids is not None:
        query = query.where(EventDelivery.target_id.in_(list(target_ids)))
    return {target_id: (total, new) for target_id, total, new in session.execute(query)}


def health_of(session: Session, target_ids: Sequence[int]) -> dict[int, TargetHealth]:
    """The health of each target (every id gets one: no row is a healthy target)."""
    ids = list(target_ids)
    rows = {row.target_id: row for row in session.scalars(
        select(EventTargetHealth).where(EventTargetHealth.target_id.in_(ids)))} if ids else {}
    dead = dead_letter_counts(session, ids) if ids else {}
    views = {}
    for target_id in ids:
        row = rows.get(target_id)
        total, new = dead.get(target_id, (0, 0))
        if row is None:
            views[target_id] = TargetHealth(state="ok", dead_letters=total, new_dead_letters=new)
            continue
        state = "paused" if row.paused_at is not None else "failing" if row.failure_count else "ok"
        views[target_id] = TargetHealth(
            state=state, failure_count=row.failure_count, failing_since=row.failing_since,
            next_attempt_at=row.next_attempt_at if state == "failing" else None, last_error=row.last_error,
            last_failure_at=row.last_failure_at, paused_at=row.paused_at, paused_reason=row.paused_reason,
            dead_letters=total, new_dead_letters=new)
    return views


# -- operators' actions -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ResumeOutcome:
    """What resuming a target did."""

    target_id: int
    target_name: str
    was_paused: bool
    was_failing: bool
    enabled: bool

    def describe(self) -> str:
        """One sentence for the CLI and the page."""
        if not self.was_paused and not self.was_failing:
            what = f"event target {self.target_name!r} was neither paused nor failing: nothing to resume"
        elif self.was_paused:
            what = f"event target {self.target_name!r} resumed: its pause and failure streak are cleared"
        else:
            what = f"event target {self.target_name!r}: failure streak cleared, it is dispatched again at once"
        if not self.enabled:
            what += "; it is disabled, so it is still not dispatched: enable it"
        return what


def resume(engine: Engine, target: int | str, *, actor: str) -> ResumeOutcome:
    """Clear a target's pause and failure streak: the next dispatch round sends its pending deliveries.

    :param target: id or name.
    :param actor: who resumed it (audit trail).
    :raises LookupError: no such target.
    """
    with Session(engine) as session, session.begin():
        row = find_target(session, target)
        health = session.get(EventTargetHealth, row.id)
        was_failing = bool(health and health.failure_count)
        was_paused = clear_streak(session, row.id)
        if was_paused or was_failing:
            record_audit(session, actor=actor, action="resumed", target_id=row.id, target_name=row.name,
                         details={"was_paused": was_paused, "failures": health.failure_count if health else 0})
        return ResumeOutcome(row.id, row.name, was_paused, was_failing, row.enabled)


@dataclass(frozen=True)
class DeadLetterSelection:
    """Which dead letters of a target: all of them, these event ids, and/or events whose time is in
    ``[since, until)``.

    :raises ValueError: the window is empty or has no time zone, or too many ids are given.
    """

    event_ids: tuple[str, ...] | None = None
    since: datetime | None = None
    until: datetime | None = None

    def __post_init__(self) -> None:
        if self.event_ids is not None:
            if not self.event_ids:
                raise ValueError("event_ids is an empty list: give at least one event id, or none for every dead "
                                 "letter of the target")
            if len(self.event_ids) > MAX_SELECTED_EVENT_IDS:
                raise ValueError(f"{len(self.event_ids)} event ids given, at most {MAX_SELECTED_EVENT_IDS} at once: "
                                 "select by time window (since/until) instead")
        for name in ("since", "until"):
            value = getattr(self, name)
            if value is not None and (value.tzinfo is None or value.utcoffset() is None):
                raise ValueError(f"{name} {value.isoformat()} has no UTC offset: write it with Z or +HH:MM")
        if self.since is not None and self.until is not None and self.until <= self.since:
            raise ValueError(f"the window is empty: since {self.since.isoformat()} is not before until "
                             f"{self.until.isoformat()}")

    def describe(self) -> str:
        parts = []
        if self.event_ids is not None:
            parts.append(f"{len(self.event_ids)} chosen event id(s)")
        if self.since is not None:
            parts.append(f"events since {self.since.isoformat()}")
        if self.until is not None:
            parts.append(f"events before {self.until.isoformat()}")
        return ", ".join(parts) or "all"

    def conditions(self, target_id: int) -> list[ColumnElement[bool]]:
        where = [EventDelivery.target_id == target_id, EventDelivery.status == _DEAD]
        if self.event_ids is not None:
            where.append(EventDelivery.event_id.in_(list(self.event_ids)))
        if self.since is not None or self.until is not None:
            window = select(OutboxEvent.id)
            if self.since is not None:
                window = window.where(OutboxEvent.time >= self.since)
            if self.until is not None:
                window = window.where(OutboxEvent.time < self.until)
            where.append(EventDelivery.event_id.in_(window))
        return where


ALL_DEAD_LETTERS = DeadLetterSelection()


@dataclass(frozen=True)
class DeadLetterOutcome:
    """What a requeue or dismiss did."""

    action: str
    target_id: int
    target_name: str
    count: int
    event_ids: list[str] = field(default_factory=list)
    """The first 100 of the event ids concerned."""
    paused: bool = False
    enabled: bool = True

    def describe(self) -> str:
        """One sentence for the CLI and the page."""
        if self.action == "requeued":
            text = f"{self.count} dead letter(s) of event target {self.target_name!r} requeued (pending again)"
            if self.count and (self.paused or not self.enabled):
                how = "resume it" if self.paused else "enable it"
                text += f"; the target is {'paused' if self.paused else 'disabled'}: {how} to deliver them"
            return text
        return (f"{self.count} dead letter(s) of event target {self.target_name!r} dismissed (they stay dead and "
                "listed, and no longer count as new)")


def _select_dead_letters(session: Session, target_id: int, selection: DeadLetterSelection,
                         only_new: bool) -> list[tuple[str, str | None]]:
    where = selection.conditions(target_id)
    if only_new:
        where.append(EventDelivery.dismissed_at.is_(None))
    rows = [(event_id, error) for event_id, error in session.execute(
        select(EventDelivery.event_id, EventDelivery.last_error).where(*where).with_for_update())]
    if selection.event_ids is not None:
        missing = sorted(set(selection.event_ids) - {event_id for event_id, _ in rows})
        if missing:
            statuses = dict(session.execute(select(EventDelivery.event_id, EventDelivery.status).where(
                EventDelivery.target_id == target_id, EventDelivery.event_id.in_(missing))).all())
            described = ", ".join(f"{event_id} ({statuses.get(event_id, 'no delivery to this target')})"
                                  for event_id in missing[:20])
            more = f" and {len(missing) - 20} more" if len(missing) > 20 else ""
            raise ValueError(f"not dead letters of this target: {described}{more}. Nothing was changed: leave them "
                             "out (see the target's deliveries for the ids that are dead)")
    return rows


def requeue_dead_letters(engine: Engine, target: int | str, selection: DeadLetterSelection = ALL_DEAD_LETTERS, *,
                         actor: str, now: datetime | None = None) -> DeadLetterOutcome:
    """Set a target's dead letters back to ``pending`` (attempts 0, due now): the next round delivers them, in
    outbox order, once the target works. Their last error is kept, prefixed, until the next outcome replaces it.

    :param target: id or name.
    :raises LookupError: no such target.
    :raises ValueError: chosen ids that are not dead letters of the target (then nothing changes).
    """
    current = _now(now)
    with Session(engine) as session, session.begin():
        row = find_target(session, target)
        rows = _select_dead_letters(session, row.id, selection, only_new=False)
        stamp = f"requeued by {actor} at {current:%Y-%m-%d %H:%M:%S} UTC"
        for start in range(0, len(rows), 500):
            chunk = rows[start:start + 500]
            session.execute(
                update(EventDelivery)
                .where(EventDelivery.target_id == row.id, EventDelivery.status == _DEAD,
                       EventDelivery.event_id.in_([event_id for event_id, _ in chunk]))
                .values(status=_PENDING, attempts=0, next_attempt_at=None, claimed_by=None, claimed_until=None,
                        dismissed_at=None, updated_at=current,
                        last_error=func.coalesce(f"{stamp}; dead-letter error: " + EventDelivery.last_error, stamp))
                .execution_options(synchronize_session=False))
        health = session.get(EventTargetHealth, row.id)
        paused = bool(health and health.paused_at is not None)
        outcome = DeadLetterOutcome("requeued", row.id, row.name, len(rows), [e for e, _ in rows[:100]], paused,
                                    row.enabled)
        if rows:
            errors = sorted({error for _, error in rows if error})
            record_audit(session, actor=actor, action="requeued", target_id=row.id, target_name=row.name,
                         details={"dead_letters": len(rows), "selection": selection.describe(),
                                  "event_ids": outcome.event_ids, "errors": errors[:10]})
    log.info("%s (by %s)", outcome.describe(), actor)
    return outcome


def dismiss_dead_letters(engine: Engine, target: int | str, selection: DeadLetterSelection = ALL_DEAD_LETTERS, *,
                         actor: str, now: datetime | None = None) -> DeadLetterOutcome:
    """Mark a target's new dead letters as seen: they stay dead (listed, requeueable) but are no longer new.

    :raises LookupError: no such target.
    :raises ValueError: chosen ids that are not dead letters of the target (then nothing changes).
    """
    current = _now(now)
    with Session(engine) as session, session.begin():
        row = find_target(session, target)
        rows = _select_dead_letters(session, row.id, selection, only_new=False)
        new = [event_id for event_id, _ in session.execute(
            select(EventDelivery.event_id, EventDelivery.last_error).where(
                *selection.conditions(row.id), EventDelivery.dismissed_at.is_(None)))]
        for start in range(0, len(new), 500):
            session.execute(update(EventDelivery)
                            .where(EventDelivery.target_id == row.id, EventDelivery.status == _DEAD,
                                   EventDelivery.event_id.in_(new[start:start + 500]))
                            .values(dismissed_at=current)
                            .execution_options(synchronize_session=False))
        outcome = DeadLetterOutcome("dismissed", row.id, row.name, len(new), new[:100])
        if new:
            record_audit(session, actor=actor, action="dismissed", target_id=row.id,
                         target_name=row.name, details={"dead_letters": len(new), "selection": selection.describe(),
                                                        "event_ids": outcome.event_ids, "of": len(rows)})
    log.info("%s (by %s)", outcome.describe(), actor)
    return outcome


__all__ = [
    "ALL_DEAD_LETTERS", "DEFAULT_POLICY", "DeadLetterOutcome", "DeadLetterSelection", "FailureOutcome",
    "ResumeOutcome", "TargetHealth", "TargetHealthPolicy", "clear_streak", "dead_letter_counts",
    "dismiss_dead_letters", "due_probes", "exponential_backoff", "find_target", "give_back_probe", "health_of",
    "healthy_clause", "parse_duration", "record_failure", "record_success", "requeue_dead_letters", "resume",
    "take_probe",
]
