"""Delivering outbox events to their targets: claim, publish, record. Airflow-free (a DAG wraps it).

One round (:func:`dispatch_once`):

1. :func:`claim_batch` claims up to ``limit`` ``pending`` ``event_deliveries`` rows that are due (``next_attempt_at``
   null or past) and free (no claim, or an expired lease), to enabled targets that are healthy (no failure streak,
   not paused), in outbox ``sequence`` order, by setting ``claimed_by`` and ``claimed_until`` in one transaction.
   PostgreSQL: ``SELECT … FOR UPDATE SKIP LOCKED`` then ``UPDATE``; SQLite: the engine opens every transaction with
   ``BEGIN IMMEDIATE``, which serialises writers, and the ``UPDATE`` is guarded by the claim condition; on both the
   rows actually claimed are read back by worker and lease.
2. Each failing target whose backoff is over gets one *probe*: at most ``policy.probe_size`` of its oldest due
   deliveries (:mod:`demobank.events.target_health`). A failing target is not claimed otherwise: a broken target
   costs one small batch per backoff period, whatever its backlog, and other targets keep their pace.
3. The claimed deliveries are grouped by target and published in batches of ``publish_batch``; before each batch
   the round's lease is renewed (rows another worker took over meanwhile are left to it), so a long round never
   loses its claims mid-way. A failure of one target never stops the others.
4. Outcomes are written after each publish returned, only to rows still claimed by this worker with this lease:
   delivered (``delivered_at``, ``external_id``); a transient failure of an event is retried later with exponential
   backoff and jitter; a permanent failure of the event, or ``max_attempts`` reached, is a dead letter
   (``status = 'dead'``, ``last_error`` says why). A batch the target could not take at all (credentials, missing
   bus, every event of several failing transiently) is a *target failure*: the batch's attempts count, the rest of the
   target's claim is released untouched (its attempt given back), and the target backs off as a whole, then pauses
   itself after ``policy.pause_after`` of continuous failure.

Delivery is at least once: a worker that dies mid-batch leaves its rows claimed until the lease expires; another
worker then claims and publishes them again. Duplicates carry the same envelope ``id``. A claim counts as an
attempt, so an event that every dispatcher dies on (``max_attempts`` claims without an outcome) is dead-lettered
instead of stalling the deliveries behind it; deliveries released without being published give the attempt back.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import Engine, case, func, or_, select, tuple_, update
from sqlalchemy.orm import Session

from demobank.db.models import (
    EventDelivery,
    EventDeliveryStatus,
    EventTarget,
    EventTargetHealth,
    OutboxEvent,
    TargetKind,
)
from demobank.events.eventbridge import Delivered, Failed, PublishResult
from demobank.events.target_health import (
    DEFAULT_POLICY,
    TargetHealthPolicy,
    due_probes,
    exponential_backoff,
    give_back_probe,
    healthy_clause,
    record_failure,
    record_success,
    take_probe,
)
from demobank.events.targets import settings_of

log = logging.getLogger(__name__)

DEFAULT_LIMIT = 500
DEFAULT_LEASE_SECONDS = 120
DEFAULT_MAX_ATTEMPTS = 8
DEFAULT_PUBLISH_BATCH = 500
"""Deliveries of one target published between two renewals of the round's lease."""

_PENDING = EventDeliveryStatus.PENDING.value
_DELIVERED = EventDeliveryStatus.DELIVERED.value
_DEAD = EventDeliveryStatus.DEAD.value


def _now(now: datetime | None) -> datetime:
    if now is None:
        return datetime.now(UTC)
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError(f"naive datetime {now.isoformat()} has no time zone: pass an aware datetime (UTC)")
    return now.astimezone(UTC)


DEFAULT_BACKOFF = exponential_backoff()


@dataclass(frozen=True)
class Target:
    """An event target as the publisher factory sees it."""

    id: int
    name: str
    kind: str
    config: dict[str, Any]


