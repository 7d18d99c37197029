"""Injected errors and latency: vendor-shaped error bodies, nothing recorded, shared through the SQLite file."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from python_http_client.exceptions import InternalServerError, TooManyRequestsError
from sendgrid.helpers.mail import Mail
from twilio.base.exceptions import TwilioRestException

from demobank.sandbox.settings import (
    DEFAULT_MCD_ID,
    DEFAULT_MCD_TOKEN,
    DEFAULT_TWILIO_ACCOUNT_SID,
    DEFAULT_TWILIO_AUTH_TOKEN,
)

TO = "+15551230001"
FROM = "+15557650002"
TWILIO_AUTH = (DEFAULT_TWILIO_ACCOUNT_SID, DEFAULT_TWILIO_AUTH_TOKEN)
MESSAGES_PATH = f"/2010-04-01/Accounts/{DEFAULT_TWILIO_ACCOUNT_SID}/Messages.json"
MCD_HEADERS = {"x-mcd-id": DEFAULT_MCD_ID, "x-mcd-token": DEFAULT_MCD_TOKEN}


def mail() -> Mail:
    return Mail(
        from_email="notifications@demobank.example",
        to_emails="alice@example.com",
        subject="s",
        html_content="<p>x</p>",
    )


def put_faults(http: requests.Session, sandbox, **config) -> dict:
    response = http.put(sandbox.url("/faults"), json=config)
    assert response.status_code == 200, response.text
    return response.json()


def test_faults_round_trip_and_reset(sandbox, http):
    assert http.get(sandbox.url("/faults")).json()["error_rate"] == 0.0

    stored = put_faults(http, sandbox, error_rate=0.25, error_statuses=[503], latency_ms=5, channels=["email"])

    assert http.get(sandbox.url("/faults")).json() == stored
    assert stored == {
        "error_rate": 0.25,
        "error_statuses": [503],
        "latency_ms": 5,
        "channels": ["email"],
        "retry_after": 1,
        "hang_rate": 0.0,
        "hang_ms": 30000,
        "seed": None,
    }
    assert sandbox.store.get_faults().error_statuses == [503]
    http.delete(sandbox.url("/faults"))
    assert http.get(sandbox.url("/faults")).json()["error_rate"] == 0.0


@pytest.mark.parametrize(
    ("config", "field"),
    [
        ({"error_rate": 1.5}, "error_rate"),
        ({"error_statuses": [418]}, "error_statuses"),
        ({"channels": ["fax"]}, "channels"),
        ({"latency_ms": -1}, "latency_ms"),
        ({"error_rate": 0.5, "error_statuses": []}, None),
        ({"surprise": True}, "surprise"),
    ],
)
def test_invalid_faults_are_rejected_with_the_field(sandbox, http, config, field):
    response = http.put(sandbox.url("/faults"), json=config)

    assert response.status_code == 400
    assert field in [e["field"] for e in response.json()["errors"]]
    assert sandbox.store.get_faults().error_rate == 0.0


def test_rate_1_gives_vendor_429s_and_records_nothing(sandbox, http, twilio_client, sendgrid_client):
    put_faults(http, sandbox, error_rate=1.0, error_statuses=[429], retry_after=3)

    with pytest.raises(TwilioRestException) as err:
        twilio_client.messages.create(to=TO, from_=FROM, body="hi")
    assert (err.value.status, err.value.code) == (429, 20429)

    raw = http.post(sandbox.url(MESSAGES_PATH), data={"To": TO, "From": FROM, "Body": "hi"}, auth=TWILIO_AUTH)
    assert raw.status_code == 429
    assert raw.headers["Retry-After"] == "3"
    assert raw.json() == {
        "code": 20429,
        "message": "Too Many Requests",
        "more_info": "https://www.twilio.com/docs/errors/20429",
        "status": 429,
    }

    with pytest.raises(TooManyRequestsError) as sg_err:
        sendgrid_client.send(mail())
    assert sg_err.value.status_code == 429
    assert sg_err.value.headers["X-RateLimit-Remaining"] == "0"

    mc = http.post(
        sandbox.url("/airflow/callbacks"),
        json={"airflow_operation": "ping", "airflow_payload": {}},
        headers=MCD_HEADERS,
    )
    assert mc.status_code == 429
    assert mc.headers["Retry-After"] == "3"

    for channel in ("sms", "email", "montecarlo"):
        assert sandbox.store.count_messages(channel) == 0


def test_rate_1_with_500_gives_vendor_5xx(sandbox, http, twilio_client, sendgrid_client):
    put_faults(http, sandbox, error_rate=1.0, error_statuses=[500])

    with pytest.raises(TwilioRestException) as err:
        twilio_client.messages.create(to=TO, from_=FROM, body="hi")
    assert (err.value.status, err.value.code) == (500, 20500)
    with pytest.raises(InternalServerError):
        sendgrid_client.send(mail())
    assert sandbox.store.count_messages("sms") == sandbox.store.count_messages("email") == 0


def test_faults_only_hit_the_listed_channels(sandbox, http, twilio_client, sendgrid_client):
    put_faults(http, sandbox, error_rate=1.0, error_statuses=[503], channels=["email"])

    assert twilio_client.messages.create(to=TO, from_=FROM, body="hi").status == "queued"
    with pytest.raises(Exception) as err:
        sendgrid_client.send(mail())
    assert getattr(err.value, "status_code", None) == 503
    assert sandbox.store.count_messages("sms") == 1


def test_wrong_credentials_still_win_over_faults(sandbox, http):
    put_faults(http, sandbox, error_rate=1.0, error_statuses=[500])
    response = http.post(sandbox.url(MESSAGES_PATH), data={"To": TO, "From": FROM, "Body": "hi"})
    assert (response.status_code, response.json()["code"]) == (401, 20003)


def test_rate_half_gives_about_half_errors(sandbox, http):
    put_faults(http, sandbox, error_rate=0.5, error_statuses=[429, 503])
    statuses = [
        http.post(sandbox.url(MESSAGES_PATH), data={"To": TO, "From": FROM, "Body": "hi"}, auth=TWILIO_AUTH).status_code
        for _ in range(200)
    ]

    failures = sum(1 for s in statuses if s != 201)
    assert set(statuses) <= {201, 429, 503}
    assert 60 <= failures <= 140  # binomial(200, 0.5): more than 5 standard deviations either side
    assert sandbox.store.count_messages("sms") == 200 - failures


def test_latency_is_applied_without_serialising_requests(sandbox, http, twilio_client):
    # Serialised, ten requests take at least ten latencies; concurrent, about one. The bound is half of the
    # serialised minimum, so a busy machine cannot fail it while serialising still does.
    latency = 1.0
    put_faults(http, sandbox, latency_ms=int(latency * 1000), channels=["sms"])

    start = time.perf_counter()
    twilio_client.messages.create(to=TO, from_=FROM, body="slow")
    single = time.perf_counter() - start
    assert single >= latency

    def send(i: int) -> int:
        return requests.post(
            sandbox.url(MESSAGES_PATH), data={"To": TO, "From": FROM, "Body": f"n{i}"}, auth=TWILIO_AUTH, timeout=10
        ).status_code

    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=10) as pool:
        codes = list(pool.map(send, range(10)))
    concurrent = time.perf_counter() - start
    assert codes == [201] * 10
    assert concurrent < latency * 10 / 2, f"10 concurrent requests took {concurrent:.2f}s: latency is serialised"

    start = time.perf_counter()
    http.get(sandbox.url("/messages"), params={"channel": "email"})
    assert time.perf_counter() - start < latency  # not a vendor route on a faulted channel
    assert sandbox.store.count_messages("sms") == 11
