"""Crash recovery of the dispatcher: 0 events lost when EventBridge rejects some entries and the dispatcher is
killed (SIGKILL) in the middle of a batch.

Set-up: 600 ``transaction.created`` events in the outbox (SQLite file, and PostgreSQL), one EventBridge target
whose AWS connection reaches moto through :mod:`tests.events.faulty_eventbridge`. Events crafted to fail carry a
marker in their subject: every 10th (``n % 10 == 3``) is rejected permanently (``InvalidArgument``), others are
throttled (``ThrottlingException``) the first time (resent within the same publish call) or the first 3 times
(the publisher gives up after 2 sends: the dispatcher retries the delivery in a later round).

1. A dispatcher runs in a separate process (batches of 100, a 3 s lease). The proxy forwards to moto the request
   that carries event 150 (its second batch) and holds moto's answer; the test then kills the process with
   SIGKILL: the batch was claimed, part of it (that request included) reached moto and the audit queue, and no
   outcome of the batch was recorded.
2. A recovery dispatcher (in this process) runs until nothing is pending; the dead worker's rows become claimable
   when its lease expires.
3. Every event is delivered or dead-lettered with its reason; the audit queue holds every delivered event with its
   full envelope, nothing else, and duplicates (same id) only for events of the killed batch that moto had
   accepted before the kill — counted and reported (``record_property("duplicates", …)``), not required to be 0.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from demobank.db.engine import get_engine, session_scope
from demobank.db.models import EventDelivery, EventTarget, OutboxEvent
from demobank.events.catalog import examples
from demobank.events.dispatcher import DispatchReport, Target, delivery_counts, dispatch_until_empty
from demobank.events.eventbridge import EventBridgePublisher, RetryPolicy
from demobank.events.outbox import publish_many
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
    aws_connection_json,
    moto_aws_fixture,
)
from tests.events.faulty_eventbridge import PERMANENT_CODE, FaultyEventBridge, running

PUBLISHER = "dag:test_dispatcher_recovery"  # who this module's events are published by

PROJECT_DIR = Path(__file__).resolve().parents[2]
EVENTS = 600
BATCH = 100
LEASE_SECONDS = 3.0
HOLD_AT = 150
"""The dead worker is killed while moto's answer to the request carrying event ``S-000150`` is held."""
CONN_ID = "aws_faulty"
TARGET_NAME = "audit-bus"
FAST = RetryPolicy(attempts=2, initial=0.01, maximum=0.02, jitter=0.01)
"""Two sends per entry and publish call: a 3-times throttled entry needs a second round of the dispatcher."""


def NO_WAIT(attempt: int) -> timedelta:
    """A dispatcher backoff that makes a transiently failed delivery due again at once."""
    return timedelta(0)


def hook_publisher(target: Target) -> EventBridgePublisher:
    """The default factory's publisher (an ``EventBridgeHook`` over the target's connection) with fast retries."""
    from airflow.providers.amazon.aws.hooks.eventbridge import EventBridgeHook

    hook = EventBridgeHook(aws_conn_id=target.config["aws_conn_id"], region_name=target.config.get("region_name"))
    return EventBridgePublisher(hook, target.config["bus_name"], retry=FAST, sleep=lambda _: None)


def fault_marker(n: int) -> str:
    """The subject suffix telling the proxy how to treat event ``n``."""
    if n % 10 == 3:
        return "#fail=permanent"
    if n % 20 == 9:
        return "#fail=transient:3"
    if n % 10 == 6:
        return "#fail=transient:1"
    return ""


def run_child() -> None:
    """The doomed dispatcher (``python -c``): once the test says ``go`` on stdin (it starts the process early, so
    that importing Airflow overlaps with publishing), dispatch until empty, or until the test kills it."""
    args = json.loads(sys.argv[1])
    engine = get_engine(args["url"])
    if sys.stdin.readline().strip() != "go":
        raise SystemExit("the test did not say go")
    report = dispatch_until_empty(engine, args["worker"], hook_publisher, limit=BATCH, lease_seconds=LEASE_SECONDS,
                                  backoff=NO_WAIT, max_rounds=100)
    print(json.dumps(report.as_dict()), flush=True)  # only when the test failed to kill it


CHILD_CODE = "from tests.events.test_dispatcher_recovery import run_child; run_child()"


