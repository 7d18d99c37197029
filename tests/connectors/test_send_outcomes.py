"""What a failed send tells about its message, for real SDK errors raised over real sockets.

``not_sent`` only when the request provably never reached the provider (refused connection, failed TLS
handshake); ``unknown`` when it may have been accepted (read timeout after the request was written, 5xx);
``refused`` for the provider's other answers (a 429 among them, which is worth sending again).
"""

from __future__ import annotations

import json
import socket

import pytest
import requests

from demobank.connectors.sendgrid import SendGridHook
from demobank.connectors.twilio import TwilioHook
from demobank.exceptions import ConfigurationError
from demobank.retry import SendOutcome
from demobank.sandbox.settings import DEFAULT_SENDGRID_API_KEY, DEFAULT_TWILIO_ACCOUNT_SID, DEFAULT_TWILIO_AUTH_TOKEN
from demobank.sandbox.testing import running_sandbox
from tests.conftest import free_port

MAIL = {"personalizations": [{"to": [{"email": "outcome@example.com"}]}], "from": {"email": "n@demobank.example"},
        "subject": "s", "content": [{"type": "text/html", "value": "<p>x</p>"}]}


@pytest.fixture(scope="module")
def sandbox_url(tmp_path_factory):
    with running_sandbox(tmp_path_factory.mktemp("sandbox") / "sandbox.db") as base_url:
        yield base_url


@pytest.fixture
def faults(sandbox_url):
    def put(**config: object) -> None:
        requests.put(f"{sandbox_url}/faults", json=config, timeout=10).raise_for_status()

    yield put
    requests.delete(f"{sandbox_url}/faults", timeout=10).raise_for_status()


def closed_port_url() -> str:
    port = free_port()  # bound, then released: nothing listens there
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", port)) != 0, "the port should be closed"
    return f"http://127.0.0.1:{port}"


def twilio(monkeypatch, host: str, **extra: object) -> TwilioHook:
    monkeypatch.setenv("AIRFLOW_CONN_TWILIO_DEFAULT", json.dumps({
        "conn_type": "twilio", "host": host, "login": DEFAULT_TWILIO_ACCOUNT_SID, "password": DEFAULT_TWILIO_AUTH_TOKEN,
        "extra": {"from_number": "+15005550006", **extra}}))
    return TwilioHook()


def sendgrid(monkeypatch, host: str, **extra: object) -> SendGridHook:
    monkeypatch.setenv("AIRFLOW_CONN_SENDGRID_DEFAULT", json.dumps({
        "conn_type": "sendgrid", "host": host, "password": DEFAULT_SENDGRID_API_KEY,
        "extra": {"from_email": "n@demobank.example", **extra}}))
    return SendGridHook()


def sms_error(hook: TwilioHook, to: str = "+15550188001") -> BaseException:
    with pytest.raises(Exception) as raised:  # which error: the caller classifies it
        hook.send_sms(to, "outcome")
    return raised.value


def mail_error(hook: SendGridHook, body: dict | None = None) -> BaseException:
    with pytest.raises(Exception) as raised:  # which error: the caller classifies it
        hook.send_mail(body or MAIL)
    return raised.value


def outcome_of_sms(hook: TwilioHook, to: str = "+15550188001") -> SendOutcome:
    return hook.classify_failure(sms_error(hook, to))


def outcome_of_mail(hook: SendGridHook, body: dict | None = None) -> SendOutcome:
    return hook.classify_failure(mail_error(hook, body))


def test_connection_refused_is_not_sent(monkeypatch) -> None:
    url = closed_port_url()
    assert outcome_of_sms(twilio(monkeypatch, url)) is SendOutcome.NOT_SENT
    assert outcome_of_mail(sendgrid(monkeypatch, url)) is SendOutcome.NOT_SENT


def test_tls_handshake_failure_is_not_sent(monkeypatch, sandbox_url) -> None:
    """https to a plain-HTTP server: the handshake fails before a byte of the request is written."""
    url = sandbox_url.replace("http://", "https://")
    assert outcome_of_sms(twilio(monkeypatch, url)) is SendOutcome.NOT_SENT
    assert outcome_of_mail(sendgrid(monkeypatch, url)) is SendOutcome.NOT_SENT


