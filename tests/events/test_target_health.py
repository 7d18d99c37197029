"""A target that stays broken, against moto's real server through the amazon provider's ``EventBridgeHook``: its
backoff grows, it is not claimed while backing off, it is probed with a bounded slice of its backlog, it pauses
itself after the configured time, the healthy target gets every event meanwhile; the check (CLI, API) says so;
after the bus is created, the requeued dead letters and the backlog are delivered exactly once.

Time is injected (``now``): nothing sleeps."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from demobank.db.engine import get_engine
from demobank.db.models import EventTargetHealth
from demobank.events.dispatcher import (
    DispatchReport,
    claim_batch,
    default_publisher,
    dispatch_once,
    dispatch_until_empty,
)
from demobank.events.target_health import TargetHealthPolicy, parse_duration
from demobank.exceptions import ConfigurationError
from demobank.health import check_suite
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
from tests.events.test_dispatcher import add_target, audit_ids, deliveries, publish_events

POLICY = TargetHealthPolicy(backoff_base=timedelta(seconds=30), backoff_cap=timedelta(seconds=240),
                            backoff_jitter=0.0, pause_after=timedelta(minutes=10), probe_size=3)
MAX_ATTEMPTS = 4
TICK = timedelta(seconds=30)
PER_TICK = 4
DEMOBANK_SCRIPT = Path(sys.executable).parent / "demobank"


def health_row(engine: Engine, target_id: int) -> EventTargetHealth | None:
    with Session(engine) as session:
        return session.get(EventTargetHealth, target_id)


def attempts_of(engine: Engine, target_id: int) -> dict[str, int]:
    return {event_id: row.attempts for event_id, row in deliveries(engine, target_id).items()}


def run_cli(url: str, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The installed console script, in a subprocess, on the test's database."""
    env = {**os.environ, "DEMOBANK_DB_URL": url, "AIRFLOW_HOME": str(tmp_path / "airflow-home")}
    return subprocess.run([str(DEMOBANK_SCRIPT), *args], capture_output=True, text=True, env=env, timeout=120,
                          check=False)


def health_client(engine: Engine, role: str) -> TestClient:
    """The health routes as the plugin mounts them, signed in as a user of ``role`` (simple auth manager)."""
    from airflow.api_fastapi.auth.managers.simple.simple_auth_manager import SimpleAuthManager
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser

    from demobank.ui.health_api import create_router
    from demobank.ui.permissions import use_auth_manager

    app = FastAPI()
    app.include_router(create_router(lambda: engine, lambda extra: False), prefix="/demobank/api/v1")
    use_auth_manager(app, SimpleAuthManager(), SimpleAuthManagerUser(username=f"the-{role}", role=role))
    return TestClient(app)


def create_bus_with_queue(moto: MotoAws, bus: str) -> str:
    """Create ``bus`` and a rule sending every Demo Bank event on it to a new SQS queue; return the queue URL."""
    import boto3

    session = boto3.session.Session(aws_access_key_id="testing", aws_secret_access_key="testing",
                                    region_name=REGION)
    events, sqs = session.client("events", endpoint_url=moto.url), session.client("sqs", endpoint_url=moto.url)
    events.create_event_bus(Name=bus)
    queue_url = sqs.create_queue(QueueName=f"{bus}-audit")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    events.put_rule(Name=f"{bus}-all", EventBusName=bus, EventPattern=json.dumps({"source": ["com.demobank"]}),
                    State="ENABLED")
    events.put_targets(Rule=f"{bus}-all", EventBusName=bus, Targets=[{"Id": "queue", "Arn": queue_arn}])
    return queue_url


def drain(moto: MotoAws, queue_url: str, expected: int, timeout: float = 20.0) -> Counter[str]:
    """Every envelope id on the queue: read until ``expected`` arrived (or ``timeout``), then one more empty poll
    of a second, so that duplicates would be seen too."""
    ids: Counter[str] = Counter()
    deadline = time.monotonic() + timeout
    while True:
        wait = 1 if sum(ids.values()) >= expected or time.monotonic() > deadline else 0
        messages = moto.sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=wait,
                                            VisibilityTimeout=60).get("Messages", [])
        ids.update(json.loads(message["Body"])["detail"]["id"] for message in messages)
        if messages:
            moto.sqs.delete_message_batch(QueueUrl=queue_url, Entries=[
                {"Id": str(n), "ReceiptHandle": m["ReceiptHandle"]} for n, m in enumerate(messages)])
        elif wait:
            return ids