# -- helpers ----------------------------------------------------------------------------------------------------


def publish_numbered(engine: Engine, count: int) -> list[str]:
    """Publish ``count`` transaction.created events with subjects ``S-000000…`` (plus fault markers); ids in order."""
    data = examples("transaction.created")[0]
    ids: list[str] = []
    for start in range(0, count, 500):
        events = [{"type": "transaction.created", "data": data, "subject": f"S-{n:06d}{fault_marker(n)}"}
                  for n in range(start, min(count, start + 500))]
        with session_scope(engine) as session:
            ids += publish_many(session, events, publisher=PUBLISHER)
    return ids


def add_target(engine: Engine) -> int:
    with session_scope(engine) as session:
        target = EventTarget(name=TARGET_NAME, event_types=["*"], enabled=True,
                             config={"aws_conn_id": CONN_ID, "bus_name": "demobank-events"})
        session.add(target)
        session.flush()
        return target.id


def deliveries(engine: Engine) -> dict[str, EventDelivery]:
    with Session(engine) as session:
        return {row.event_id: row for row in session.scalars(select(EventDelivery))}


def stored_envelopes(engine: Engine) -> dict[str, dict[str, Any]]:
    with Session(engine) as session:
        return {row.id: json.loads(row.envelope) for row in session.scalars(select(OutboxEvent))}


def holds_event(number: int):
    subject = f"S-{number:06d}"
    return lambda envelopes: any(str(e.get("subject", "")).startswith(subject) for e in envelopes)


def start_child(url: str, worker: str, proxy: FaultyEventBridge, log_dir: Path) -> subprocess.Popen:
    env = dict(os.environ)
    env[f"AIRFLOW_CONN_{CONN_ID.upper()}"] = aws_connection_json(proxy.url)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PROJECT_DIR), str(PROJECT_DIR / "src"),
                                                      env.get("PYTHONPATH")]))
    with (log_dir / "child.out").open("wb") as out, (log_dir / "child.err").open("wb") as err:
        return subprocess.Popen([sys.executable, "-c", CHILD_CODE, json.dumps({"url": url, "worker": worker})],
                                cwd=PROJECT_DIR, env=env, stdin=subprocess.PIPE, stdout=out, stderr=err)


def child_output(log_dir: Path) -> str:
    return "\n".join(f"--- {name}:\n{(log_dir / name).read_text(errors='replace')[-4000:]}"
                     for name in ("child.out", "child.err"))


def kill_mid_batch(child: subprocess.Popen, proxy: FaultyEventBridge, log_dir: Path, timeout: float = 60.0) -> None:
    """Wait until the proxy holds the chosen answer (the child is inside ``publish``), then SIGKILL the child."""
    deadline = time.monotonic() + timeout
    while not proxy.held.wait(0.1):
        if child.poll() is not None:
            pytest.fail(f"the dispatcher process exited ({child.returncode}) before the proxy held the request "
                        f"carrying event {HOLD_AT}; proxy {dict(proxy.stats)} {proxy.errors}\n{child_output(log_dir)}")
        if time.monotonic() > deadline:
            child.kill()
            pytest.fail(f"the proxy did not see event {HOLD_AT} within {timeout:.0f} s; proxy {dict(proxy.stats)}\n"
                        f"{child_output(log_dir)}")
    child.kill()  # SIGKILL: no cleanup, no outcome recorded
    assert child.wait(timeout=10) == -9
    proxy.phase = "recovery"
    proxy.release()


def recover(engine: Engine, timeout: float = 45.0) -> DispatchReport:
    """Dispatch until nothing is pending; between runs wait for the dead worker's lease (read from the rows)."""
    total = DispatchReport()
    deadline = time.monotonic() + timeout
    while True:
        total.add(dispatch_until_empty(engine, "recovery", hook_publisher, limit=BATCH, lease_seconds=30,
                                       backoff=NO_WAIT, max_rounds=200))
        with Session(engine) as session:
            leases = list(session.scalars(select(EventDelivery.claimed_until)
                                          .where(EventDelivery.status == "pending")))
        if not leases:
            return total
        assert time.monotonic() < deadline, f"still pending after {timeout:.0f} s: {delivery_counts(engine)}"
        assert all(lease is not None for lease in leases), "a pending delivery is neither claimed nor dispatched"
        time.sleep(max(0.0, (max(leases) - datetime.now(UTC)).total_seconds()) + 0.05)


