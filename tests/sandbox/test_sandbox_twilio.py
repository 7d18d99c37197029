"""The Twilio stand-in, driven by the real twilio SDK."""

from __future__ import annotations

import re
from datetime import datetime

import pytest
from twilio.base.exceptions import TwilioRestException
from twilio.rest import Client
from twilio.rest.api.v2010.account.message import MessageInstance

from demobank.sandbox.settings import DEFAULT_TWILIO_ACCOUNT_SID, DEFAULT_TWILIO_AUTH_TOKEN

TO = "+15551230001"
FROM = "+15557650002"
MESSAGES_PATH = f"/2010-04-01/Accounts/{DEFAULT_TWILIO_ACCOUNT_SID}/Messages.json"


def test_valid_sms_is_accepted_and_recorded_once(sandbox, twilio_client):
    message = twilio_client.messages.create(to=TO, from_=FROM, body="Your code is 123456")

    assert isinstance(message, MessageInstance)
    assert re.fullmatch(r"SM[0-9a-f]{32}", message.sid)
    assert message.account_sid == DEFAULT_TWILIO_ACCOUNT_SID
    assert (message.to, message.from_, message.body) == (TO, FROM, "Your code is 123456")
    assert message.status == "queued"
    assert message.direction == "outbound-api"
    assert message.api_version == "2010-04-01"
    assert message.num_segments == "1"
    assert message.num_media == "0"
    assert message.price is None and message.error_code is None
    assert isinstance(message.date_created, datetime) and message.date_created.tzinfo is not None
    assert message.uri == f"/2010-04-01/Accounts/{DEFAULT_TWILIO_ACCOUNT_SID}/Messages/{message.sid}.json"
    assert set(message.subresource_uris) >= {"media"}

    rows = sandbox.store.list_messages("sms")
    assert len(rows) == 1
    assert rows[0]["sid"] == message.sid
    assert (rows[0]["to"], rows[0]["from"], rows[0]["body"]) == (TO, FROM, "Your code is 123456")


def test_message_can_be_fetched_back(sandbox, twilio_client):
    sent = twilio_client.messages.create(to=TO, from_=FROM, body="fetch me")

    fetched = twilio_client.messages(sent.sid).fetch()

    assert fetched.sid == sent.sid
    assert fetched.body == "fetch me"
    assert fetched.date_created == sent.date_created


def test_unknown_message_is_20404(sandbox, twilio_client):
    with pytest.raises(TwilioRestException) as err:
        twilio_client.messages("SM" + "f" * 32).fetch()
    assert (err.value.status, err.value.code) == (404, 20404)


def test_invalid_to_is_21211_and_not_recorded(sandbox, twilio_client):
    with pytest.raises(TwilioRestException) as err:
        twilio_client.messages.create(to="555-1234", from_=FROM, body="hi")

    assert (err.value.status, err.value.code) == (400, 21211)
    assert "The 'To' number 555-1234 is not a valid phone number." in err.value.msg
    assert sandbox.store.count_messages("sms") == 0


def test_wrong_token_is_20003(sandbox):
    client = Client(DEFAULT_TWILIO_ACCOUNT_SID, "not-the-sandbox-token")
    client.api.base_url = sandbox.base_url

    with pytest.raises(TwilioRestException) as err:
        client.messages.create(to=TO, from_=FROM, body="hi")

    assert (err.value.status, err.value.code) == (401, 20003)
    assert sandbox.store.count_messages("sms") == 0


def test_missing_credentials_is_20003_with_twilio_error_body(sandbox, http):
    response = http.post(sandbox.url(MESSAGES_PATH), data={"To": TO, "From": FROM, "Body": "hi"})

    assert response.status_code == 401
    body = response.json()
    assert body["code"] == 20003
    assert body["message"] == "Authenticate"
    assert body["status"] == 401
    assert body["more_info"] == "https://www.twilio.com/docs/errors/20003"


def test_account_sid_in_path_must_match_credentials(sandbox, http):
    other = "AC" + "1" * 32
    response = http.post(
        sandbox.url(f"/2010-04-01/Accounts/{other}/Messages.json"),
        data={"To": TO, "From": FROM, "Body": "hi"},
        auth=(DEFAULT_TWILIO_ACCOUNT_SID, DEFAULT_TWILIO_AUTH_TOKEN),
    )
    assert (response.status_code, response.json()["code"]) == (401, 20003)


def test_body_over_1600_chars_is_21617(sandbox, twilio_client):
    with pytest.raises(TwilioRestException) as err:
        twilio_client.messages.create(to=TO, from_=FROM, body="x" * 1601)
    assert (err.value.status, err.value.code) == (400, 21617)

    accepted = twilio_client.messages.create(to=TO, from_=FROM, body="x" * 1600)
    assert accepted.num_segments == "11"  # 1600 GSM-7 characters / 153 per concatenated segment
    assert sandbox.store.count_messages("sms") == 1


@pytest.mark.parametrize(
    ("fields", "code"),
    [
        ({"From": FROM, "Body": "hi"}, 21604),
        ({"To": TO, "Body": "hi"}, 21603),
        ({"To": TO, "From": FROM}, 21602),
        ({"To": TO, "From": FROM, "Body": ""}, 21602),
        ({"To": TO, "From": "not a number!", "Body": "hi"}, 21212),
        ({"To": TO, "From": TO, "Body": "hi"}, 21266),
        ({"To": TO, "MessagingServiceSid": "MGnope", "Body": "hi"}, 21705),
    ],
)
def test_form_validation_codes(sandbox, http, fields, code):
    response = http.post(
        sandbox.url(MESSAGES_PATH), data=fields, auth=(DEFAULT_TWILIO_ACCOUNT_SID, DEFAULT_TWILIO_AUTH_TOKEN)
    )
    body = response.json()
    assert (response.status_code, body["code"], body["status"]) == (400, code, 400)
    assert body["more_info"] == f"https://www.twilio.com/docs/errors/{code}"
    assert sandbox.store.count_messages("sms") == 0


def test_messaging_service_without_from_is_accepted(sandbox, twilio_client):
    service = "MG" + "a" * 32
    message = twilio_client.messages.create(to=TO, messaging_service_sid=service, body="via service")
    assert message.status == "accepted"
    assert message.from_ is None
    assert message.messaging_service_sid == service
    assert sandbox.store.list_messages("sms")[0]["messaging_service_sid"] == service


def test_unicode_body_counts_ucs2_segments(sandbox, twilio_client):
    message = twilio_client.messages.create(to=TO, from_=FROM, body="\U0001f600" * 40)  # 80 UTF-16 units
    assert message.num_segments == "2"


def test_sms_recipient_filter(sandbox, twilio_client, http):
    twilio_client.messages.create(to=TO, from_=FROM, body="one")
    twilio_client.messages.create(to="+447700900123", from_=FROM, body="two")

    listed = http.get(sandbox.url("/messages"), params={"channel": "sms", "to": "+447700900123"}).json()

    assert listed["count"] == 1
    assert listed["messages"][0]["body"] == "two"