@dataclass(frozen=True)
class Claimed:
    """One delivery claimed by a worker: the envelope and the target it goes to."""

    event_id: str
    sequence: int
    envelope: dict[str, Any]
    target: Target
    attempts: int
    claimed_by: str
    claimed_until: datetime


class Publisher(Protocol):
    """What the dispatcher needs of a target's publisher (an ``EventBridgePublisher``)."""

    def publish(self, envelopes: Sequence[Mapping[str, Any]]) -> PublishResult: ...


PublisherFactory = Callable[[Target], Publisher]


def eventbridge_publisher(target: Target) -> Publisher:
    """An ``EventBridgePublisher`` over the amazon provider's ``EventBridgeHook``, configured by the target
    (:class:`demobank.events.targets.EventBridgeSettings`: ``aws_conn_id``, ``bus_name``, ``region_name``)."""
    from airflow.providers.amazon.aws.hooks.eventbridge import EventBridgeHook

    from demobank.events.eventbridge import EventBridgePublisher

    settings = settings_of(target.kind, target.config)
    hook = EventBridgeHook(aws_conn_id=settings.aws_conn_id, region_name=settings.region_name)
    return EventBridgePublisher(hook, settings.bus_name)


def airflow_dag_publisher(target: Target) -> Publisher:
    """An :class:`~demobank.events.airflow_dag.AirflowDagPublisher` for the target's ``dag_id``."""
    from demobank.events.airflow_dag import AirflowDagPublisher

    return AirflowDagPublisher(settings_of(target.kind, target.config).dag_id)


PUBLISHERS: dict[str, PublisherFactory] = {
    TargetKind.EVENTBRIDGE.value: eventbridge_publisher,
    TargetKind.AIRFLOW_DAG.value: airflow_dag_publisher,
}


def default_publisher(target: Target) -> Publisher:
    """The default factory: the publisher of the target's kind."""
    factory = PUBLISHERS.get(target.kind)
    if factory is None:
        raise ValueError(f"target {target.name!r} has kind {target.kind!r}, which has no publisher: use one of "
                         f"{', '.join(PUBLISHERS)}")
    return factory(target)


@dataclass
class DispatchReport:
    """What one or more dispatch rounds did (counts of deliveries; ``probes``: failing targets probed)."""

    claimed: int = 0
    delivered: int = 0
    retried: int = 0
    dead: int = 0
    released: int = 0
    unrecorded: int = 0
    rounds: int = 0
    probes: int = 0
    target_errors: dict[str, str] = field(default_factory=dict)
    paused: dict[str, str] = field(default_factory=dict)
    """Targets this dispatch paused, with the reason."""

    def add(self, other: DispatchReport) -> None:
        """Add another report's counts to this one."""
        self.claimed += other.claimed
        self.delivered += other.delivered
        self.retried += other.retried
        self.dead += other.dead
        self.released += other.released
        self.unrecorded += other.unrecorded
        self.rounds += other.rounds
        self.probes += other.probes
        self.target_errors.update(other.target_errors)
        self.paused.update(other.paused)

    def as_dict(self) -> dict[str, Any]:
        """A JSON-serialisable summary (for XCom)."""
        return {"claimed": self.claimed, "delivered": self.delivered, "retried": self.retried, "dead": self.dead,
                "released": self.released, "unrecorded": self.unrecorded, "rounds": self.rounds,
                "probes": self.probes, "target_errors": dict(self.target_errors), "paused": dict(self.paused)}


# -- claiming ---------------------------------------------------------------------------------------------