def test_a_target_whose_bus_does_not_exist_backs_off_pauses_and_delivers_once_fixed(
        migrated_url, audit_queue, aws_default, tmp_path):  # noqa: F811
    engine = get_engine(migrated_url)
    healthy = add_target(engine, "audit-bus")
    bus = f"orders-{uuid.uuid4().hex[:8]}"
    broken = add_target(engine, "orders-bus", bus_name=bus)
    t0 = datetime.now(UTC) + timedelta(seconds=1)  # the outbox makes a delivery due when it is published
    healthy_ids: list[str] = []
    broken_ids: list[str] = []
    failures: list[tuple[datetime, timedelta]] = []  # (failure time, wait until the next probe)
    reports: dict[int, DispatchReport] = {}
    publishers: dict[int, Any] = {}  # the default publisher (EventBridgeHook over moto), built once per target
    factory = lambda target: publishers.setdefault(target.id, default_publisher(target))  # noqa: E731

    for tick in range(27):  # t0 … t0 + 13 min, one dispatch every 30 s, 4 new events each time
        now = t0 + tick * TICK
        ids = publish_events(engine, PER_TICK)
        healthy_ids += ids
        broken_ids += ids
        before = attempts_of(engine, broken)
        probe_due = (row := health_row(engine, broken)) is not None and row.paused_at is None and (
            row.next_attempt_at <= now)
        report = reports[tick] = dispatch_until_empty(engine, "w", factory, max_attempts=MAX_ATTEMPTS, policy=POLICY,
                                                      now=now)

        # The healthy target keeps its pace: everything published so far is delivered, every time.
        assert {row.status for row in deliveries(engine, healthy).values()} == {"delivered"}, tick
        tried = {event_id for event_id, attempts in attempts_of(engine, broken).items()
                 if attempts != before.get(event_id, 0)}
        row = health_row(engine, broken)
        if tick == 0:  # a normal claim: the first batch is tried, and fails
            assert tried == set(ids) and row.failure_count == 1
        elif probe_due:  # backoff over: a probe of at most probe_size of the oldest pending deliveries, no more
            assert report.probes == 1 and 0 < len(tried) <= POLICY.probe_size, tick
        else:  # backing off (or paused): not claimed at all
            assert report.probes == 0 and tried == set(), tick
        if row.last_failure_at == now:
            failures.append((now, row.next_attempt_at - now if row.next_attempt_at else None))

    # Backoff grows, 30 s doubling to the cap of 240 s, until the failure 10 min after the first pauses it.
    assert [at - t0 for at, _ in failures] == [timedelta(seconds=s) for s in (0, 30, 90, 210, 450, 690)]
    assert [wait for _, wait in failures] == [timedelta(seconds=s) for s in (30, 60, 120, 240, 240)] + [None]
    row = health_row(engine, broken)
    assert row.paused_at == t0 + timedelta(seconds=690) and row.failure_count == 6 and row.failing_since == t0
    assert "failing continuously for 11m 30s" in row.paused_reason and "ResourceNotFoundException" in row.paused_reason
    assert f"event bus '{bus}' was not found" in row.paused_reason
    assert [name for tick, r in reports.items() for name in r.paused] == ["orders-bus"]
    assert all(r.probes == 0 for tick, r in reports.items() if tick > 23)  # paused: no more probes

    # The oldest 3 were in every probe: dead after max_attempts; the rest of the backlog waits, pending.
    broken_rows = deliveries(engine, broken)
    dead = sorted(event_id for event_id, r in broken_rows.items() if r.status == "dead")
    assert dead == sorted(broken_ids[:3])
    assert all("gave up after 4 attempts" in broken_rows[event_id].last_error for event_id in dead)
    assert Counter(r.status for r in broken_rows.values()) == {"pending": len(broken_ids) - 3, "dead": 3}
    assert audit_ids(audit_queue, len(healthy_ids)) == Counter(healthy_ids)  # each healthy event exactly once

    # -- the check says so: in Python, through the CLI (the installed console script) and the API
    health = check_suite(engine)
    assert not health.ok and health.paused_targets == 1 and health.new_dead_letters == 3
    cli = run_cli(migrated_url, tmp_path, "check")
    assert cli.returncode == 1, cli.stderr
    assert "PROBLEM: event target 'orders-bus'" in cli.stdout and "is paused: paused automatically" in cli.stdout
    assert "has 3 new dead letter(s)" in cli.stdout
    assert "demobank requeue dead-letters --target 'orders-bus'" in cli.stdout
    with health_client(engine, "viewer") as viewer:
        answer = viewer.get("/demobank/api/v1/health")
        assert answer.status_code == 200
        body = answer.json()
        assert body["ok"] is False
        assert body["summary"] == {"paused_targets": 1, "new_dead_letters": 3, "new_rejected_reports": 0}
        [orders] = [target for target in body["targets"] if target["name"] == "orders-bus"]
        assert orders["state"] == "paused" and orders["paused_reason"] == row.paused_reason
        assert viewer.post(f"/demobank/api/v1/targets/{broken}/resume").status_code == 403  # a viewer changes nothing

    # -- fixed: the bus exists now. Requeue the dead letters (CLI), then resume the target (API, as an operator).
    queue_url = create_bus_with_queue(audit_queue, bus)
    cli = run_cli(migrated_url, tmp_path, "requeue", "dead-letters", "--target", "orders-bus")
    assert cli.returncode == 0, cli.stderr
    assert "3 dead letter(s) of event target 'orders-bus' requeued" in cli.stdout
    assert "the target is paused: resume it to deliver them" in cli.stdout
    later = t0 + timedelta(minutes=20)
    assert dispatch_until_empty(engine, "w", policy=POLICY, now=later).claimed == 0  # still paused
    with health_client(engine, "op") as operator:
        resumed = operator.post(f"/demobank/api/v1/targets/{broken}/resume")
        assert resumed.status_code == 200 and resumed.json()["was_paused"] is True

    report = dispatch_until_empty(engine, "w", policy=POLICY, now=later + timedelta(seconds=1))
    assert report.delivered == len(broken_ids) and not report.target_errors
    assert drain(audit_queue, queue_url, len(broken_ids)) == Counter(broken_ids)  # every event exactly once
    assert {r.status for r in deliveries(engine, broken).values()} == {"delivered"}
    row = health_row(engine, broken)
    assert (row.failure_count, row.paused_at, row.failing_since) == (0, None, None)
    assert check_suite(engine).ok
    assert run_cli(migrated_url, tmp_path, "check").returncode == 0


