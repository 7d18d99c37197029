"""SendGrid's Email Activity route (``GET /v3/messages``), driven by the real sendgrid SDK."""

from __future__ import annotations

import json
import re
import sqlite3
from urllib.parse import quote

import pytest
from python_http_client.exceptions import BadRequestsError, UnauthorizedError
from sendgrid import SendGridAPIClient
from sendgrid.helpers.mail import CustomArg, Email, Mail, MailSettings, Personalization, SandBoxMode, To

from demobank.sandbox.sendgrid_api import parse_activity_query, search_activity
from demobank.sandbox.settings import DEFAULT_SENDGRID_API_KEY
from demobank.sandbox.store import SandboxStore

SENDER = "notifications@demobank.example"


def send(client: SendGridAPIClient, to: list[str], *, args: dict[str, str] | None = None, subject: str = "Hi") -> str:
    """Send one mail with one personalization per recipient, each with ``args`` as custom_args; return X-Message-Id."""
    mail = Mail(from_email=SENDER, subject=subject, html_content="<p>x</p>")
    for address in to:
        personalization = Personalization()
        personalization.add_to(To(address))
        for key, value in (args or {}).items():
            personalization.add_custom_arg(CustomArg(key, value))
        mail.add_personalization(personalization)
    response = client.send(mail)
    assert response.status_code == 202
    return str(response.headers["X-Message-Id"])


def activity(client: SendGridAPIClient, query: str, limit: int = 10) -> list[dict]:
    response = client.client.messages.get(query_params={"query": query, "limit": limit})
    assert response.status_code == 200
    return json.loads(response.body)["messages"]


def test_finds_a_message_by_personalization_custom_args(sandbox, sendgrid_client):
    wanted = send(sendgrid_client, ["alice@example.com"], args={"outbox_id": "ob-1"}, subject="Statement")
    send(sendgrid_client, ["bob@example.com"], args={"outbox_id": "ob-2"})

    found = activity(sendgrid_client, "unique_args['outbox_id']=\"ob-1\"")

    assert len(found) == 1
    entry = found[0]
    assert set(entry) == {
        "from_email",
        "msg_id",
        "subject",
        "to_email",
        "status",
        "opens_count",
        "clicks_count",
        "last_event_time",
    }
    assert entry["msg_id"].startswith(wanted + ".")
    assert (entry["to_email"], entry["from_email"], entry["subject"]) == ("alice@example.com", SENDER, "Statement")
    assert (entry["status"], entry["opens_count"], entry["clicks_count"]) == ("delivered", 0, 0)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", entry["last_event_time"])


def test_message_level_custom_args_list_every_recipient(sandbox, sendgrid_client):
    mail = Mail(from_email=SENDER, to_emails=["alice@example.com", "bob@example.com"], subject="s", html_content="x")
    mail.custom_arg = CustomArg("batch", "b-7")
    assert mail.get()["custom_args"] == {"batch": "b-7"}
    message_id = sendgrid_client.send(mail).headers["X-Message-Id"]

    found = activity(sendgrid_client, "unique_args['batch']=\"b-7\"")

    assert sorted(e["to_email"] for e in found) == ["alice@example.com", "bob@example.com"]
    assert all(e["msg_id"].startswith(message_id + ".") for e in found)
    assert len({e["msg_id"] for e in found}) == 2  # one id per recipient, as SendGrid


def test_personalization_value_overrides_message_value(sandbox, sendgrid_client):
    body = Mail(from_email=SENDER, subject="s", html_content="x").get()
    body["custom_args"] = {"run": "message-level"}
    body["personalizations"] = [
        {"to": [{"email": "alice@example.com"}]},
        {"to": [{"email": "bob@example.com"}], "custom_args": {"run": "bob-only"}},
    ]
    assert sendgrid_client.client.mail.send.post(request_body=body).status_code == 202

    assert [e["to_email"] for e in activity(sendgrid_client, "unique_args['run']=\"message-level\"")] == [
        "alice@example.com"
    ]
    assert [e["to_email"] for e in activity(sendgrid_client, "unique_args['run']=\"bob-only\"")] == ["bob@example.com"]