def claim_batch(engine: Engine, worker_id: str, *, target_id: int | None = None, limit: int = DEFAULT_LIMIT,
                lease_seconds: float = DEFAULT_LEASE_SECONDS, now: datetime | None = None,
                healthy_only: bool = True) -> list[Claimed]:
    """Claim up to ``limit`` due, free, pending deliveries (to enabled, unpaused targets) for ``worker_id``, in
    outbox order.

    Two workers running at once never get the same rows.

    :param target_id: only deliveries to this target.
    :param lease_seconds: how long the claim holds; after it another worker may claim the rows again.
    :param now: the current time (tests inject it).
    :param healthy_only: skip targets with a failure streak (they get probes instead); False for a probe.
    :return: the claimed deliveries, ordered by outbox sequence.
    """
    if not worker_id:
        raise ValueError("worker_id is empty: give each dispatcher a unique id, e.g. host:pid")
    if limit < 1:
        raise ValueError(f"limit must be at least 1, got {limit}")
    if lease_seconds <= 0:
        raise ValueError(f"lease_seconds must be positive, got {lease_seconds}")
    current = _now(now)
    until = current + timedelta(seconds=lease_seconds)
    free = or_(EventDelivery.claimed_until.is_(None), EventDelivery.claimed_until < current)
    due = or_(EventDelivery.next_attempt_at.is_(None), EventDelivery.next_attempt_at <= current)
    query = (
        select(EventDelivery.event_id, EventDelivery.target_id)
        .join(OutboxEvent, OutboxEvent.id == EventDelivery.event_id)
        .join(EventTarget, EventTarget.id == EventDelivery.target_id)
        .outerjoin(EventTargetHealth, EventTargetHealth.target_id == EventDelivery.target_id)
        .where(EventDelivery.status == _PENDING, EventTarget.enabled.is_(True), due, free,
               healthy_clause() if healthy_only else EventTargetHealth.paused_at.is_(None))
        .order_by(OutboxEvent.sequence, EventDelivery.target_id)
        .limit(limit)
    )
    if target_id is not None:
        query = query.where(EventDelivery.target_id == target_id)
    with Session(engine) as session, session.begin():
        if engine.dialect.name == "postgresql":
            # One statement: pick (SKIP LOCKED) and mark in a CTE; 500-pair tuple IN lists are slow to plan there.
            picked = query.with_for_update(skip_locked=True, of=EventDelivery).cte("picked")
            keys = [tuple(row) for row in session.execute(
                update(EventDelivery)
                .where(EventDelivery.event_id == picked.c.event_id, EventDelivery.target_id == picked.c.target_id)
                .values(claimed_by=worker_id, claimed_until=until, attempts=EventDelivery.attempts + 1)
                .returning(EventDelivery.event_id, EventDelivery.target_id)
                .execution_options(synchronize_session=False)
            )]
        else:
            keys = [tuple(row) for row in session.execute(query)]
            if keys:
                session.execute(
                    update(EventDelivery)
                    .where(tuple_(EventDelivery.event_id, EventDelivery.target_id).in_(keys),
                           EventDelivery.status == _PENDING, free)
                    # The attempt counts from the claim: a worker that dies while publishing has used it too, so
                    # an event that kills every dispatcher reaches max_attempts instead of stalling the outbox.
                    .values(claimed_by=worker_id, claimed_until=until, attempts=EventDelivery.attempts + 1)
                    .execution_options(synchronize_session=False)
                )
        if not keys:
            return []
        rows = session.execute(
            select(EventDelivery.event_id, EventDelivery.attempts, OutboxEvent.sequence, OutboxEvent.envelope,
                   EventTarget.id, EventTarget.name, EventTarget.kind, EventTarget.config)
            .join(OutboxEvent, OutboxEvent.id == EventDelivery.event_id)
            .join(EventTarget, EventTarget.id == EventDelivery.target_id)
            .where(EventDelivery.event_id.in_(sorted({event_id for event_id, _ in keys})),
                   EventDelivery.claimed_by == worker_id, EventDelivery.claimed_until == until)
            .order_by(OutboxEvent.sequence, EventDelivery.target_id)
        ).all()
    targets: dict[int, Target] = {}
    claimed = []
    for event_id, attempts, sequence, envelope, t_id, t_name, t_kind, t_config in rows:
        target = targets.setdefault(t_id, Target(t_id, t_name, t_kind, dict(t_config or {})))
        # ``attempts`` of a Claimed: the attempts before this claim (outcomes add one when recorded).
        claimed.append(Claimed(event_id, sequence, json.loads(envelope), target, attempts - 1, worker_id, until))
    log.info("dispatcher %s claimed %d of %d candidate deliveries until %s", worker_id, len(claimed), len(keys),
             until.isoformat())
    return claimed