def test_enabling_a_paused_target_resumes_it(sqlite_url, aws_default, audit_queue):  # noqa: F811
    from demobank.db.migrate import upgrade
    from demobank.events.targets import get_target, set_enabled

    upgrade(sqlite_url)
    engine = get_engine(sqlite_url)
    broken = add_target(engine, "orders-bus", bus_name=f"missing-{uuid.uuid4().hex[:8]}")
    publish_events(engine, 2)
    policy = TargetHealthPolicy(pause_after=timedelta(seconds=1), backoff_jitter=0.0)
    t0 = datetime.now(UTC) + timedelta(seconds=1)
    dispatch_until_empty(engine, "w", policy=policy, now=t0)
    dispatch_until_empty(engine, "w", policy=policy, now=t0 + timedelta(minutes=1))

    view = get_target(engine, broken)
    assert view.health.state == "paused" and "paused automatically" in view.health.paused_reason
    set_enabled(engine, broken, True, actor="test")  # the existing enable route
    view = get_target(engine, broken)
    assert (view.health.state, view.health.failure_count, view.health.paused_reason) == ("ok", 0, None)
    assert "ResourceNotFoundException" in view.health.last_error  # kept as history
    from demobank.events import audit

    assert [(entry["actor"], entry["action"], entry["details"].get("resumed")) for entry in
            audit.entries(engine, target_id=broken)][:2] == [("test", "enabled", True), ("dispatcher", "paused", None)]
    assert dispatch_once(engine, "w", policy=policy, now=t0 + timedelta(minutes=2)).claimed == 2  # dispatched again


def test_a_long_round_renews_its_lease_batch_by_batch(sqlite_url):  # noqa: F811
    """Each batch takes 70 s of a 120 s lease; a second worker tries to claim after every batch. Renewed before each
    batch, the round keeps every claim: nothing is taken over, every delivery recorded once."""
    from demobank.db.migrate import upgrade
    from demobank.events.eventbridge import Delivered, PublishResult

    upgrade(sqlite_url)
    engine = get_engine(sqlite_url)
    add_target(engine, "slow-bus")
    ids = publish_events(engine, 50)
    start = datetime.now(UTC) + timedelta(seconds=1)
    clock = [start]
    stolen: list[str] = []
    sent: list[str] = []

    class SlowPublisher:
        def __init__(self, target: Any) -> None:
            pass

        def publish(self, envelopes):
            clock[0] += timedelta(seconds=70)
            stolen.extend(c.event_id for c in claim_batch(engine, "thief", lease_seconds=120, now=clock[0]))
            sent.extend(envelope["id"] for envelope in envelopes)
            return PublishResult({envelope["id"]: Delivered("eb") for envelope in envelopes}, requests=1)

    report = dispatch_once(engine, "slow", SlowPublisher, lease_seconds=120, publish_batch=10, clock=lambda: clock[0])

    assert clock[0] - start == timedelta(seconds=350)  # 5 batches, 3 leases long
    assert stolen == [] and sent == ids
    assert (report.claimed, report.delivered, report.unrecorded) == (50, 50, 0)
    assert {row.status for row in deliveries(engine).values()} == {"delivered"}