def test_finds_by_to_email_including_cc_newest_first(sandbox, sendgrid_client):
    older = send(sendgrid_client, ["carol@example.com"], subject="first")
    mail = Mail(from_email=SENDER, to_emails=["dave@example.com"], subject="second", html_content="x")
    mail.personalizations[0].add_cc(Email("carol@example.com"))
    newer = sendgrid_client.send(mail).headers["X-Message-Id"]
    send(sendgrid_client, ["erin@example.com"])

    found = activity(sendgrid_client, 'to_email="Carol@Example.com"')

    assert [e["msg_id"].split(".")[0] for e in found] == [newer, older]
    assert [e["subject"] for e in found] == ["second", "first"]
    assert {e["to_email"] for e in found} == {"carol@example.com"}


def test_clauses_combine_with_and(sandbox, sendgrid_client):
    send(sendgrid_client, ["alice@example.com", "bob@example.com"], args={"outbox_id": "ob-9"})
    send(sendgrid_client, ["alice@example.com"], args={"outbox_id": "ob-10"})

    found = activity(sendgrid_client, 'unique_args[\'outbox_id\']="ob-9" AND to_email="bob@example.com"')
    assert [e["to_email"] for e in found] == ["bob@example.com"]

    assert activity(sendgrid_client, 'unique_args[\'outbox_id\']="ob-10" AND to_email="bob@example.com"') == []


def test_unknown_key_or_value_finds_nothing(sandbox, sendgrid_client):
    send(sendgrid_client, ["alice@example.com"], args={"outbox_id": "ob-1"})

    assert activity(sendgrid_client, "unique_args['no_such_key']=\"ob-1\"") == []
    assert activity(sendgrid_client, "unique_args['outbox_id']=\"ob-2\"") == []
    assert activity(sendgrid_client, 'to_email="nobody@example.com"') == []


def test_sends_after_a_lookup_are_found_by_the_next_one(sandbox, sendgrid_client):
    send(sendgrid_client, ["alice@example.com"], args={"outbox_id": "ob-1"})
    assert len(activity(sendgrid_client, "unique_args['outbox_id']=\"ob-1\"")) == 1

    second = send(sendgrid_client, ["alice@example.com"], args={"outbox_id": "ob-1"})

    found = activity(sendgrid_client, "unique_args['outbox_id']=\"ob-1\"")
    assert len(found) == 2
    assert found[0]["msg_id"].startswith(second + ".")


def test_limit_keeps_the_newest(sandbox, sendgrid_client):
    ids = [send(sendgrid_client, ["alice@example.com"], args={"k": "v"}) for _ in range(3)]

    found = activity(sendgrid_client, "unique_args['k']=\"v\"", limit=2)

    assert [e["msg_id"].split(".")[0] for e in found] == [ids[2], ids[1]]


def test_sandbox_mode_sends_are_not_listed(sandbox, sendgrid_client):
    mail = Mail(from_email=SENDER, to_emails="alice@example.com", subject="s", html_content="x")
    mail.mail_settings = MailSettings(sandbox_mode=SandBoxMode(True))
    assert sendgrid_client.send(mail).status_code == 200

    assert activity(sendgrid_client, 'to_email="alice@example.com"') == []


@pytest.mark.parametrize(
    "query",
    [
        "garbage",
        "to_email=alice@example.com",
        'to_email="a@example.com" OR to_email="b@example.com"',
        'unique_args[outbox_id]="1"',
        "unique_args['outbox_id']=\"1\" AND",
        'unique_args[\'outbox_id\']="1" to_email="a@example.com"',
        'from_email="notifications@demobank.example"',
    ],
)
def test_unparseable_query_is_400(sandbox, sendgrid_client, query):
    with pytest.raises(BadRequestsError) as err:
        sendgrid_client.client.messages.get(query_params={"query": query, "limit": 10})

    errors = json.loads(err.value.body)["errors"]
    assert err.value.status_code == 400
    assert errors[0]["field"] == "query"
    assert "unique_args" in errors[0]["message"]