# -- dispatching ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Abandoned:
    """The outcome of a delivery that dispatchers kept dying on: dead-lettered without being sent again."""

    message: str
    delivered: bool = False


def _group(claimed: Iterable[Claimed]) -> dict[int, list[Claimed]]:
    groups: dict[int, list[Claimed]] = {}
    for item in claimed:
        groups.setdefault(item.target.id, []).append(item)
    return groups


Clock = Callable[[], datetime]


def _clock(now: datetime | None, clock: Clock | None) -> Clock:
    if clock is not None:
        return lambda: _now(clock())
    if now is not None:
        fixed = _now(now)
        return lambda: fixed
    return lambda: datetime.now(UTC)


@dataclass
class _Lease:
    """The lease of one round's claims (every claim of a round shares ``until``), renewed batch by batch."""

    engine: Engine
    worker_id: str
    until: datetime
    seconds: float
    clock: Clock

    def renew(self) -> set[tuple[str, int]] | None:
        """Extend the lease of every row this round still holds, once less than half of it is left; return those
        rows (``None``: not renewed yet). Rows missing from the answer were taken over by another worker.

        Renewed before each batch, so a round of any length keeps its claims as long as one batch takes less than
        half the lease."""
        now = self.clock()
        if self.until - now > timedelta(seconds=self.seconds / 2):
            return None
        until = now + timedelta(seconds=self.seconds)
        table = EventDelivery.__table__
        with Session(self.engine) as session, session.begin():
            held = {(event_id, target_id) for event_id, target_id in session.execute(
                update(table)
                .where(table.c.claimed_by == self.worker_id, table.c.claimed_until == self.until,
                       table.c.status == _PENDING)
                .values(claimed_until=until)
                .returning(table.c.event_id, table.c.target_id))}
        self.until = until
        return held


def _publish(target: Target, items: list[Claimed], factory: PublisherFactory) -> PublishResult | str:
    """Publish one target's envelopes; return the result, or an error text naming the target."""
    try:
        publisher = factory(target)
        return publisher.publish([item.envelope for item in items])
    except Exception as error:
        log.exception("target %r (id %d): publishing failed", target.name, target.id)
        return (f"target {target.name!r} (id {target.id}) could not publish: {type(error).__name__}: {error} — "
                "check the target's config and connection")


def _target_failure(target: Target, items: list[Claimed], result: PublishResult | str) -> str | None:
    """Why the target as a whole could not take this batch, or None: the publisher raised, an error about the
    target itself (credentials, access, missing bus), or every event of a batch of several failed transiently (the
    endpoint is down; one event alone failing transiently is that event's retry)."""
    if isinstance(result, str):
        return result
    outcomes = [result.get(item.event_id) for item in items]
    fatal = next((o for o in outcomes if isinstance(o, Failed) and o.target_error), None)
    if fatal is not None:
        return f"target {target.name!r} (id {target.id}): {fatal.code}: {fatal.message}"
    if len(outcomes) > 1 and all(isinstance(o, Failed) and o.transient for o in outcomes):
        first = outcomes[0]
        return (f"target {target.name!r} (id {target.id}) accepted none of {len(items)} event(s): {first.code}: "
                f"{first.message}")
    return None