def test_read_timeout_after_the_request_was_written_is_unknown(monkeypatch, sandbox_url, faults) -> None:
    faults(hang_rate=1.0, channels=["sms", "email"])
    assert outcome_of_sms(twilio(monkeypatch, sandbox_url, timeout=0.5)) is SendOutcome.UNKNOWN
    assert outcome_of_mail(sendgrid(monkeypatch, sandbox_url, timeout=0.5)) is SendOutcome.UNKNOWN


@pytest.mark.parametrize(("status", "outcome", "transient"), [
    (500, SendOutcome.UNKNOWN, True), (503, SendOutcome.UNKNOWN, True), (429, SendOutcome.REFUSED, True)])
def test_provider_statuses(monkeypatch, sandbox_url, faults, status, outcome, transient) -> None:
    faults(error_rate=1.0, error_statuses=[status], channels=["sms", "email"], retry_after=0)
    hooks = ((twilio(monkeypatch, sandbox_url), sms_error), (sendgrid(monkeypatch, sandbox_url), mail_error))
    for hook, error_of in hooks:
        error = error_of(hook)
        assert (hook.classify_failure(error), hook.is_transient(error)) == (outcome, transient)


def test_a_refusal_is_refused_and_permanent(monkeypatch, sandbox_url) -> None:
    hook = twilio(monkeypatch, sandbox_url)
    error = sms_error(hook, "+15005550006")  # Twilio: 'To' and 'From' cannot be the same
    assert (hook.classify_failure(error), hook.is_transient(error)) == (SendOutcome.REFUSED, False)
    mail = sendgrid(monkeypatch, sandbox_url)
    error = mail_error(mail, {**MAIL, "subject": ""})
    assert (mail.classify_failure(error), mail.is_transient(error)) == (SendOutcome.REFUSED, False)


def test_a_missing_credential_is_not_sent(monkeypatch, sandbox_url) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_TWILIO_DEFAULT", json.dumps({
        "conn_type": "twilio", "host": sandbox_url, "login": DEFAULT_TWILIO_ACCOUNT_SID,
        "extra": {"from_number": "+15005550006"}}))
    assert outcome_of_sms(TwilioHook()) is SendOutcome.NOT_SENT


def test_timeouts_and_reconcile_delay_come_from_the_connection(monkeypatch, sandbox_url) -> None:
    hook = twilio(monkeypatch, sandbox_url, timeout=2.5, reconcile_after_seconds=4)
    assert (hook.request_timeout, hook.reconcile_after_seconds) == (2.5, 4.0)
    assert hook.client.http_client.timeout == 2.5
    assert TwilioHook(timeout=7).request_timeout == 7.0  # the hook's argument wins
    mail = sendgrid(monkeypatch, sandbox_url, timeout="3")
    assert (mail.request_timeout, mail.client.client.timeout) == (3.0, 3.0)
    defaults = sendgrid(monkeypatch, sandbox_url)
    assert (defaults.request_timeout, defaults.reconcile_after_seconds) == (10.0, 600.0)


@pytest.mark.parametrize("value", ["soon", 0, -1])
def test_a_bad_timeout_is_refused_with_its_value(monkeypatch, sandbox_url, value) -> None:
    hook = twilio(monkeypatch, sandbox_url, timeout=value)
    with pytest.raises(ConfigurationError, match=rf"'timeout' must be a number of seconds.*got {value!r}"):
        _ = hook.request_timeout


def test_twilio_error_texts_quoting_the_recipient_come_out_masked(sandbox_url, monkeypatch) -> None:
    hook = twilio(monkeypatch, sandbox_url)
    with pytest.raises(Exception) as raised:
        hook.send_sms("+15005550006", "to the sender itself")  # Twilio: "... cannot be the same: +15005550006"
    assert "+15005550006" in str(raised.value)  # what the SDK raises quotes it ...
    code, text = hook.describe_error(raised.value)
    assert code == "21266" and "+15005550006" not in text and "+1******0006" in text  # ... what is kept does not


def test_sendgrid_error_texts_quoting_a_recipient_come_out_masked(sandbox_url, monkeypatch) -> None:
    hook = sendgrid(monkeypatch, sandbox_url)
    same = {"email": "dup.once@example.com"}
    twice = {**MAIL, "personalizations": [{"to": [same, same]}]}
    with pytest.raises(Exception) as raised:
        hook.send_mail(twice)
    assert b"dup.once@example.com" in raised.value.body
    code, text = hook.describe_error(raised.value)
    assert code == "400" and "dup.once@example.com" not in text and "d***@example.com" in text
