"""The "accept, then never answer" fault: the send is recorded as accepted, the client times out.

Real SDKs over HTTP: Twilio's ``requests`` client raises ``ReadTimeout``, SendGrid's ``urllib`` client a
``TimeoutError``; the message is in the sandbox's outbox, in Twilio's message list and in SendGrid's Email
Activity, which is what a sender reconciles with.
"""

from __future__ import annotations

import json
import threading
import time

import pytest
import requests
from sendgrid import SendGridAPIClient
from sendgrid.helpers.mail import CustomArg, Mail
from twilio.http.http_client import TwilioHttpClient
from twilio.rest import Client

from demobank.sandbox.faults import FaultConfig
from demobank.sandbox.settings import DEFAULT_SENDGRID_API_KEY, DEFAULT_TWILIO_ACCOUNT_SID, DEFAULT_TWILIO_AUTH_TOKEN

TO = "+15551230101"
FROM = "+15557650002"


def twilio(sandbox, timeout: float) -> Client:
    client = Client(DEFAULT_TWILIO_ACCOUNT_SID, DEFAULT_TWILIO_AUTH_TOKEN,
                    http_client=TwilioHttpClient(timeout=timeout))
    client.api.base_url = sandbox.base_url
    return client


def sendgrid(sandbox, timeout: float) -> SendGridAPIClient:
    client = SendGridAPIClient(DEFAULT_SENDGRID_API_KEY, host=sandbox.base_url)
    client.client.timeout = timeout
    return client


def put_faults(http: requests.Session, sandbox, **config) -> dict:
    response = http.put(sandbox.url("/faults"), json=config)
    assert response.status_code == 200, response.text
    return response.json()


def test_twilio_send_is_recorded_and_the_client_times_out(sandbox, http) -> None:
    put_faults(http, sandbox, hang_rate=1.0, channels=["sms"])
    client = twilio(sandbox, timeout=0.5)

    with pytest.raises(requests.exceptions.ReadTimeout):
        client.messages.create(to=TO, from_=FROM, body="held")

    recorded = sandbox.store.list_messages("sms", 10)
    assert [(m["to"], m["body"]) for m in recorded] == [(TO, "held")]
    # Lookups never hang: the reconciliation a sender does finds the message, with its SID.
    listed = client.messages.list(to=TO, limit=10)
    assert [(m.sid, m.body) for m in listed] == [(recorded[0]["sid"], "held")]
    assert client.messages(recorded[0]["sid"]).fetch().to == TO


def test_sendgrid_send_is_recorded_and_found_by_email_activity(sandbox, http) -> None:
    put_faults(http, sandbox, hang_rate=1.0, channels=["email"])
    client = sendgrid(sandbox, timeout=0.5)
    message = Mail(from_email="notifications@demobank.example", to_emails="held@example.com", subject="s",
                   html_content="<p>x</p>")
    message.custom_arg = CustomArg("demobank_delivery", "email:abc")

    with pytest.raises(TimeoutError):
        client.send(message)

    assert [m["recipients"] for m in sandbox.store.list_messages("email", 10)] == [["held@example.com"]]
    activity = client.client.messages.get(
        query_params={"query": "unique_args['demobank_delivery']=\"email:abc\"", "limit": 10})
    assert [m["to_email"] for m in json.loads(activity.body)["messages"]] == ["held@example.com"]


def test_a_held_request_does_not_block_the_server(sandbox, http) -> None:
    put_faults(http, sandbox, hang_rate=1.0, channels=["sms"])
    outcome: list[BaseException] = []

    def send() -> None:
        try:
            twilio(sandbox, timeout=30).messages.create(to=TO, from_=FROM, body="waiting")
        except BaseException as error:  # recorded for the assertion below
            outcome.append(error)

    sender = threading.Thread(target=send, daemon=True)
    sender.start()
    deadline = time.monotonic() + 10
    while sandbox.store.count_messages("sms") == 0:  # recorded first, then held
        assert time.monotonic() < deadline, "the held send was never recorded"
        time.sleep(0.02)
    # While that request is held, the server answers others, sends included, and counts it as in progress.
    assert http.get(sandbox.url("/health")).json() == {"status": "ok", "sends_in_progress": {"sms": 1}}
    put_faults(http, sandbox, hang_rate=0.0, channels=["sms"])
    assert twilio(sandbox, timeout=5).messages.create(to=TO, from_=FROM, body="other").status == "queued"
    assert sender.is_alive() and outcome == []


def test_the_hold_is_bounded_then_the_answer_comes_late(sandbox, http) -> None:
    put_faults(http, sandbox, hang_rate=1.0, hang_ms=200, channels=["sms"])
    before = http.get(sandbox.url("/health")).json()["sends_in_progress"]  # an earlier test's send may be held
    message = twilio(sandbox, timeout=30).messages.create(to=TO, from_=FROM, body="late")
    assert message.sid == sandbox.store.list_messages("sms", 10)[0]["sid"]
    assert http.get(sandbox.url("/health")).json()["sends_in_progress"] == before, "answered: no longer counted"


def test_a_refused_send_never_hangs(sandbox, http) -> None:
    """Only accepted sends hang: a request the provider refuses gets its error at once."""
    put_faults(http, sandbox, hang_rate=1.0, channels=["sms"])
    from twilio.base.exceptions import TwilioRestException

    with pytest.raises(TwilioRestException) as raised:
        twilio(sandbox, timeout=30).messages.create(to="not-a-number", from_=FROM, body="x")
    assert raised.value.code == 21211
    assert sandbox.store.count_messages("sms") == 0


def test_hang_and_error_rates_split_the_requests() -> None:
    import random

    config = FaultConfig(error_rate=0.2, hang_rate=0.3, error_statuses=[500])
    rng = random.Random(7)
    picks = [config.pick(rng, may_hang=True) for _ in range(2000)]
    errors = sum(1 for status, _ in picks if status == 500)
    hangs = sum(1 for status, hangs in picks if hangs and status is None)
    assert 300 <= errors <= 500 and 480 <= hangs <= 720  # binomial(2000, p): more than 5 sigma either side
    # Lookups (may_hang=False) are refused at the error rate and never hang.
    assert not any(hangs for _, hangs in (config.pick(rng) for _ in range(200)))


@pytest.mark.parametrize("config", [{"hang_rate": 1.5}, {"hang_rate": 0.6, "error_rate": 0.5}, {"hang_ms": 0}])
def test_invalid_hang_settings_are_refused(sandbox, http, config) -> None:
    response = http.put(sandbox.url("/faults"), json=config)
    assert response.status_code == 400
    assert "hang_rate" in response.json()["detail"]
    assert sandbox.store.get_faults().hang_rate == 0.0


def test_a_seed_makes_the_faults_reproducible(sandbox, http) -> None:
    from demobank.sandbox.settings import DEFAULT_TWILIO_ACCOUNT_SID as SID

    path = sandbox.url(f"/2010-04-01/Accounts/{SID}/Messages.json")
    auth = (SID, DEFAULT_TWILIO_AUTH_TOKEN)

    def statuses() -> list[int]:
        put_faults(http, sandbox, error_rate=0.5, error_statuses=[500], channels=["sms"], seed=3)
        return [http.post(path, data={"To": TO, "From": FROM, "Body": "x"}, auth=auth).status_code for _ in range(20)]

    first = statuses()
    assert set(first) == {201, 500}
    assert statuses() == first  # putting the settings again starts the same sequence