def _record_delivered(session: Session, worker_id: str, target: Target, claimed_until: datetime,
                      delivered: Mapping[str, Delivered], now: datetime, report: DispatchReport) -> None:
    """Mark a round's delivered events in one statement per 500 (their attempt was counted at the claim)."""
    table = EventDelivery.__table__
    event_ids = list(delivered)
    recorded: set[str] = set()
    for start in range(0, len(event_ids), 500):
        chunk = event_ids[start:start + 500]
        external_id = case({event_id: delivered[event_id].event_id for event_id in chunk}, value=table.c.event_id)
        recorded.update(session.execute(
            update(table)
            .where(table.c.event_id.in_(chunk), table.c.target_id == target.id, table.c.status == _PENDING,
                   table.c.claimed_by == worker_id, table.c.claimed_until == claimed_until)
            .values(status=_DELIVERED, delivered_at=now, external_id=external_id, last_error=None,
                    next_attempt_at=None, claimed_by=None, claimed_until=None, updated_at=now)
            .returning(table.c.event_id)
        ).scalars())
    report.delivered += len(recorded)
    for event_id in event_ids:
        if event_id not in recorded:
            report.unrecorded += 1
            log.warning("dispatcher %s lost its claim on event %s for target %r (lease expired): outcome delivered "
                        "not recorded", worker_id, event_id, target.name)


def _record(engine: Engine, worker_id: str, claimed_until: datetime, target: Target, items: list[Claimed],
            result: PublishResult | str, *, max_attempts: int, backoff: Callable[[int], timedelta], now: datetime,
            report: DispatchReport, released: str | None = None) -> None:
    """Write the outcome of each delivery of one target, only to rows this worker still holds.

    :param released: these deliveries were not published (the target failed on an earlier batch): give their
        attempt back, with this error.
    """
    with Session(engine) as session, session.begin():
        delivered = {item.event_id: outcome for item in items
                     if isinstance(result, PublishResult) and isinstance(outcome := result.get(item.event_id),
                                                                         Delivered)}
        if delivered:
            _record_delivered(session, worker_id, target, claimed_until, delivered, now, report)
        for item in items:
            if item.event_id in delivered:
                continue
            values: dict[str, Any] = {"claimed_by": None, "claimed_until": None, "updated_at": now}
            outcome = result.get(item.event_id) if isinstance(result, PublishResult) else None
            attempts = item.attempts + 1
            if released is not None:
                values.update(last_error=released, attempts=item.attempts)  # not sent: the attempt is given back
                kind = "released"
            elif isinstance(result, str) or (isinstance(outcome, Failed) and outcome.target_error):
                message = result if isinstance(result, str) else (
                    f"target {target.name!r} (id {target.id}): {outcome.code}: {outcome.message}")
                if attempts >= max_attempts:
                    values.update(status=_DEAD, attempts=attempts, next_attempt_at=None, dismissed_at=None,
                                  last_error=f"gave up after {attempts} attempts (max_attempts {max_attempts}): "
                                             f"{message}")
                    kind = "dead"
                else:
                    # The target backs off as a whole (event_target_health): no backoff of the event's own.
                    values.update(attempts=attempts, last_error=message, next_attempt_at=None)
                    kind = "retried"
            else:
                if isinstance(outcome, _Abandoned):
                    failed = Failed("DispatcherDied", outcome.message, False)
                elif outcome is None:
                    failed = Failed("MissingOutcome", "the publisher returned no outcome for this event", True)
                else:
                    failed = outcome
                error = f"{failed.code}: {failed.message}"
                if not failed.transient:
                    values.update(status=_DEAD, attempts=attempts, next_attempt_at=None, dismissed_at=None,
                                  last_error=f"permanent failure at target {target.name!r}: {error}")
                    kind = "dead"
                elif attempts >= max_attempts:
                    values.update(status=_DEAD, attempts=attempts, next_attempt_at=None, dismissed_at=None,
                                  last_error=f"gave up after {attempts} attempts (max_attempts {max_attempts}) at "
                                             f"target {target.name!r}; last error {error}")
                    kind = "dead"
                else:
                    values.update(attempts=attempts, last_error=error, next_attempt_at=now + backoff(attempts))
                    kind = "retried"
            changed = session.execute(
                update(EventDelivery)
                .where(EventDelivery.event_id == item.event_id, EventDelivery.target_id == target.id,
                       EventDelivery.status == _PENDING, EventDelivery.claimed_by == worker_id,
                       EventDelivery.claimed_until == claimed_until)
                .values(**values)
                .execution_options(synchronize_session=False)
            ).rowcount
            if changed:
                setattr(report, kind, getattr(report, kind) + 1)
            else:
                report.unrecorded += 1
                log.warning("dispatcher %s lost its claim on event %s for target %r (lease expired): outcome %s "
                            "not recorded", worker_id, item.event_id, target.name, kind)