# -- the test ---------------------------------------------------------------------------------------------------


class AuditConsumer(threading.Thread):
    """Reads (and deletes) the audit queue's messages while the dispatchers run, as a consumer would: moto's
    PutEvents slows down as the queue grows (about 0.2 s a request at 1,000 messages), so the queue is kept short."""

    def __init__(self, moto: MotoAws) -> None:
        super().__init__(name="audit-consumer", daemon=True)
        session = boto3.session.Session(aws_access_key_id="testing", aws_secret_access_key="testing",
                                        region_name=REGION)
        self.sqs = session.client("sqs", endpoint_url=moto.url)
        self.queue_url = moto.standins.queue_url
        self.bodies: list[dict[str, Any]] = []
        self.error: BaseException | None = None
        self._stopping = threading.Event()

    def run(self) -> None:
        try:
            while not self._stopping.is_set():
                messages = self.sqs.receive_message(QueueUrl=self.queue_url, MaxNumberOfMessages=10,
                                                    WaitTimeSeconds=1, VisibilityTimeout=60).get("Messages", [])
                if messages:
                    self.sqs.delete_message_batch(QueueUrl=self.queue_url, Entries=[
                        {"Id": str(n), "ReceiptHandle": m["ReceiptHandle"]} for n, m in enumerate(messages)])
                    self.bodies.extend(json.loads(m["Body"]) for m in messages)
        except BaseException as error:  # reported by finish()
            self.error = error

    def finish(self, expected: int, timeout: float = 30.0, settle: float = 1.5) -> list[dict[str, Any]]:
        """Wait until ``expected`` messages arrived (or ``timeout``), keep reading ``settle`` seconds more so that
        extras would be seen too, stop, and return every message body."""
        deadline = time.monotonic() + timeout
        while len(self.bodies) < expected and time.monotonic() < deadline and self.is_alive():
            time.sleep(0.1)
        time.sleep(settle)
        self.stop()
        if self.error is not None:
            raise self.error
        return list(self.bodies)

    def stop(self) -> None:
        self._stopping.set()
        self.join(timeout=10)


@pytest.fixture
def consumer(audit_queue: MotoAws) -> Iterator[AuditConsumer]:
    reader = AuditConsumer(audit_queue)
    reader.start()
    yield reader
    reader.stop()


@pytest.fixture
def proxy(moto_aws: MotoAws) -> Iterator[FaultyEventBridge]:
    with running(moto_aws.url) as faulty:
        yield faulty


