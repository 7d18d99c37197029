"""The SendGrid stand-in, driven by the real sendgrid SDK (python_http_client)."""

from __future__ import annotations

import json
import re

import pytest
from python_http_client.exceptions import (
    BadRequestsError,
    PayloadTooLargeError,
    UnauthorizedError,
)
from sendgrid import SendGridAPIClient
from sendgrid.helpers.mail import Email, Mail, MailSettings, Personalization, SandBoxMode, To

from tests.sandbox.conftest import TEST_MAX_MAIL_BYTES

SENDER = "notifications@demobank.example"


def make_mail(to: list[str] | None = None, **kwargs) -> Mail:
    return Mail(
        from_email=SENDER,
        to_emails=to or ["alice@example.com"],
        subject=kwargs.pop("subject", "Your statement"),
        html_content=kwargs.pop("html_content", "<p>Hello</p>"),
        **kwargs,
    )


def errors_of(exc: Exception) -> list[dict]:
    return json.loads(exc.body)["errors"]


def test_valid_email_is_accepted_and_recorded(sandbox, sendgrid_client):
    mail = make_mail(["alice@example.com", "bob@example.com"])

    response = sendgrid_client.send(mail)

    assert response.status_code == 202
    assert response.body == b""
    message_id = response.headers["X-Message-Id"]
    assert re.fullmatch(r"[A-Za-z0-9_-]{22}", message_id)
    rows = sandbox.store.list_messages("email")
    assert len(rows) == 1
    assert rows[0]["message_id"] == message_id
    assert rows[0]["recipients"] == ["alice@example.com", "bob@example.com"]
    assert rows[0]["subject"] == "Your statement"
    assert rows[0]["from"] == SENDER
    assert rows[0]["request"] == mail.get()


def test_wrong_key_is_unauthorized(sandbox):
    client = SendGridAPIClient("SG.not-the-sandbox-key", host=sandbox.base_url)

    with pytest.raises(UnauthorizedError) as err:
        client.send(make_mail())

    assert err.value.status_code == 401
    assert errors_of(err.value) == [
        {"field": None, "message": "The provided authorization grant is invalid, expired, or revoked", "help": None}
    ]
    assert sandbox.store.count_messages("email") == 0


def test_missing_key_is_unauthorized(sandbox, http):
    response = http.post(sandbox.url("/v3/mail/send"), json=make_mail().get())
    assert response.status_code == 401
    assert response.json()["errors"][0]["field"] is None


def test_1001_personalizations_is_bad_request_naming_the_field(sandbox, sendgrid_client):
    mail = Mail(from_email=SENDER, subject="Bulk", html_content="<p>x</p>")
    for i in range(1001):
        personalization = Personalization()
        personalization.add_to(To(f"user{i}@example.com"))
        mail.add_personalization(personalization)
    assert len(mail.get()["personalizations"]) == 1001

    with pytest.raises(BadRequestsError) as err:
        sendgrid_client.send(mail)

    assert err.value.status_code == 400
    errors = errors_of(err.value)
    assert errors[0]["field"] == "personalizations"
    assert "1001 personalizations" in errors[0]["message"]
    assert errors[0]["help"].startswith("http")
    assert sandbox.store.count_messages("email") == 0


def test_1000_personalizations_are_fine(sandbox, sendgrid_client):
    mail = Mail(from_email=SENDER, subject="Bulk", html_content="<p>x</p>")
    for i in range(1000):
        personalization = Personalization()
        personalization.add_to(To(f"user{i}@example.com"))
        mail.add_personalization(personalization)

    assert sendgrid_client.send(mail).status_code == 202
    assert len(sandbox.store.list_messages("email")[0]["recipients"]) == 1000


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda b: b.pop("personalizations"), "personalizations"),
        (lambda b: b.update(personalizations=[]), "personalizations"),
        (lambda b: b["personalizations"][0].pop("to"), "personalizations.0.to"),
        (lambda b: b["personalizations"][0].update(to=[{"email": "not-an-address"}]), "personalizations.0.to.0.email"),
        (
            lambda b: b["personalizations"][0].update(cc=[{"email": "alice@example.com"}]),
            "personalizations.0",
        ),
        (lambda b: b.pop("from"), "from.email"),
        (lambda b: b.update({"from": {"email": "nope"}}), "from.email"),
        (lambda b: b.pop("subject"), "subject"),
        (lambda b: b.pop("content"), "content"),
        (lambda b: b.update(content=[{"type": "text/html", "value": ""}]), "content.0.value"),
        (lambda b: b.update(template_id="not-a-template"), "template_id"),
    ],
)
def test_validation_names_the_field(sandbox, sendgrid_client, mutate, field):
    body = make_mail().get()
    mutate(body)

    with pytest.raises(BadRequestsError) as err:
        sendgrid_client.client.mail.send.post(request_body=body)

    fields = [e["field"] for e in errors_of(err.value)]
    assert field in fields
    assert all(e["message"] for e in errors_of(err.value))
    assert sandbox.store.count_messages("email") == 0


def test_template_replaces_subject_and_content(sandbox, sendgrid_client):
    body = make_mail().get()
    del body["subject"], body["content"]
    body["template_id"] = "d-" + "0123456789abcdef" * 2

    response = sendgrid_client.client.mail.send.post(request_body=body)

    assert response.status_code == 202
    assert sandbox.store.list_messages("email")[0]["subject"] is None


def test_subject_in_every_personalization_is_enough(sandbox, sendgrid_client):
    body = make_mail().get()
    del body["subject"]
    body["personalizations"][0]["subject"] = "Per-recipient subject"

    assert sendgrid_client.client.mail.send.post(request_body=body).status_code == 202
    assert sandbox.store.list_messages("email")[0]["subject"] == "Per-recipient subject"


def test_body_over_the_limit_is_413(sandbox, sendgrid_client):
    mail = make_mail(html_content="<p>" + "x" * (TEST_MAX_MAIL_BYTES + 1) + "</p>")

    with pytest.raises(PayloadTooLargeError) as err:
        sendgrid_client.send(mail)

    assert err.value.status_code == 413
    assert str(TEST_MAX_MAIL_BYTES) in errors_of(err.value)[0]["message"]
    assert sandbox.store.count_messages("email") == 0


def test_sandbox_mode_answers_200_and_records_nothing(sandbox, sendgrid_client):
    mail = make_mail()
    mail.mail_settings = MailSettings(sandbox_mode=SandBoxMode(True))

    response = sendgrid_client.send(mail)

    assert response.status_code == 200
    assert "X-Message-Id" not in response.headers
    assert sandbox.store.count_messages("email") == 0


def test_sandbox_mode_still_validates(sandbox, sendgrid_client):
    body = make_mail().get()
    body["mail_settings"] = {"sandbox_mode": {"enable": True}}
    body["from"] = {"email": "broken"}

    with pytest.raises(BadRequestsError):
        sendgrid_client.client.mail.send.post(request_body=body)


def test_email_recipient_filter_covers_cc(sandbox, sendgrid_client, http):
    mail = make_mail(["alice@example.com"])
    mail.personalizations[0].add_cc(Email("carol@example.com"))
    sendgrid_client.send(mail)
    sendgrid_client.send(make_mail(["dave@example.com"]))

    listed = http.get(sandbox.url("/messages"), params={"channel": "email", "to": "carol@example.com"}).json()

    assert listed["count"] == 1
    assert listed["messages"][0]["recipients"] == ["alice@example.com", "carol@example.com"]