@dataclass
class _Round:
    """What every target's dispatch in one round shares."""

    engine: Engine
    worker_id: str
    factory: PublisherFactory
    lease: _Lease
    report: DispatchReport
    max_attempts: int
    backoff: Callable[[int], timedelta]
    policy: TargetHealthPolicy
    publish_batch: int

    def record(self, target: Target, items: list[Claimed], result: PublishResult | str,
               released: str | None = None) -> None:
        _record(self.engine, self.worker_id, self.lease.until, target, items, result, max_attempts=self.max_attempts,
                backoff=self.backoff, now=self.lease.clock(), report=self.report, released=released)

    def still_held(self, target: Target, items: list[Claimed]) -> list[Claimed]:
        """Renew the round's lease; drop (and count) the items another worker took over."""
        held = self.lease.renew()
        if held is None:
            return items
        kept = [item for item in items if (item.event_id, target.id) in held]
        for item in items:
            if (item.event_id, target.id) not in held:
                self.report.unrecorded += 1
                log.warning("dispatcher %s lost its claim on event %s for target %r before publishing it (another "
                            "worker took it over): left to that worker", self.worker_id, item.event_id, target.name)
        return [replace(item, claimed_until=self.lease.until) for item in kept]

    def dispatch_target(self, target: Target, items: list[Claimed]) -> None:
        """Publish one target's claimed deliveries batch by batch; stop at its first failure."""
        # Deliveries claimed max_attempts times without an outcome: the dispatchers died publishing them (killed,
        # out of memory, a crash in a library). Dead-lettered, not sent again, so they cannot stall the rest.
        abandoned = [item for item in items if item.attempts >= self.max_attempts]
        if abandoned:
            self.record(target, abandoned, PublishResult(
                {item.event_id: _Abandoned(f"claimed {item.attempts} times by dispatchers that never recorded an "
                                           "outcome (they died while publishing it): not sent again; check the "
                                           "dispatcher's logs, then replay it") for item in abandoned}, requests=0))
            items = [item for item in items if item.attempts < self.max_attempts]
        published = False
        while items:
            items = self.still_held(target, items)
            batch, items = items[:self.publish_batch], items[self.publish_batch:]
            if not batch:
                break
            result = _publish(target, batch, self.factory)
            failure = _target_failure(target, batch, result)
            self.record(target, batch, result)
            if failure is None:
                published = True
                continue
            self.report.target_errors[target.name] = failure
            outcome = record_failure(self.engine, target.id, target.name, failure, now=self.lease.clock(),
                                     policy=self.policy)
            if outcome.paused_reason is not None:
                self.report.paused[target.name] = outcome.paused_reason
            if items:  # the rest of the target's claim waits for its backoff, unsent
                self.record(target, items, PublishResult({}, requests=0),
                            released=f"not sent: {failure} (the target backs off; failure {outcome.failures} in a "
                                     "row)")
            return
        if published:
            record_success(self.engine, target.id)