def test_a_round_that_lost_rows_before_publishing_them_leaves_them_to_their_new_owner(sqlite_url):  # noqa: F811
    """Without renewal in time (one batch outlasts the lease), the rows another worker took are not sent again."""
    from demobank.db.migrate import upgrade
    from demobank.events.eventbridge import Delivered, PublishResult

    upgrade(sqlite_url)
    engine = get_engine(sqlite_url)
    add_target(engine, "slow-bus")
    ids = publish_events(engine, 20)
    clock = [datetime.now(UTC) + timedelta(seconds=1)]
    stolen: list[str] = []
    sent: list[str] = []

    class VerySlowPublisher:
        def __init__(self, target: Any) -> None:
            pass

        def publish(self, envelopes):
            clock[0] += timedelta(seconds=200)
            if not stolen:
                stolen.extend(c.event_id for c in claim_batch(engine, "thief", lease_seconds=120, now=clock[0]))
            sent.extend(envelope["id"] for envelope in envelopes)
            return PublishResult({envelope["id"]: Delivered("eb") for envelope in envelopes}, requests=1)

    report = dispatch_once(engine, "slow", VerySlowPublisher, lease_seconds=120, publish_batch=10,
                           clock=lambda: clock[0])

    assert stolen == ids  # the first batch outlasted the lease: the thief took all 20
    assert sent == ids[:10]  # the second batch was the thief's by then: not sent by the slow worker
    assert (report.delivered, report.unrecorded) == (0, 20)


def test_policy_from_the_environment():
    policy = TargetHealthPolicy.from_env({"DEMOBANK_TARGET_BACKOFF_BASE": "10s", "DEMOBANK_TARGET_BACKOFF_CAP": "5m",
                                          "DEMOBANK_TARGET_PAUSE_AFTER": "2h", "DEMOBANK_TARGET_PROBE_SIZE": "5"})
    assert (policy.backoff_base, policy.backoff_cap, policy.pause_after, policy.probe_size) == (
        timedelta(seconds=10), timedelta(minutes=5), timedelta(hours=2), 5)
    assert TargetHealthPolicy.from_env({}) == TargetHealthPolicy()
    assert TargetHealthPolicy.from_env({"DEMOBANK_TARGET_PAUSE_AFTER": "never"}).pause_after is None
    assert parse_duration("90", "X") == timedelta(seconds=90) and parse_duration("1.5d", "X") == timedelta(hours=36)
    with pytest.raises(ConfigurationError, match=r"DEMOBANK_TARGET_PAUSE_AFTER='an hour' is not a duration"):
        TargetHealthPolicy.from_env({"DEMOBANK_TARGET_PAUSE_AFTER": "an hour"})
    with pytest.raises(ConfigurationError, match="DEMOBANK_TARGET_PROBE_SIZE='ten' is not a whole number"):
        TargetHealthPolicy.from_env({"DEMOBANK_TARGET_PROBE_SIZE": "ten"})
    with pytest.raises(ConfigurationError, match="at most the cap"):
        TargetHealthPolicy.from_env({"DEMOBANK_TARGET_BACKOFF_BASE": "1h", "DEMOBANK_TARGET_BACKOFF_CAP": "1m"})


# -- helpers for the check, CLI and API tests --------------------------------------------------------------------


class RejectingPublisher:
    """Every event fails permanently (EventBridge's ``InvalidArgument``): each becomes a dead letter."""

    def __init__(self, target: Any) -> None:
        pass

    def publish(self, envelopes):
        from demobank.events.eventbridge import Failed, PublishResult

        return PublishResult({e["id"]: Failed("InvalidArgument", "rejected (injected)", transient=False)
                              for e in envelopes}, requests=1)


def make_dead_letters(engine: Engine, count: int, name: str = "partner-bus",
                      time: datetime | None = None) -> tuple[int, list[str]]:
    """A target and ``count`` events dead-lettered at it through the dispatcher; returns (target id, event ids)."""
    target_id = add_target(engine, name)
    ids = publish_events(engine, count, time=time)
    report = dispatch_until_empty(engine, "w", RejectingPublisher, target_id=target_id)
    assert report.dead == count
    return target_id, ids