@pytest.mark.parametrize("limit", ["0", "1001", "ten"])
def test_bad_limit_is_400(sandbox, http, limit):
    response = http.get(
        sandbox.url("/v3/messages"),
        params={"query": 'to_email="a@example.com"', "limit": limit},
        headers={"Authorization": f"Bearer {DEFAULT_SENDGRID_API_KEY}"},
    )
    assert (response.status_code, response.json()["errors"][0]["field"]) == (400, "limit")


def test_query_is_url_decoded_once_and_twice_encoded_still_works(sandbox, sendgrid_client, http):
    send(sendgrid_client, ["alice@example.com"], args={"outbox_id": "ob 1/2"})
    query = "unique_args['outbox_id']=\"ob 1/2\""
    headers = {"Authorization": f"Bearer {DEFAULT_SENDGRID_API_KEY}"}

    encoded = quote(query, safe="")
    once = http.get(sandbox.url("/v3/messages?limit=5&query=" + encoded), headers=headers)
    twice = http.get(sandbox.url("/v3/messages?limit=5&query=" + quote(encoded, safe="")), headers=headers)

    assert [e["to_email"] for e in once.json()["messages"]] == ["alice@example.com"]
    assert twice.json() == once.json()


def test_activity_requires_the_api_key(sandbox, sendgrid_client, http):
    send(sendgrid_client, ["alice@example.com"], args={"outbox_id": "ob-1"})

    anonymous = http.get(sandbox.url("/v3/messages"), params={"query": 'to_email="alice@example.com"'})
    assert anonymous.status_code == 401
    assert "messages" not in anonymous.json()
    assert anonymous.json()["errors"][0]["message"] == "authorization required"

    with pytest.raises(UnauthorizedError):
        SendGridAPIClient("SG.wrong", host=sandbox.base_url).client.messages.get(
            query_params={"query": 'to_email="alice@example.com"', "limit": 10}
        )


def test_sends_recorded_before_the_search_table_existed_are_found(tmp_path):
    path = tmp_path / "old.db"
    request = {
        "from": {"email": SENDER},
        "subject": "old",
        "personalizations": [{"to": [{"email": "alice@example.com"}], "custom_args": {"outbox_id": "ob-old"}}],
        "content": [{"type": "text/html", "value": "x"}],
    }
    with sqlite3.connect(path) as conn:  # the e-mail table as an earlier sandbox created it
        conn.execute(
            "CREATE TABLE email_messages (id INTEGER PRIMARY KEY AUTOINCREMENT, message_id TEXT NOT NULL UNIQUE,"
            " from_email TEXT NOT NULL, subject TEXT, recipients TEXT NOT NULL, created_at REAL NOT NULL,"
            " request TEXT NOT NULL)"
        )
        conn.execute(
            "INSERT INTO email_messages (message_id, from_email, subject, recipients, created_at, request)"
            " VALUES ('old-id', ?, 'old', '[\"alice@example.com\"]', 1.0e9, ?)",
            (SENDER, json.dumps(request)),
        )

    store = SandboxStore(path)
    found = search_activity(store, parse_activity_query("unique_args['outbox_id']=\"ob-old\""), 10)

    assert [(e["msg_id"].split(".")[0], e["to_email"]) for e in found] == [("old-id", "alice@example.com")]
    assert store.index_emails() == 0  # caught up once, not again


def test_clear_forgets_the_search_terms(sandbox, sendgrid_client):
    send(sendgrid_client, ["alice@example.com"], args={"outbox_id": "ob-1"})
    assert activity(sendgrid_client, 'to_email="alice@example.com"')

    sandbox.store.clear("email")

    with sqlite3.connect(sandbox.db_path) as conn:
        assert conn.execute("SELECT count(*) FROM email_search").fetchone()[0] == 0
    assert activity(sendgrid_client, 'to_email="alice@example.com"') == []