def dispatch_once(engine: Engine, worker_id: str, publisher_factory: PublisherFactory | None = None, *,
                  target_id: int | None = None, limit: int = DEFAULT_LIMIT,
                  lease_seconds: float = DEFAULT_LEASE_SECONDS, max_attempts: int = DEFAULT_MAX_ATTEMPTS,
                  backoff: Callable[[int], timedelta] = DEFAULT_BACKOFF, policy: TargetHealthPolicy = DEFAULT_POLICY,
                  publish_batch: int = DEFAULT_PUBLISH_BATCH, now: datetime | None = None,
                  clock: Clock | None = None) -> DispatchReport:
    """Claim one batch (and probes of failing targets), publish it target by target, record every outcome; see the
    module docstring.

    :param publisher_factory: builds a target's publisher; :func:`default_publisher` (by kind) by default.
    :param max_attempts: a delivery that failed this many times is dead-lettered.
    :param backoff: attempt number → wait before an event's next attempt after a transient failure of its own.
    :param policy: the backoff, probe size and pause limit of failing targets.
    :param publish_batch: deliveries of one target per publish call (the lease is renewed between them).
    :param now: a fixed current time (tests); ``clock``: a function giving the current time (tests that let time
        pass within a round).
    """
    if max_attempts < 1:
        raise ValueError(f"max_attempts must be at least 1, got {max_attempts}")
    if publish_batch < 1:
        raise ValueError(f"publish_batch must be at least 1, got {publish_batch}")
    factory = publisher_factory or default_publisher
    time_now = _clock(now, clock)
    current = time_now()
    claimed = claim_batch(engine, worker_id, target_id=target_id, limit=limit, lease_seconds=lease_seconds,
                          now=current)
    until = current + timedelta(seconds=lease_seconds)
    probes = 0
    for failing_id in due_probes(engine, now=current, target_id=target_id):
        if not take_probe(engine, failing_id, now=current, until=until):
            continue
        probe = claim_batch(engine, worker_id, target_id=failing_id, limit=policy.probe_size,
                            lease_seconds=lease_seconds, now=current, healthy_only=False)
        if probe:
            probes += 1
            claimed += probe
        else:
            give_back_probe(engine, failing_id, now=current, until=until)
    report = DispatchReport(claimed=len(claimed), rounds=1, probes=probes)
    round_ = _Round(engine, worker_id, factory, _Lease(engine, worker_id, until, lease_seconds, time_now), report,
                    max_attempts, backoff, policy, publish_batch)
    for items in _group(claimed).values():
        round_.dispatch_target(items[0].target, items)
    log.info("dispatcher %s: %s", worker_id, report.as_dict())
    return report


def _reusing(factory: PublisherFactory) -> PublisherFactory:
    """The factory, with each target's publisher built once for all rounds (a boto3 client is costly to build),
    and again when the target's config changed."""
    publishers: dict[tuple[int, str], Publisher] = {}

    def reuse(target: Target) -> Publisher:
        key = (target.id, json.dumps(target.config, sort_keys=True, default=str))
        if key not in publishers:
            publishers[key] = factory(target)
        return publishers[key]

    return reuse


def dispatch_until_empty(engine: Engine, worker_id: str, publisher_factory: PublisherFactory | None = None, *,
                         max_rounds: int = 100, **options: Any) -> DispatchReport:
    """Run :func:`dispatch_once` until a round claims nothing, or ``max_rounds`` rounds ran.

    :param options: passed to :func:`dispatch_once` (``limit``, ``max_attempts``, ``backoff``, ``now`` …).
    """
    if max_rounds < 1:
        raise ValueError(f"max_rounds must be at least 1, got {max_rounds}")
    total = DispatchReport()
    factory = _reusing(publisher_factory or default_publisher)
    for _ in range(max_rounds):
        report = dispatch_once(engine, worker_id, factory, **options)
        if not report.claimed:
            break
        total.add(report)
    return total


# -- inspection ---------------------------------------------------------------------------------------------


def delivery_counts(engine: Engine) -> dict[str, int]:
    """Deliveries per status (every status present, zero when none)."""
    counts = dict.fromkeys((status.value for status in EventDeliveryStatus), 0)
    with Session(engine) as session:
        for status, count in session.execute(
                select(EventDelivery.status, func.count()).group_by(EventDelivery.status)):
            counts[status] = count
    return counts


__all__ = [
    "DEFAULT_BACKOFF", "Claimed", "DispatchReport", "Publisher", "PublisherFactory", "Target",
    "claim_batch", "default_publisher", "delivery_counts", "dispatch_once", "dispatch_until_empty",
    "eventbridge_publisher",
    "exponential_backoff",
]
