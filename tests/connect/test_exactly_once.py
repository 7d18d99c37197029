"""Exactly once under "accept, then never answer", 5xx, crashes, lost leases and two tasks at once.

Real SDKs over HTTP to the sandbox, the real ledger (SQLite, and PostgreSQL where concurrency matters). A retry
of a task is what Airflow does: the same delivery code with the same scope and a new owner (the next try).
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select, text, update

from demobank.connect.delivery import (
    UNKNOWN_CODE,
    DeliveryFailed,
    DeliveryReport,
    EmailDelivery,
    RetryPolicy,
    SmsDelivery,
    SmsMessage,
    build_email_request,
    build_sms_messages,
)
from demobank.connect.ledger import DeliveryLedger, DeliveryScope
from demobank.connectors.sendgrid import SendGridHook
from demobank.connectors.twilio import TwilioHook
from demobank.db.engine import session_scope
from demobank.db.models import Delivery, DeliveryStatus
from demobank.sandbox.faults import FaultConfig
from demobank.sandbox.settings import DEFAULT_SENDGRID_API_KEY, DEFAULT_TWILIO_ACCOUNT_SID, DEFAULT_TWILIO_AUTH_TOKEN
from tests.conftest import free_port
from tests.connect.conftest import set_connection

QUICK = RetryPolicy(attempts=3, initial=0.01, maximum=0.05, jitter=0.01)


def scope(run: str = "run-1") -> DeliveryScope:
    return DeliveryScope("connect_exactly_once", run, "send")


def twilio_conn(monkeypatch, sandbox, host: str | None = None, **extra: object) -> None:
    set_connection(monkeypatch, "twilio_default", conn_type="twilio", host=host or sandbox.url,
                   login=DEFAULT_TWILIO_ACCOUNT_SID, password=DEFAULT_TWILIO_AUTH_TOKEN,
                   extra={"from_number": "+15005550006", "rate_limit_per_second": 1000, **extra})


def sendgrid_conn(monkeypatch, sandbox, host: str | None = None, **extra: object) -> None:
    set_connection(monkeypatch, "sendgrid_default", conn_type="sendgrid", host=host or sandbox.url,
                   password=DEFAULT_SENDGRID_API_KEY, extra={"from_email": "noreply@demobank.example", **extra})


def sms(engine, try_number: int, **kwargs) -> SmsDelivery:
    """The delivery of one try of the task (a new claim owner per try)."""
    kwargs.setdefault("retry", QUICK)
    kwargs.setdefault("owner", scope().owner(try_number))
    return SmsDelivery(TwilioHook(), DeliveryLedger(engine), scope(), rate_limit=1000, **kwargs)


def email(engine, try_number: int, **kwargs) -> EmailDelivery:
    kwargs.setdefault("retry", QUICK)
    kwargs.setdefault("owner", scope().owner(try_number))
    return EmailDelivery(SendGridHook(), DeliveryLedger(engine), scope(), **kwargs)


def statuses(engine) -> Counter[str]:
    with session_scope(engine) as session:
        return Counter(session.execute(select(Delivery.status)).scalars().all())


def let_time_pass(engine, seconds: float) -> None:
    """The next try comes ``seconds`` later: every recorded send request started that much earlier."""
    with session_scope(engine) as session:
        rows = session.execute(select(Delivery.id, Delivery.attempted_at).where(Delivery.attempted_at.is_not(None)))
        changes = [{"id": row_id, "attempted_at": at - timedelta(seconds=seconds)} for row_id, at in rows.all()]
        if changes:
            session.execute(update(Delivery), changes)  # an UPDATE by primary key per row


def seed_for(config: dict, requests: list[tuple[bool, int | None, bool]]) -> int:
    """A sandbox fault seed under which the first requests go as listed: (is a send, status, hangs).

    Uses the sandbox's own :meth:`FaultConfig.pick`, so the test scenario is exactly what the sandbox will do.
    """
    faults = FaultConfig(**config)
    for seed in range(100_000):
        rng = random.Random(seed)
        if all(faults.pick(rng, may_hang=send) == (status, hangs) for send, status, hangs in requests):
            return seed
    raise AssertionError(f"no seed gives {requests}")


def run_tries(make, send, tries: int = 6, between=None) -> tuple[list[DeliveryReport], list[DeliveryFailed]]:
    """Run the task until it succeeds, as Airflow's retries would (``between`` runs before each retry); return
    the report of every try (the last one succeeded) and each failure."""
    failures: list[DeliveryFailed] = []
    reports: list[DeliveryReport] = []
    for try_number in range(1, tries + 1):
        if failures and between:
            between()
        try:
            reports.append(send(make(try_number)))
            return reports, failures
        except DeliveryFailed as failed:
            failures.append(failed)
            reports.append(failed.report)
    raise AssertionError(f"not delivered after {tries} tries: {failures[-1]}")


# -- accept, then never answer ------------------------------------------------------------------------------


def test_1000_sms_with_10_percent_never_answered_reach_each_number_once_across_retries(
        clean_sandbox, suite_engine, monkeypatch) -> None:
    # A short client timeout so that the test runs in seconds. A lookup is trusted 30 s after its request started
    # (reconcile_after_seconds); a try does not wait for that (max_reconcile_wait=0) and leaves such sends unknown.
    # Between tries, as with the DAG's retry delay, the 30 s pass: the sandbox has handled every send it received,
    # then the ledger's attempt times move 31 s back. (Real seconds would make the test depend on the machine's
    # load: on a busy machine a send can reach the sandbox more than a few seconds after it started.)
    twilio_conn(monkeypatch, clean_sandbox, timeout=1, reconcile_after_seconds=30)
    clean_sandbox.faults(hang_rate=0.10, error_rate=0.05, error_statuses=[500], channels=["sms"], seed=11,
                         retry_after=0)
    to = [f"+1555031{i:04d}" for i in range(1000)]
    messages = build_sms_messages(to=to, body="Your statement is ready")

    # One request per message and try: what fails or stays unknown is left to the next try of the task.
    def thirty_seconds_pass() -> None:
        clean_sandbox.wait_until_idle()
        let_time_pass(suite_engine, 31)

    reports, failures = run_tries(lambda n: sms(suite_engine, n, retry=RetryPolicy(attempts=1), max_in_flight=64,
                                                max_reconcile_wait=0),
                                  lambda delivery: delivery.send(messages), between=thirty_seconds_pass)
    report = reports[-1]

    recorded = Counter(m["to"] for m in clean_sandbox.messages("sms"))
    assert sorted(recorded) == sorted(to) and set(recorded.values()) == {1}, "every number exactly once"
    assert statuses(suite_engine) == {DeliveryStatus.ACCEPTED.value: 1000}
    assert failures, "with 5% of 500s and one request per message the first try cannot succeed"
    assert sum(r.reconciled for r in reports) >= 50, "the hung sends were found at Twilio, not sent again"
    assert sum(r.sent + r.reconciled for r in reports) == 1000
    assert report.already_accepted + report.sent + report.reconciled == 1000
    sids = {m["to"]: m["sid"] for m in clean_sandbox.messages("sms")}
    assert [sids[number] for number in to] == report.message_ids


def test_5000_emails_with_10_percent_of_requests_never_answered_reach_each_recipient_once(
        clean_sandbox, suite_engine, monkeypatch) -> None:
    """5 requests of 1000 personalizations. SendGrid's Email Activity lags: with the default delay (600 s) a
    request answered 500 stays unknown (not resent) and the task fails naming its recipients; a retry 10 minutes
    later finds it absent and sends it. A request that hangs is found by one search (by its request id)."""
    sendgrid_conn(monkeypatch, clean_sandbox, timeout=1)  # reconcile_after_seconds: SendGrid's default
    # Sends and lookups, one at a time in this order: 1st request hangs (its lookup finds it), 2nd answers 500
    # (its lookup finds nothing), the other three go through.
    config = {"hang_rate": 0.1, "error_rate": 0.1, "error_statuses": [500], "channels": ["email"]}
    seed = seed_for(config, [(True, None, True), (False, None, False), (True, 500, False), (False, None, False),
                             (True, None, False), (True, None, False), (True, None, False)])
    clean_sandbox.faults(**config, seed=seed, retry_after=0)
    to = [f"customer{i:04d}@example.com" for i in range(5000)]
    request = build_email_request(to, subject="Statement", html_content="<p>Your statement is ready</p>")

    with pytest.raises(DeliveryFailed) as first:
        email(suite_engine, 1, max_in_flight=1).send(request)
    assert len(first.value.unknown) == 1000 and {code for _, code, _ in first.value.failures} == {UNKNOWN_CODE}
    assert (first.value.report.reconciled, first.value.report.sent) == (1000, 3000)
    assert "reconciled with the provider by a retry" in str(first.value)
    assert "customer" not in str(first.value)  # addresses masked
    recorded = [r for m in clean_sandbox.messages("email") for r in m["recipients"]]
    assert len(recorded) == len(set(recorded)) == 4000, "the unknown request was not resent blindly"
    assert statuses(suite_engine) == {"accepted": 4000, "unknown": 1000}

    with pytest.raises(DeliveryFailed):  # a retry too soon: still unknown, still not resent
        email(suite_engine, 2, max_in_flight=1).send(request)
    assert len(clean_sandbox.messages("email")) == 4

    # Each later try comes ten minutes after the previous one (the DAG's retry delay).
    let_time_pass(suite_engine, 601)
    reports, _ = run_tries(lambda n: email(suite_engine, n + 2, max_in_flight=1), lambda d: d.send(request),
                           between=lambda: let_time_pass(suite_engine, 601))
    assert reports[-1].already_accepted + reports[-1].sent + reports[-1].reconciled == 5000
    recorded = Counter(r for m in clean_sandbox.messages("email") for r in m["recipients"])
    assert sorted(recorded) == sorted(to) and set(recorded.values()) == {1}, "every recipient exactly once"
    assert statuses(suite_engine) == {"accepted": 5000}


def test_a_hung_sms_is_found_at_twilio_not_sent_again(clean_sandbox, suite_engine, monkeypatch) -> None:
    # The lookup is trusted 30 s after the request started; the delivery's wait for that is the sandbox handling
    # every send it received (on a busy machine the held send can reach it after the client gave up).
    twilio_conn(monkeypatch, clean_sandbox, timeout=0.5, reconcile_after_seconds=30)
    clean_sandbox.faults(hang_rate=1.0, channels=["sms"])
    report = sms(suite_engine, 1, sleep=lambda _seconds: clean_sandbox.wait_until_idle()).send(
        [SmsMessage("+15550177001", "held")])
    (recorded,) = clean_sandbox.messages("sms")
    assert (report.requests, report.lookups, report.reconciled, report.sent) == (1, 1, 1, 0)
    assert report.message_ids == [recorded["sid"]]


def test_a_500_is_looked_up_then_sent_again_once_absent(clean_sandbox, suite_engine, monkeypatch) -> None:
    twilio_conn(monkeypatch, clean_sandbox, reconcile_after_seconds=0)
    config = {"error_rate": 0.5, "error_statuses": [500], "channels": ["sms"]}
    # send → 500; the two list requests of the lookup go through (nothing found); the resend goes through.
    seed = seed_for(config, [(True, 500, False), (False, None, False), (False, None, False), (True, None, False)])
    clean_sandbox.faults(**config, seed=seed)
    report = sms(suite_engine, 1, max_in_flight=1).send([SmsMessage("+15550177002", "once")])
    assert (report.requests, report.lookups, report.sent) == (2, 1, 1)
    assert len(clean_sandbox.messages("sms")) == 1


def test_a_failed_row_whose_outcome_could_be_unknown_is_looked_up_not_resent(clean_sandbox, tmp_path,
                                                                             monkeypatch) -> None:
    """Before revision 0008 a read timeout was recorded as ``failed``, and the next try resent it. The migration
    turns such rows into ``unknown``: the next try asks Twilio first."""
    from demobank.db.engine import get_engine
    from demobank.db.migrate import upgrade

    twilio_conn(monkeypatch, clean_sandbox, reconcile_after_seconds=0)
    url = f"sqlite:///{tmp_path / 'legacy.db'}"
    upgrade(url, "0007")
    engine = get_engine(url)
    got_through, never_arrived = SmsMessage("+15550177003", "legacy"), SmsMessage("+15550177004", "legacy")
    sid = TwilioHook().send_sms(got_through.to, got_through.body)  # the old attempt's request got through...
    with session_scope(engine) as session:  # ... and timed out; the old code recorded a failure
        for message in (got_through, never_arrived):
            session.execute(text(
                "INSERT INTO deliveries (idempotency_key, channel, provider, recipient_masked, status, attempts, "
                "error_code, dag_id, run_id, task_id, created_at, updated_at) VALUES (:key, 'sms', 'twilio', "
                "'+1******', 'failed', 1, 'ReadTimeout', :dag, :run, :task, :created, :created)"),
                {"key": scope().key("sms", message.to), "dag": scope().dag_id, "run": scope().run_id,
                 "task": scope().task_id, "created": datetime.now(UTC).replace(tzinfo=None) - timedelta(minutes=5)})
    upgrade(url)
    assert statuses(engine) == {"unknown": 2}

    report = sms(engine, 2, max_in_flight=1).send([got_through, never_arrived])
    assert (report.reconciled, report.sent, report.lookups) == (1, 1, 2)
    assert report.message_ids[0] == sid
    assert Counter(m["to"] for m in clean_sandbox.messages("sms")) == {got_through.to: 1, never_arrived.to: 1}


# -- provably not sent: retried directly ---------------------------------------------------------------------


def test_connection_refused_is_retried_directly_and_a_retry_sends_without_lookup(clean_sandbox, suite_engine,
                                                                                  monkeypatch) -> None:
    closed = f"http://127.0.0.1:{free_port()}"
    messages = [SmsMessage("+15550177005", "a"), SmsMessage("+15550177006", "b")]
    twilio_conn(monkeypatch, clean_sandbox, host=closed)
    with pytest.raises(DeliveryFailed) as raised:
        sms(suite_engine, 1, max_in_flight=1).send(messages)
    assert [code for _, code, _ in raised.value.failures] == ["ConnectionError", "ConnectionError"]
    assert (raised.value.unknown, raised.value.report.requests, raised.value.report.lookups) == ([], 6, 0)
    with session_scope(suite_engine) as session:
        rows = session.execute(select(Delivery.status, Delivery.attempts)).all()
    assert sorted(rows) == [("failed", 3), ("failed", 3)]  # three requests each, no lookup: provably not sent

    twilio_conn(monkeypatch, clean_sandbox)
    report = sms(suite_engine, 2).send(messages)
    assert (report.sent, report.lookups) == (2, 0)
    assert len(clean_sandbox.messages("sms")) == 2

    sendgrid_conn(monkeypatch, clean_sandbox, host=closed)
    request = build_email_request(["refused@example.com"], subject="s", html_content="<p>x</p>")
    with pytest.raises(DeliveryFailed) as raised:
        email(suite_engine, 1).send(request)
    assert [code for _, code, _ in raised.value.failures] == ["URLError"]
    assert raised.value.report.lookups == 0
    sendgrid_conn(monkeypatch, clean_sandbox)
    assert email(suite_engine, 2).send(request).lookups == 0


# -- owners and leases ---------------------------------------------------------------------------------------


def test_only_the_holder_marks_and_a_loser_changes_nothing(ledger_engine) -> None:
    ledger = DeliveryLedger(ledger_engine, lease_seconds=60)
    keys = [scope().key("sms", f"+1555017{i:04d}") for i in range(3)]
    rows = [(key, "+1******") for key in keys]
    first, second = scope().owner(1), scope().owner(2)

    assert set(ledger.claim(scope(), "sms", "twilio", rows, first).held) == set(keys)
    claim = ledger.claim(scope(), "sms", "twilio", rows, second)
    assert (claim.held, set(claim.contested)) == ({}, set(keys))
    assert ledger.start_attempt(keys, second, "x") == keys  # not started: do not send
    assert ledger.mark_accepted(keys, second, "SM-second") == keys
    assert ledger.mark_unknown(keys, second, "ReadTimeout", "t") == keys
    untouched = ledger.entries(keys)
    assert {(e.status, e.claimed_by, e.attempts, e.provider_message_id) for e in untouched.values()} == {
        ("pending", first, 0, None)}

    with session_scope(ledger_engine) as session:  # the first owner's lease runs out (it stalled)
        session.execute(update(Delivery).values(lease_until=datetime.now(UTC) - timedelta(seconds=1)))
    assert set(ledger.claim(scope(), "sms", "twilio", rows, second).held) == set(keys)
    assert ledger.mark_accepted(keys, first, "SM-first") == keys  # the stalled owner's late answer: refused
    assert ledger.mark_failed(keys, first, "400", "refused") == keys
    assert {e.status for e in ledger.entries(keys).values()} == {"pending"}

    assert ledger.mark_accepted(keys, second, "SM-second") == []
    claim = ledger.claim(scope(), "sms", "twilio", rows, first)
    assert (claim.held, claim.contested, set(claim.accepted)) == ({}, {}, set(keys))
    assert ledger.mark_failed(keys, second, "400", "late") == keys  # an accepted row is never downgraded
    assert ledger.release(second) == 3
    assert {(e.status, e.lease_until) for e in ledger.entries(keys).values()} == {("accepted", None)}


def test_a_task_that_lost_its_lease_mid_send_records_nothing_and_says_so(clean_sandbox, suite_engine,
                                                                        twilio_conn) -> None:
    """A zombie: its lease ran out while Twilio was answering, and the next try took the message over. The
    zombie's mark changes nothing (the row stays the new holder's); the new holder finds the message at Twilio."""
    message = SmsMessage("+15550177010", "zombie")
    key = scope().key("sms", message.to)
    successor = scope().owner(2)

    class StallingHook(TwilioHook):
        def send_sms(self, to: str, body: str) -> str:
            sid = super().send_sms(to, body)
            with session_scope(suite_engine) as session:  # ... the worker stalls past its lease
                session.execute(update(Delivery).values(lease_until=datetime.now(UTC) - timedelta(seconds=1)))
            DeliveryLedger(suite_engine).claim(scope(), "sms", "twilio", [(key, "+1******7010")], successor)
            return sid

    zombie = SmsDelivery(StallingHook(), DeliveryLedger(suite_engine), scope(), rate_limit=100, retry=QUICK,
                         owner=scope().owner(1))
    with pytest.raises(DeliveryFailed, match="another task took this message over") as raised:
        zombie.send([message])
    assert [code for _, code, _ in raised.value.failures] == ["lease_lost"]
    (entry,) = DeliveryLedger(suite_engine).entries([key]).values()
    assert (entry.status, entry.claimed_by, entry.provider_message_id) == ("pending", successor, None)

    report = sms(suite_engine, 2, owner=successor).send([message])
    assert (report.reconciled, report.sent) == (1, 0)
    assert len(clean_sandbox.messages("sms")) == 1


def test_two_tasks_started_at_once_with_the_same_keys_send_every_sms_once(clean_sandbox, ledger_engine,
                                                                          twilio_conn) -> None:
    clean_sandbox.faults(latency_ms=5, channels=["sms"])
    messages = build_sms_messages(to=[f"+1555032{i:04d}" for i in range(300)], body="Card blocked")
    reports, errors = run_at_once(
        [lambda n=n: sms(ledger_engine, n, poll_interval=0.05, wait_for_others=60).send(messages) for n in (1, 2)])
    assert errors == []
    recorded = Counter(m["to"] for m in clean_sandbox.messages("sms"))
    assert len(recorded) == 300 and set(recorded.values()) == {1}
    assert sum(r.sent for r in reports) == 300
    assert reports[0].message_ids == reports[1].message_ids  # the loser reports the winner's SIDs


def test_two_tasks_started_at_once_with_the_same_keys_send_every_email_once(clean_sandbox, ledger_engine,
                                                                            sendgrid_conn) -> None:
    to = [f"both{i:04d}@example.com" for i in range(2000)]
    request = build_email_request(to, subject="s", html_content="<p>x</p>")
    reports, errors = run_at_once(
        [lambda n=n: email(ledger_engine, n, poll_interval=0.05, wait_for_others=60).send(request) for n in (1, 2)])
    assert errors == []
    recorded = Counter(r for m in clean_sandbox.messages("email") for r in m["recipients"])
    assert len(recorded) == 2000 and set(recorded.values()) == {1}
    assert sum(r.sent for r in reports) == 2000


def test_a_task_waits_for_another_then_fails_naming_what_it_holds(clean_sandbox, suite_engine, twilio_conn) -> None:
    messages = [SmsMessage("+15550177020", "held")]
    other = scope().owner(1)
    DeliveryLedger(suite_engine).claim(scope(), "sms", "twilio", [(scope().key("sms", messages[0].to), "x")], other)
    with pytest.raises(DeliveryFailed, match="another task") as raised:
        sms(suite_engine, 2, poll_interval=0.05, wait_for_others=0.3).send(messages)
    assert other in str(raised.value) and raised.value.failures[0][1] == "held_by_other_task"
    assert clean_sandbox.messages("sms") == []


def test_a_retry_waits_out_the_lease_of_a_try_that_died_then_reconciles(clean_sandbox, suite_engine,
                                                                        twilio_conn) -> None:
    message = SmsMessage("+15550177030", "died mid-send")
    key = scope().key("sms", message.to)
    dead = scope().owner(1)
    ledger = DeliveryLedger(suite_engine, lease_seconds=0.5)
    ledger.claim(scope(), "sms", "twilio", [(key, "+1******7030")], dead)
    ledger.start_attempt([key], dead, "attempt-1")
    sid = TwilioHook().send_sms(message.to, message.body)  # ... and the worker was killed: no mark, no release
    report = sms(suite_engine, 2, poll_interval=0.05, wait_for_others=30).send([message])
    assert (report.reconciled, report.sent, report.message_ids) == (1, 0, [sid])
    assert len(clean_sandbox.messages("sms")) == 1


def test_an_older_identical_sms_is_not_taken_for_ours(clean_sandbox, suite_engine, twilio_conn) -> None:
    """Twilio takes no idempotency key: the lookup matches number and body, sent since the row was claimed."""
    message = SmsMessage("+15550177031", "Your code is ready")
    TwilioHook().send_sms(message.to, message.body)  # an earlier, unrelated message with the same text
    key = scope().key("sms", message.to)
    owner = scope().owner(1)
    ledger = DeliveryLedger(suite_engine)
    ledger.claim(scope(), "sms", "twilio", [(key, "+1******7031")], owner)
    ledger.start_attempt([key], owner, "attempt-1")  # ... and the try died before its request left
    with session_scope(suite_engine) as session:  # it claimed the row 5 minutes after that earlier message
        session.execute(update(Delivery).values(created_at=datetime.now(UTC) + timedelta(minutes=5),
                                                lease_until=datetime.now(UTC) - timedelta(seconds=1)))
    report = sms(suite_engine, 2).send([message])
    assert (report.reconciled, report.sent, report.lookups) == (0, 1, 1)
    assert len(clean_sandbox.messages("sms")) == 2


def test_the_lease_is_renewed_while_a_long_send_runs(clean_sandbox, suite_engine, twilio_conn) -> None:
    """A lease of 0.6 s and a send of about 2 s: another task trying all along never gets a message."""
    clean_sandbox.faults(latency_ms=150, channels=["sms"])
    messages = build_sms_messages(to=[f"+1555033{i:04d}" for i in range(12)], body="slow")
    rows = [(scope().key("sms", m.to), "x") for m in messages]
    delivery = SmsDelivery(TwilioHook(), DeliveryLedger(suite_engine, lease_seconds=0.6), scope(), rate_limit=100,
                           retry=QUICK, max_in_flight=1, owner=scope().owner(1))
    done = threading.Event()
    stolen: list[str] = []

    def rival() -> None:
        ledger = DeliveryLedger(suite_engine, lease_seconds=0.6)
        deadline = time.monotonic() + 30
        while not clean_sandbox.messages("sms") and time.monotonic() < deadline:  # the send has claimed and started
            time.sleep(0.02)
        while not done.is_set():
            stolen.extend(ledger.claim(scope(), "sms", "twilio", rows, scope().owner(2)).held)
            time.sleep(0.05)

    thread = threading.Thread(target=rival)
    thread.start()
    try:
        report = delivery.send(messages)
    finally:
        done.set()
        thread.join()
    assert stolen == [] and report.sent == 12
    assert len(clean_sandbox.messages("sms")) == 12


def run_at_once(tasks: list) -> tuple[list[DeliveryReport], list[BaseException]]:
    """Start the tasks in threads at the same moment; return their reports (in order) and errors."""
    barrier = threading.Barrier(len(tasks))
    reports: list[DeliveryReport | None] = [None] * len(tasks)
    errors: list[BaseException] = []

    def run(index: int) -> None:
        barrier.wait()
        try:
            reports[index] = tasks[index]()
        except BaseException as error:  # recorded for the assertion
            errors.append(error)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(tasks))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return [r for r in reports if r is not None], errors



def test_an_owner_names_the_try_and_is_unique_per_process() -> None:
    owner = scope().owner(3)
    assert owner.startswith("connect_exactly_once/run-1/send/-1/try-3/")
    assert owner != scope().owner(3)  # a zombie and its replacement running the same try are told apart
    long = DeliveryScope("d" * 250, "r" * 250, "t" * 250).owner(1)
    assert len(long) <= 500 and long != DeliveryScope("d" * 250, "r" * 250, "t" * 250).owner(1)
