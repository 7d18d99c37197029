"""The dispatcher against moto's real server (bus demobank-events → SQS demobank-events-audit) on a migrated
database: delivery, filters, concurrent dispatchers, expired leases, dead letters, target errors and replay."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from demobank.db.engine import get_engine, session_scope
from demobank.db.models import EventDelivery, EventTarget, EventTargetHealth, OutboxEvent
from demobank.events.catalog import examples
from demobank.events.dispatcher import (
    Target,
    claim_batch,
    delivery_counts,
    dispatch_once,
    dispatch_until_empty,
)
from demobank.events.eventbridge import Delivered, EventBridgePublisher, Failed, PublishResult, RetryPolicy
from demobank.events.outbox import publish_many
from demobank.events.replay import replay
from tests.db.conftest import (  # noqa: F401 - pytest registers the imported fixtures for this module
    _isolated_engines,
    db_url,
    migrated_url,
    postgres_admin_url,
    postgres_url,
    sqlite_url,
)
from tests.events.conftest_moto import (  # noqa: F401 - the *_fixture functions register the fixtures
    REGION,
    MotoAws,
    audit_queue_fixture,
    aws_default_fixture,
    moto_aws_fixture,
)

PUBLISHER = "dag:test_dispatcher"  # who this module's events are published by

FAST = RetryPolicy(attempts=2, initial=0.01, maximum=0.02, jitter=0.01)
NO_WAIT = lambda attempt: timedelta(0)  # noqa: E731 - a backoff that retries at once


@pytest.fixture
def engine(migrated_url: str) -> Engine:  # noqa: F811
    return get_engine(migrated_url)


@pytest.fixture
def sqlite_engine(sqlite_url: str) -> Engine:  # noqa: F811
    from demobank.db.migrate import upgrade

    upgrade(sqlite_url)
    return get_engine(sqlite_url)


def add_target(engine: Engine, name: str, event_types: list[str] | None = None, **config: Any) -> int:
    with session_scope(engine) as session:
        target = EventTarget(name=name, event_types=event_types or ["*"], enabled=True,
                             config={"aws_conn_id": "aws_default", "bus_name": "demobank-events", **config})
        session.add(target)
        session.flush()
        return target.id


def publish_events(engine: Engine, count: int, event_type: str = "transaction.created",
                   time: datetime | None = None) -> list[str]:
    ids: list[str] = []
    for start in range(0, count, 500):
        events = []
        for n in range(start, min(count, start + 500)):
            data = examples(event_type)[0]
            event: dict[str, Any] = {"type": event_type, "data": data, "subject": f"S-{n:06d}"}
            if time is not None:
                event["time"] = time
            events.append(event)
        with session_scope(engine) as session:
            ids += publish_many(session, events, publisher=PUBLISHER)
    return ids


def moto_factory(moto: MotoAws, *, retry: RetryPolicy = FAST):
    """A publisher factory over a fresh boto3 client (thread-safe: one session per call)."""

    def factory(target: Target) -> EventBridgePublisher:
        session = boto3.session.Session(aws_access_key_id="testing", aws_secret_access_key="testing",
                                        region_name=REGION)
        client = session.client("events", endpoint_url=moto.url)
        return EventBridgePublisher(client, target.config.get("bus_name", "demobank-events"), retry=retry,
                                    sleep=lambda _: None)

    return factory


class FailingPublisher:
    """Wraps a real publisher; chosen envelope ids fail with ``failure`` instead of being sent."""

    def __init__(self, inner: EventBridgePublisher, fail: Mapping[str, Failed]) -> None:
        self.inner = inner
        self.fail = fail

    def publish(self, envelopes: Sequence[Mapping[str, Any]]) -> PublishResult:
        through = [e for e in envelopes if e["id"] not in self.fail]
        real = self.inner.publish(through) if through else PublishResult({}, 0)
        outcomes = {e["id"]: self.fail[e["id"]] if e["id"] in self.fail else real[e["id"]] for e in envelopes}
        return PublishResult(outcomes, real.requests)


def deliveries(engine: Engine, target_id: int | None = None) -> dict[str, EventDelivery]:
    with Session(engine) as session:
        query = select(EventDelivery)
        if target_id is not None:
            query = query.where(EventDelivery.target_id == target_id)
        return {row.event_id: row for row in session.scalars(query)}


def audit_ids(moto: MotoAws, expected: int, **kwargs: Any) -> Counter[str]:
    return Counter(body["detail"]["id"] for body in moto.receive_audit_messages(expected, **kwargs))


# -- tests ------------------------------------------------------------------------------------------------


def test_one_hundred_events_are_delivered_once_each_with_the_full_envelope(engine, audit_queue, aws_default):
    target_id = add_target(engine, "audit-bus")
    ids = publish_events(engine, 100)

    report = dispatch_until_empty(engine, "worker-1", max_rounds=5)  # the default factory: EventBridgeHook

    assert (report.claimed, report.delivered, report.dead, report.retried) == (100, 100, 0, 0)
    bodies = audit_queue.receive_audit_messages(100)
    assert Counter(body["detail"]["id"] for body in bodies) == Counter(ids)
    with Session(engine) as session:
        stored = {row.id: row.envelope for row in session.scalars(select(OutboxEvent))}
    import json

    for body in bodies:
        assert body["detail"] == json.loads(stored[body["detail"]["id"]])
        assert body["detail-type"] == "transaction.created" and body["source"] == "com.demobank"
    rows = deliveries(engine, target_id)
    assert {row.status for row in rows.values()} == {"delivered"}
    assert all(row.external_id and row.delivered_at and row.claimed_by is None for row in rows.values())
    assert delivery_counts(engine) == {"pending": 0, "delivered": 100, "dead": 0}


def test_an_event_type_the_filter_excludes_gets_no_delivery(sqlite_engine, audit_queue):
    engine = sqlite_engine
    target_id = add_target(engine, "tx-only", ["transaction.*"])
    tx_ids = publish_events(engine, 3)
    customer_ids = publish_events(engine, 2, "customer.created")

    assert set(deliveries(engine, target_id)) == set(tx_ids)
    dispatch_until_empty(engine, "w", moto_factory(audit_queue))
    received = audit_ids(audit_queue, 3)
    assert received == Counter(tx_ids)
    assert not set(customer_ids) & set(received)


def test_two_dispatchers_at_once_deliver_each_event_exactly_once(engine, audit_queue):
    add_target(engine, "audit-bus")
    ids = publish_events(engine, 120)
    factory = moto_factory(audit_queue)
    reports: dict[str, Any] = {}
    errors: list[BaseException] = []
    barrier = threading.Barrier(2)

    def run(worker: str) -> None:
        try:
            barrier.wait()
            reports[worker] = dispatch_until_empty(engine, worker, factory, limit=10, max_rounds=50)
        except BaseException as error:  # reported below
            errors.append(error)

    threads = [threading.Thread(target=run, args=(f"worker-{n}",)) for n in (1, 2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)

    assert not errors
    assert sum(r.claimed for r in reports.values()) == 120
    assert sum(r.delivered for r in reports.values()) == 120
    assert all(r.delivered > 0 for r in reports.values()), reports  # both took part
    assert audit_ids(audit_queue, 120) == Counter(ids)  # every id exactly once
    assert delivery_counts(engine)["delivered"] == 120


def test_a_dead_workers_claim_is_taken_over_after_the_lease_expires(sqlite_engine, audit_queue):
    engine = sqlite_engine
    add_target(engine, "audit-bus")
    ids = publish_events(engine, 5)
    t0 = datetime.now(UTC)

    claimed = claim_batch(engine, "doomed", lease_seconds=120, now=t0)  # ...and then it dies without publishing
    assert [c.event_id for c in claimed] == ids
    assert claimed[0].envelope["id"] == ids[0] and claimed[0].target.name == "audit-bus"

    early = dispatch_once(engine, "rescuer", moto_factory(audit_queue), now=t0 + timedelta(seconds=60))
    assert early.claimed == 0
    late = dispatch_once(engine, "rescuer", moto_factory(audit_queue), now=t0 + timedelta(seconds=121))
    assert late.delivered == 5
    assert audit_ids(audit_queue, 5) == Counter(ids)
    assert {row.claimed_by for row in deliveries(engine).values()} == {None}


def test_a_slow_worker_whose_lease_expired_records_nothing_and_duplicates_share_the_id(sqlite_engine, audit_queue):
    engine = sqlite_engine
    add_target(engine, "audit-bus")
    ids = publish_events(engine, 4)
    t0 = datetime.now(UTC)
    real = moto_factory(audit_queue)
    taken_over: list[Any] = []

    class SlowPublisher:
        """While the slow worker publishes, its lease expires and another worker delivers the same rows."""

        def __init__(self, target: Target) -> None:
            self.inner = real(target)

        def publish(self, envelopes):
            taken_over.append(dispatch_once(engine, "fast", real, now=t0 + timedelta(seconds=200)))
            return self.inner.publish(envelopes)

    slow = dispatch_once(engine, "slow", SlowPublisher, lease_seconds=120, now=t0)

    assert taken_over[0].delivered == 4
    assert (slow.claimed, slow.delivered, slow.unrecorded) == (4, 0, 4)
    assert audit_ids(audit_queue, 8) == Counter({event_id: 2 for event_id in ids})  # at least once
    rows = deliveries(engine)
    # Two attempts each: one per claim (the slow worker's send counts although its outcome was not recorded).
    assert {row.status for row in rows.values()} == {"delivered"} and all(r.attempts == 2 for r in rows.values())


def test_an_event_the_dispatchers_keep_dying_on_is_dead_lettered_instead_of_stalling_the_outbox(sqlite_engine):
    engine = sqlite_engine
    add_target(engine, "audit-bus")
    [poison, healthy] = publish_events(engine, 2)
    t0 = datetime.now(UTC)
    for n in range(3):  # three dispatchers in turn claim the first event and die before recording anything
        [claimed] = claim_batch(engine, f"doomed-{n}", limit=1, lease_seconds=60, now=t0 + timedelta(minutes=2 * n))
        assert claimed.event_id == poison
    sent: list[list[str]] = []

    class Recording:
        def __init__(self, target: Target) -> None:
            pass

        def publish(self, envelopes):
            sent.append([envelope["id"] for envelope in envelopes])
            return PublishResult({envelope["id"]: Delivered("eb-1") for envelope in envelopes}, requests=1)

    report = dispatch_once(engine, "survivor", Recording, max_attempts=3, now=t0 + timedelta(minutes=10))

    assert sent == [[healthy]], "the event no dispatcher survived is not sent a fourth time"
    assert (report.delivered, report.dead) == (1, 1)
    rows = deliveries(engine)
    assert rows[poison].status == "dead" and rows[poison].attempts == 4
    assert "claimed 3 times by dispatchers that never recorded an outcome" in rows[poison].last_error
    assert rows[healthy].status == "delivered" and rows[healthy].attempts == 1


def test_chosen_entries_failing_permanently_are_dead_lettered_with_the_reason(sqlite_engine, audit_queue):
    engine = sqlite_engine
    add_target(engine, "audit-bus")
    ids = publish_events(engine, 6)
    bad = {ids[1]: Failed("ValidationException", "detail rejected (injected)", transient=False),
           ids[4]: Failed("MalformedDetail", "not JSON (injected)", transient=False)}
    real = moto_factory(audit_queue)

    report = dispatch_until_empty(engine, "w", lambda target: FailingPublisher(real(target), bad))

    assert (report.delivered, report.dead) == (4, 2)
    rows = deliveries(engine)
    for event_id in ids:
        if event_id in bad:
            assert rows[event_id].status == "dead"
            assert bad[event_id].code in rows[event_id].last_error
            assert "(injected)" in rows[event_id].last_error
        else:
            assert rows[event_id].status == "delivered"
    assert audit_ids(audit_queue, 4) == Counter(i for i in ids if i not in bad)


def test_a_broken_target_keeps_its_deliveries_pending_and_the_good_target_gets_everything(
        sqlite_engine, audit_queue, aws_default):
    engine = sqlite_engine
    good = add_target(engine, "good")
    broken = add_target(engine, "missing-bus", bus_name="no-such-bus")
    ids = publish_events(engine, 8)
    now = datetime.now(UTC)

    report = dispatch_until_empty(engine, "w", now=now, max_rounds=3)

    assert report.delivered == 8
    assert "missing-bus" in report.target_errors and "no-such-bus" in report.target_errors["missing-bus"]
    assert audit_ids(audit_queue, 8) == Counter(ids)
    assert {row.status for row in deliveries(engine, good).values()} == {"delivered"}
    broken_rows = deliveries(engine, broken).values()
    assert len(broken_rows) == 8
    for row in broken_rows:  # tried once, waiting for the target's backoff (it has none of its own)
        assert row.status == "pending" and row.attempts == 1 and row.claimed_by is None
        assert "'missing-bus'" in row.last_error and "ResourceNotFoundException" in row.last_error
        assert row.next_attempt_at is None
    with Session(engine) as session:
        health = session.get(EventTargetHealth, broken)
    assert health.failure_count == 1 and health.failing_since == now and health.next_attempt_at > now
    assert report.rounds == 1, "the second round claims nothing: the broken target backs off as a whole"


def test_a_factory_that_raises_releases_only_that_targets_deliveries(sqlite_engine, audit_queue):
    engine = sqlite_engine
    add_target(engine, "good")
    bad_id = add_target(engine, "bad-credentials")
    ids = publish_events(engine, 3)
    real = moto_factory(audit_queue)

    def factory(target: Target) -> EventBridgePublisher:
        if target.name == "bad-credentials":
            raise PermissionError("no credentials for connection 'aws_nowhere'")
        return real(target)

    report = dispatch_once(engine, "w", factory)

    assert report.delivered == 3 and report.retried == 3 and "bad-credentials" in report.target_errors
    assert audit_ids(audit_queue, 3) == Counter(ids)
    assert all("bad-credentials" in row.last_error and row.status == "pending"
               for row in deliveries(engine, bad_id).values())


def test_a_target_failing_on_its_first_batch_releases_the_rest_of_its_claim_untried(sqlite_engine):
    """One batch of 10 fails with a target error: the other 25 claimed deliveries are not sent, their attempt is
    given back, and the target backs off."""
    engine = sqlite_engine
    target_id = add_target(engine, "bad-credentials")
    ids = publish_events(engine, 35)
    calls: list[int] = []

    class Refusing:
        def __init__(self, target: Target) -> None:
            pass

        def publish(self, envelopes):
            calls.append(len(envelopes))
            return PublishResult({e["id"]: Failed("UnrecognizedClientException", "bad key (injected)", False,
                                                  target_error=True) for e in envelopes}, requests=1)

    report = dispatch_once(engine, "w", Refusing, publish_batch=10)

    assert calls == [10] and (report.claimed, report.retried, report.released) == (35, 10, 25)
    rows = deliveries(engine, target_id)
    assert [rows[i].attempts for i in ids] == [1] * 10 + [0] * 25
    assert all(row.claimed_by is None and "UnrecognizedClientException" in row.last_error for row in rows.values())
    assert dispatch_once(engine, "w", Refusing).claimed == 0  # backing off


def test_transient_failures_are_retried_with_backoff_then_dead_at_max_attempts(sqlite_engine, audit_queue):
    engine = sqlite_engine
    add_target(engine, "audit-bus")
    ids = publish_events(engine, 3)
    flaky = {ids[0]: Failed("ThrottlingException", "slow down (injected)", transient=True)}
    real = moto_factory(audit_queue)
    factory = lambda target: FailingPublisher(real(target), flaky)  # noqa: E731
    t0 = datetime.now(UTC)

    first = dispatch_once(engine, "w", factory, max_attempts=3, now=t0)
    assert (first.delivered, first.retried) == (2, 1)
    row = deliveries(engine)[ids[0]]
    assert (row.status, row.attempts, row.claimed_by) == ("pending", 1, None)
    assert row.next_attempt_at >= t0 + timedelta(seconds=30) and "ThrottlingException" in row.last_error
    assert dispatch_once(engine, "w", factory, max_attempts=3, now=t0 + timedelta(seconds=1)).claimed == 0

    rest = dispatch_until_empty(engine, "w", factory, max_attempts=3, backoff=NO_WAIT, now=t0 + timedelta(hours=1))
    assert (rest.retried, rest.dead) == (1, 1)
    row = deliveries(engine)[ids[0]]
    assert (row.status, row.attempts) == ("dead", 3)
    assert "gave up after 3 attempts" in row.last_error
    assert audit_ids(audit_queue, 2) == Counter(ids[1:])


def test_replay_redelivers_a_type_and_time_range_to_one_target(sqlite_engine, audit_queue):
    engine = sqlite_engine
    first = add_target(engine, "first")
    second = add_target(engine, "second", ["customer.*"])
    day = datetime(2026, 11, 20, 12, tzinfo=UTC)
    old = publish_events(engine, 2, time=day - timedelta(days=2))
    inside = publish_events(engine, 3, time=day)
    other_type = publish_events(engine, 2, "customer.created", time=day)
    factory = moto_factory(audit_queue)
    dispatch_until_empty(engine, "w", factory)
    audit_queue.drain_audit_queue()

    queued = replay(engine, first, "transaction.created", day - timedelta(hours=1), day + timedelta(hours=1))
    assert queued == 3
    assert replay(engine, second, "transaction.created", day, day + timedelta(seconds=1)) == 3  # inserted rows

    report = dispatch_until_empty(engine, "w", factory, target_id=first)
    assert report.delivered == 3
    assert audit_ids(audit_queue, 3) == Counter(inside)
    rows = deliveries(engine, first)
    assert all(rows[i].status == "delivered" for i in inside + old)
    assert set(deliveries(engine, second)) == set(other_type + inside)
    assert delivery_counts(engine)["pending"] == 3
    with pytest.raises(LookupError, match="does not exist"):
        replay(engine, 999, "transaction.created", day, day + timedelta(hours=1))
