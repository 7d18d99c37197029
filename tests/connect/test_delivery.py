"""Send SMS / Send Email delivery through the real SDKs against the sandbox, with the ledger on a real database."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select, update

from demobank.connect.delivery import (
    DeliveryFailed,
    EmailDelivery,
    RateLimiter,
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
from demobank.db.models import Delivery
from tests.connect.conftest import set_connection

FAST = RetryPolicy(attempts=8, initial=0.05, maximum=2.0, jitter=0.05)


def numbers(count: int, prefix: str = "+1555020") -> list[str]:
    return [f"{prefix}{i:04d}" for i in range(count)]


def scope(run: str = "run-1", task: str = "send", map_index: int = -1) -> DeliveryScope:
    return DeliveryScope("connect_test", run, task, map_index)


def sms_delivery(engine, run: str = "run-1", **kwargs) -> SmsDelivery:
    return SmsDelivery(TwilioHook(), DeliveryLedger(engine), scope(run), rate_limit=500, retry=FAST, **kwargs)


def crashed_attempt(engine, channel: str, key: str, masked: str, attempt_id: str | None = None) -> None:
    """A try claimed ``key``, started its send request and died; its lease has run out since."""
    ledger = DeliveryLedger(engine)
    owner = scope().owner(try_number=1)
    ledger.claim(scope(), channel, "twilio" if channel == "sms" else "sendgrid", [(key, masked)], owner)
    ledger.start_attempt([key], owner, attempt_id)
    with session_scope(engine) as session:
        session.execute(update(Delivery).where(Delivery.idempotency_key == key)
                        .values(lease_until=datetime.now(UTC) - timedelta(seconds=1)))


# -- SMS ----------------------------------------------------------------------------------------------------


def test_one_sms_is_recorded_once_and_a_retry_sends_nothing(clean_sandbox, suite_engine, twilio_conn) -> None:
    first = sms_delivery(suite_engine).send([SmsMessage("+15550199001", "Your card was used at ACME")])
    assert first.sent == 1 and first.message_ids[0].startswith("SM")
    again = sms_delivery(suite_engine).send([SmsMessage("+15550199001", "Your card was used at ACME")])
    assert again.sent == 0 and again.already_accepted == 1 and again.message_ids == first.message_ids
    recorded = clean_sandbox.messages("sms")
    assert [(m["to"], m["body"], m["sid"]) for m in recorded] == [
        ("+15550199001", "Your card was used at ACME", first.message_ids[0])]


def test_fan_out_of_1000_with_10_percent_faults_records_each_number_exactly_once(
        clean_sandbox, suite_engine, twilio_conn) -> None:
    clean_sandbox.faults(error_rate=0.10, error_statuses=[429, 500], channels=["sms"], retry_after=1)
    to = numbers(1000)
    report = sms_delivery(suite_engine, max_in_flight=32).send(build_sms_messages(to=to, body="Payment due"))
    assert report.sent == 1000 and report.failures == []
    assert report.requests > 1000, "the sandbox should have refused some requests"
    recorded = [m["to"] for m in clean_sandbox.messages("sms")]
    assert sorted(recorded) == sorted(to)
    # A retried task (same scope) sends nothing more, even with faults still on.
    again = sms_delivery(suite_engine).send(build_sms_messages(to=to, body="Payment due"))
    assert again.already_accepted == 1000 and again.requests == 0
    assert len(clean_sandbox.messages("sms")) == 1000


def test_retry_after_is_honoured(clean_sandbox, suite_engine, twilio_conn) -> None:
    clean_sandbox.faults(error_rate=1.0, error_statuses=[429], channels=["sms"], retry_after=3)
    waits: list[float] = []
    delivery = SmsDelivery(TwilioHook(), DeliveryLedger(suite_engine), scope(), rate_limit=500,
                           retry=RetryPolicy(attempts=3, initial=0.01, maximum=10, jitter=0), sleep=waits.append)
    with pytest.raises(DeliveryFailed, match="20429"):
        delivery.send([SmsMessage("+15550199002", "x")])
    retry_waits = [w for w in waits if w > 0.05]  # the rate limiter's own slot waits are tiny at 500/s
    assert len(retry_waits) == 2 and all(w >= 3 for w in retry_waits), waits
    assert clean_sandbox.messages("sms") == []


def test_an_interrupted_attempt_is_reconciled_not_resent(clean_sandbox, suite_engine, twilio_conn) -> None:
    """The attempt died after Twilio accepted the message and before the ledger recorded it."""
    hook = TwilioHook()
    message = SmsMessage("+15550199003", "Interrupted alert")
    key = scope().key("sms", message.to)
    crashed_attempt(suite_engine, "sms", key, "+1******9003")
    sid = hook.send_sms(message.to, message.body)  # ... and then the worker died
    report = sms_delivery(suite_engine).send([message])
    assert (report.reconciled, report.sent, report.message_ids) == (1, 0, [sid])
    assert len(clean_sandbox.messages("sms")) == 1


def test_an_interrupted_attempt_that_never_reached_twilio_is_sent(clean_sandbox, suite_engine, twilio_conn) -> None:
    message = SmsMessage("+15550199004", "Never left")
    key = scope().key("sms", message.to)
    crashed_attempt(suite_engine, "sms", key, "+1******9004")
    with session_scope(suite_engine) as session:  # claimed an hour ago
        session.execute(update(Delivery).where(Delivery.idempotency_key == key)
                        .values(created_at=datetime.now(UTC) - timedelta(hours=1)))
    report = sms_delivery(suite_engine).send([message])
    assert (report.reconciled, report.sent) == (0, 1)
    assert len(clean_sandbox.messages("sms")) == 1


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"to": "5551234567", "body": "hi"}, "not in E.164 form"),
        ({"to": "+15551234567", "body": "  "}, "the body is empty"),
        ({"to": "", "body": "hi"}, "'to' is empty"),
        ({"to": "+15551234567", "body": "x" * 1601}, "at most 1600"),
        ({"messages": [{"to": "+15551234567", "body": "a"}, {"to": "+15551234567", "body": "b"}]}, "more than once"),
    ],
)
def test_bad_sms_input_is_refused_before_sending(kwargs, message) -> None:
    with pytest.raises(ValueError, match=message) as raised:
        build_sms_messages(**kwargs)
    assert "5551234567" not in str(raised.value)


def test_wrong_auth_token_fails_with_20003_and_sends_nothing(clean_sandbox, suite_engine, monkeypatch,
                                                               twilio_conn) -> None:
    set_connection(monkeypatch, "twilio_default", conn_type="twilio", host=clean_sandbox.url,
                   login="AC" + "0" * 32, password="wrong-token", extra={"from_number": "+15005550006"})
    with pytest.raises(DeliveryFailed) as raised:
        sms_delivery(suite_engine).send(build_sms_messages(to=numbers(5), body="x"))
    text = str(raised.value)
    assert "20003" in text and "Auth Token" in text and "5 of 5" in text
    assert "+155502" not in text  # numbers are masked
    assert clean_sandbox.messages("sms") == []


def test_missing_connection_fails_clearly(suite_engine, monkeypatch) -> None:
    from airflow.sdk.exceptions import AirflowNotFoundException

    monkeypatch.delenv("AIRFLOW_CONN_TWILIO_DEFAULT", raising=False)
    with pytest.raises(AirflowNotFoundException, match="twilio_default"):
        sms_delivery(suite_engine).send([SmsMessage("+15550199005", "x")])


def test_connection_without_sender_fails_before_claiming(suite_engine, monkeypatch, sandbox) -> None:
    set_connection(monkeypatch, "twilio_default", conn_type="twilio", host=sandbox.url, login="AC" + "0" * 32,
                   password="x")
    with pytest.raises(ValueError, match="from_number"):
        sms_delivery(suite_engine).send([SmsMessage("+15550199006", "x")])
    with session_scope(suite_engine) as session:
        assert session.execute(select(Delivery)).all() == []


def test_invalid_number_refused_by_twilio_is_reported_with_hint(clean_sandbox, suite_engine, twilio_conn) -> None:
    """A number that passes our E.164 check can still be refused by the provider (here: To == From)."""
    with pytest.raises(DeliveryFailed, match=r"21266|Twilio error") as raised:
        sms_delivery(suite_engine).send([SmsMessage("+15005550006", "x"), SmsMessage("+15550199007", "y")])
    assert "1 of 2" in str(raised.value)
    assert [m["to"] for m in clean_sandbox.messages("sms")] == ["+15550199007"]


def test_logs_mask_numbers_and_never_show_bodies(clean_sandbox, suite_engine, twilio_conn, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    clean_sandbox.faults(error_rate=1.0, error_statuses=[500], channels=["sms"], retry_after=0)
    with pytest.raises(DeliveryFailed):
        SmsDelivery(TwilioHook(), DeliveryLedger(suite_engine), scope(), rate_limit=500,
                    retry=RetryPolicy(attempts=2, initial=0.01, maximum=0.02)).send(
            [SmsMessage("+15550199008", "secret body text")])
    assert "+15550199008" not in caplog.text
    assert "secret body text" not in caplog.text
    assert "+1******9008" in caplog.text


def test_rate_limiter_paces_calls() -> None:
    clock = [0.0]
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        clock[0] += seconds

    limiter = RateLimiter(10, clock=lambda: clock[0], sleep=sleep)
    for _ in range(5):
        limiter.acquire()
    assert clock[0] == pytest.approx(0.4)


# -- e-mail -------------------------------------------------------------------------------------------------


def email_delivery(engine, run: str = "run-1", **kwargs) -> EmailDelivery:
    return EmailDelivery(SendGridHook(), DeliveryLedger(engine), scope(run), retry=FAST, **kwargs)


def test_2500_emails_go_in_3_requests_and_once_each(clean_sandbox, suite_engine, sendgrid_conn) -> None:
    to = [f"customer{i}@example.com" for i in range(2500)]
    request = build_email_request(to, subject="Statement ready", html_content="<p>Your statement</p>")
    report = email_delivery(suite_engine).send(request)
    assert (report.sent, report.requests) == (2500, 3)
    recorded = clean_sandbox.messages("email")
    assert sorted(len(m["recipients"]) for m in recorded) == [500, 1000, 1000]
    assert sorted(r for m in recorded for r in m["recipients"]) == sorted(to)
    first = recorded[0]["request"]["personalizations"][0]
    assert len(first["to"]) == 1 and "demobank_delivery" in first["custom_args"]
    again = email_delivery(suite_engine).send(request)
    assert (again.requests, again.already_accepted) == (0, 2500)


def test_email_with_faults_delivers_each_recipient_once(clean_sandbox, suite_engine, sendgrid_conn) -> None:
    clean_sandbox.faults(error_rate=0.3, error_statuses=[429, 500], channels=["email"], retry_after=0)
    to = [f"f{i}@example.com" for i in range(300)]
    report = email_delivery(suite_engine, batch_size=10).send(
        build_email_request(to, subject="s", html_content="<p>x</p>"))
    assert report.sent == 300
    recorded = [r for m in clean_sandbox.messages("email") for r in m["recipients"]]
    assert sorted(recorded) == sorted(to)


def test_interrupted_email_attempt_is_reconciled(clean_sandbox, suite_engine, sendgrid_conn) -> None:
    """A row of before revision 0008 (no request id): looked up by its own key."""
    hook = SendGridHook()
    delivery = email_delivery(suite_engine)
    request = build_email_request(["late@example.com"], subject="s", html_content="<p>x</p>")
    key = scope().key("email", "late@example.com")
    crashed_attempt(suite_engine, "email", key, "l***@example.com")
    hook.send_mail(delivery.payload(request, [("late@example.com", key)]))  # ... and then the worker died
    report = delivery.send(request)
    assert (report.reconciled, report.sent, report.lookups) == (1, 0, 1)
    assert len(clean_sandbox.messages("email")) == 1


def test_interrupted_request_of_1000_recipients_is_settled_by_one_lookup(clean_sandbox, suite_engine,
                                                                         sendgrid_conn) -> None:
    """SendGrid accepts a request whole or not at all: one Email Activity search by the request id settles all of
    its recipients (Email Activity allows 6 searches a minute: one per recipient would take hours)."""
    hook = SendGridHook()
    delivery = email_delivery(suite_engine)
    to = [f"crash{i}@example.com" for i in range(1000)]
    request = build_email_request(to, subject="s", html_content="<p>x</p>")
    ledger, owner = DeliveryLedger(suite_engine), scope().owner(try_number=1)
    pairs = [(address, scope().key("email", address)) for address in to]
    ledger.claim(scope(), "email", "sendgrid", [(key, "x") for _, key in pairs], owner)
    ledger.start_attempt([key for _, key in pairs], owner, "request-1")
    message_id = hook.send_mail(delivery.payload(request, pairs, "request-1"))  # ... and then the worker died
    with session_scope(suite_engine) as session:
        session.execute(update(Delivery).values(lease_until=datetime.now(UTC) - timedelta(seconds=1)))
    report = delivery.send(request)
    assert (report.reconciled, report.sent, report.lookups, report.requests) == (1000, 0, 1, 0)
    assert set(report.message_ids) == {message_id}
    assert len(clean_sandbox.messages("email")) == 1


def test_wrong_sendgrid_key_fails_with_401_and_sends_nothing(clean_sandbox, suite_engine, monkeypatch) -> None:
    set_connection(monkeypatch, "sendgrid_default", conn_type="sendgrid", host=clean_sandbox.url,
                   password="SG.wrong", extra={"from_email": "noreply@demobank.example"})
    with pytest.raises(DeliveryFailed, match=r"401.*API key") as raised:
        email_delivery(suite_engine, batch_size=2).send(
            build_email_request(["a@example.com", "b@example.com", "c@example.com"], subject="s",
                                html_content="<p>x</p>"))
    assert "a@example.com" not in str(raised.value)
    assert clean_sandbox.messages("email") == []


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"to": "not-an-address", "subject": "s", "html_content": "<p/>"}, "invalid e-mail"),
        ({"to": "a@example.com", "subject": "", "html_content": "<p/>"}, "subject is empty"),
        ({"to": "a@example.com", "subject": "s", "html_content": ""}, "html_content is empty"),
        ({"to": "a@example.com", "template_id": "welcome"}, "not a dynamic template id"),
        ({"to": [], "subject": "s", "html_content": "<p/>"}, "'to' is empty"),
    ],
)
def test_bad_email_input_is_refused(kwargs, message) -> None:
    with pytest.raises(ValueError, match=message):
        build_email_request(**kwargs)


def test_dynamic_template_payload(suite_engine, sendgrid_conn, clean_sandbox) -> None:
    request = build_email_request("t@example.com", template_id="d-" + "a" * 32,
                                  dynamic_template_data={"amount": "12.00"})
    email_delivery(suite_engine).send(request)
    body = clean_sandbox.messages("email")[0]["request"]
    assert body["template_id"] == "d-" + "a" * 32
    assert body["personalizations"][0]["dynamic_template_data"] == {"amount": "12.00"}
    assert json.dumps(body).count("t@example.com") == 1


def test_a_business_key_sends_once_across_runs(clean_sandbox, suite_engine, twilio_conn) -> None:
    """Payment reminders carry `payment_reminder:<customer>:<due date>`: a second run the same day sends nothing."""
    messages = build_sms_messages(messages=[
        {"to": "+15550199010", "body": "Reminder", "key": "payment_reminder:C-1:2026-01-07"},
        {"to": "+15550199011", "body": "Reminder", "key": "payment_reminder:C-2:2026-01-07"},
    ])
    first = sms_delivery(suite_engine, run="scheduled__2026-01-06").send(messages)
    manual = sms_delivery(suite_engine, run="manual__2026-01-06T10:00").send(list(reversed(messages)))
    assert (first.sent, manual.sent, manual.already_accepted) == (2, 0, 2)
    assert len(clean_sandbox.messages("sms")) == 2


def test_duplicate_business_keys_are_refused() -> None:
    with pytest.raises(ValueError, match="key 'k' appears more than once"):
        build_sms_messages(messages=[{"to": "+15550199012", "body": "a", "key": "k"},
                                     {"to": "+15550199013", "body": "b", "key": "k"}])