def test_killed_dispatcher_with_rejected_entries_loses_nothing(
        migrated_url, consumer, proxy, monkeypatch, tmp_path, record_property):  # noqa: F811 - the imported fixture
    started = time.monotonic()
    worker = "doomed-worker"
    child = start_child(migrated_url, worker, proxy, tmp_path)  # waits for "go" (see run_child)
    try:
        engine = get_engine(migrated_url)
        add_target(engine)
        ids = publish_numbered(engine, EVENTS)
        number = {event_id: n for n, event_id in enumerate(ids)}
        permanent = {event_id for event_id, n in number.items() if fault_marker(n) == "#fail=permanent"}
        monkeypatch.setenv(f"AIRFLOW_CONN_{CONN_ID.upper()}", aws_connection_json(proxy.url))

        # 1. The doomed dispatcher, killed while moto's answer to the request with event 150 is held.
        proxy.phase = "child"
        proxy.hold_response_when(holds_event(HOLD_AT))
        assert child.stdin is not None
        child.stdin.write(b"go\n")
        child.stdin.flush()
        kill_mid_batch(child, proxy, tmp_path)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(timeout=10)
        if child.stdin is not None:
            child.stdin.close()
    killed_at = time.monotonic()

    after_kill = deliveries(engine)
    killed = {event_id: row for event_id, row in after_kill.items() if row.claimed_by == worker}
    assert killed, f"the dead worker held no claim: {delivery_counts(engine)}"
    assert all(row.status == "pending" for row in killed.values())
    assert len({row.claimed_until for row in killed.values()}) == 1, "the claims of more than one batch were left"
    lease_end = next(iter(killed.values())).claimed_until
    assert ids[HOLD_AT] in killed and ids[BATCH - 1] not in killed  # the second batch
    proxy.wait_idle()  # requests sent in parallel with the held one may still be in moto's hands
    reached_moto = set(proxy.ids("forwarded", phase="child", accepted=True))
    in_flight = reached_moto & set(killed)
    assert in_flight and ids[HOLD_AT] in in_flight, "no entry of the killed batch had reached moto"
    for event_id, row in after_kill.items():
        if event_id in killed:
            continue
        assert row.claimed_by is None
        if number[event_id] < BATCH:  # the first batch: every outcome recorded before the kill
            assert row.status in {"delivered", "dead"}, (number[event_id], row.status, row.last_error)
        else:  # after the killed batch: never touched
            assert (row.status, row.attempts, row.last_error) == ("pending", 0, None)

    # 2. Recovery: the free rows at once, the dead worker's after its lease.
    report = recover(engine)
    recovered_at = time.monotonic()
    assert report.unrecorded == 0 and not report.target_errors
    for record in proxy.entries:
        if record.phase == "recovery" and record.envelope_id in killed:
            assert record.at >= lease_end.timestamp(), "a claimed event was sent again before its lease expired"

    # 3. Nothing lost: every event delivered, or dead with its reason.
    rows = deliveries(engine)
    assert set(rows) == set(ids)
    assert delivery_counts(engine) == {"pending": 0, "delivered": EVENTS - len(permanent), "dead": len(permanent)}
    delivered = {event_id for event_id, row in rows.items() if row.status == "delivered"}
    dead = {event_id: row for event_id, row in rows.items() if row.status == "dead"}
    assert set(dead) == permanent
    for row in dead.values():
        assert PERMANENT_CODE in row.last_error and f"target {TARGET_NAME!r}" in row.last_error, row.last_error
        assert row.claimed_by is None and row.delivered_at is None
    for event_id in delivered:
        row = rows[event_id]
        assert row.external_id and row.delivered_at and row.claimed_by is None and row.last_error is None
    # Throttled 3 times: the first round gave up after 2 sends, a later round delivered (a dead worker's sends of an
    # event are not counted: they were never recorded).
    retried = [rows[i] for i in delivered - set(killed) if fault_marker(number[i]) == "#fail=transient:3"]
    assert retried and all(row.attempts == 2 for row in retried)

    # The audit queue: every delivered event, with its full envelope; nothing else; duplicates only in flight.
    assert in_flight <= delivered
    expected_duplicates = in_flight  # moto accepted them from the dead worker, the recovery sent them again
    bodies = consumer.finish(len(delivered) + len(expected_duplicates))
    received = Counter(body["detail"]["id"] for body in bodies)
    envelopes = stored_envelopes(engine)
    assert set(received) == delivered, (
        f"missing {len(delivered - set(received))}, unexpected {len(set(received) - delivered)}")
    assert not set(received) & set(dead)
    for body in bodies:
        assert body["detail"] == envelopes[body["detail"]["id"]]
        assert (body["source"], body["detail-type"]) == ("com.demobank", "transaction.created")
    duplicates = {event_id: count for event_id, count in received.items() if count > 1}
    assert set(duplicates) == expected_duplicates and set(duplicates.values()) <= {2}
    assert set(duplicates) <= set(killed)

    assert not proxy.errors
    assert proxy.stats["rejected_permanent"] >= len(permanent) and proxy.stats["rejected_transient"] > 0
    assert proxy.stats["held_answers"] == 1
    summary = {"events": EVENTS, "delivered": len(delivered), "dead": len(dead), "killed_batch": len(killed),
               "in_flight_at_kill": len(in_flight), "duplicates": len(duplicates), "messages": len(bodies),
               "proxy": dict(proxy.stats), "recovery": report.as_dict(),
               "seconds": {"until_kill": round(killed_at - started, 1),
                           "recovery": round(recovered_at - killed_at, 1),
                           "total": round(time.monotonic() - started, 1)}}
    record_property("duplicates", len(duplicates))
    record_property("recovery_summary", json.dumps(summary))
    print(f"\ndispatcher recovery ({engine.dialect.name}): {json.dumps(summary)}")
