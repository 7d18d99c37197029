"""Twilio's Message list route (``GET …/Messages.json``), driven by the real twilio SDK."""

from __future__ import annotations

import sqlite3
from datetime import UTC, date, datetime, timedelta

import pytest
from twilio.base.exceptions import TwilioException
from twilio.rest import Client

from demobank.sandbox.settings import DEFAULT_TWILIO_ACCOUNT_SID, DEFAULT_TWILIO_AUTH_TOKEN
from demobank.sandbox.store import SandboxStore
from demobank.sandbox.twilio_api import build_message_resource

TO = "+15551230001"
OTHER = "+15551230002"
FROM = "+15557650002"
AUTH = (DEFAULT_TWILIO_ACCOUNT_SID, DEFAULT_TWILIO_AUTH_TOKEN)
MESSAGES_PATH = f"/2010-04-01/Accounts/{DEFAULT_TWILIO_ACCOUNT_SID}/Messages.json"


def record(store: SandboxStore, to: str, body: str, *, account_sid: str = DEFAULT_TWILIO_ACCOUNT_SID) -> str:
    """Record a message straight into the store (fast set-up for large lists); return its SID."""
    resource = build_message_resource(account_sid, {"To": [to], "From": [FROM], "Body": [body]}, datetime.now(UTC))
    store.record_sms(resource)
    return str(resource["sid"])


def set_created_at(db_path, sid: str, moment: datetime) -> None:
    """Move a recorded message's creation time (what the DateSent filters compare)."""
    with sqlite3.connect(db_path) as conn:
        conn.execute("UPDATE sms_messages SET created_at = ? WHERE sid = ?", (moment.timestamp(), sid))


def test_list_by_to_returns_only_that_number_newest_first(sandbox, twilio_client):
    sent = []
    for i in range(3):
        sent.append(twilio_client.messages.create(to=TO, from_=FROM, body=f"to me {i}").sid)
        twilio_client.messages.create(to=OTHER, from_=FROM, body=f"to other {i}")

    listed = twilio_client.messages.list(to=TO, limit=20)

    assert [m.sid for m in listed] == list(reversed(sent))
    assert {m.to for m in listed} == {TO}
    assert listed[0].body == "to me 2"
    assert listed[0].date_sent is None  # never "sent" by the sandbox: filters use the creation time


def test_list_by_from_and_unknown_number(sandbox, twilio_client):
    twilio_client.messages.create(to=TO, from_=FROM, body="a")
    twilio_client.messages.create(to=TO, from_="+15557650003", body="b")

    assert [m.body for m in twilio_client.messages.list(from_="+15557650003")] == ["b"]
    assert twilio_client.messages.list(to="+19995550000") == []


def test_list_page_has_twilio_shape(sandbox, http):
    record(sandbox.store, TO, "x")

    response = http.get(sandbox.url(MESSAGES_PATH), params={"To": TO}, auth=AUTH)

    assert response.status_code == 200
    body = response.json()
    assert set(body) == {
        "messages",
        "end",
        "first_page_uri",
        "next_page_uri",
        "page",
        "page_size",
        "previous_page_uri",
        "start",
        "uri",
    }
    assert (body["page"], body["page_size"], body["start"], body["end"]) == (0, 50, 0, 0)
    assert body["next_page_uri"] is None and body["previous_page_uri"] is None
    assert body["uri"] == f"{MESSAGES_PATH}?To=%2B15551230001&PageSize=50&Page=0"
    assert body["first_page_uri"] == body["uri"]
    assert body["messages"][0]["to"] == TO and body["messages"][0]["body"] == "x"


def test_list_pages_beyond_50_with_the_sdk(sandbox, twilio_client):
    sids = [record(sandbox.store, TO, f"m{i}") for i in range(130)]
    record(sandbox.store, OTHER, "not mine")
    newest_first = list(reversed(sids))

    # page_size=50 makes the SDK follow next_page_uri twice (50 + 50 + 20).
    paged = twilio_client.messages.list(to=TO, limit=120, page_size=50)
    assert [m.sid for m in paged] == newest_first[:120]

    # Without page_size the SDK asks for PageSize=limit: one page of 120.
    assert [m.sid for m in twilio_client.messages.list(to=TO, limit=120)] == newest_first[:120]

    streamed = [m.sid for m in twilio_client.messages.stream(to=TO, page_size=50)]
    assert streamed == newest_first

    first = twilio_client.messages.page(to=TO, page_size=50)
    second = first.next_page()
    third = second.next_page()
    assert [len(list(p)) for p in (first, second, third)] == [50, 50, 30]
    assert third.next_page_url is None
    back = twilio_client.messages.page(to=TO, page_size=50).next_page().previous_page()
    assert [m.sid for m in back] == newest_first[:50]


def test_page_uris_walk_forwards_and_backwards(sandbox, http):
    sids = list(reversed([record(sandbox.store, TO, f"m{i}") for i in range(7)]))

    def get(uri_or_params):
        if isinstance(uri_or_params, str):
            response = http.get(sandbox.url(uri_or_params), auth=AUTH)
        else:
            response = http.get(sandbox.url(MESSAGES_PATH), params=uri_or_params, auth=AUTH)
        assert response.status_code == 200, response.text
        return response.json()

    page0 = get({"To": TO, "PageSize": 3})
    page1 = get(page0["next_page_uri"])
    page2 = get(page1["next_page_uri"])
    assert [m["sid"] for m in page0["messages"] + page1["messages"] + page2["messages"]] == sids
    assert (page1["page"], page1["start"], page1["end"]) == (1, 3, 5)
    assert page2["next_page_uri"] is None
    assert [m["sid"] for m in get(page2["previous_page_uri"])["messages"]] == sids[3:6]
    # Page without a token is an offset.
    assert [m["sid"] for m in get({"To": TO, "PageSize": 3, "Page": 2})["messages"]] == sids[6:]


def test_page_size_is_capped_at_1000_and_validated(sandbox, http):
    capped = http.get(sandbox.url(MESSAGES_PATH), params={"PageSize": 5000}, auth=AUTH)
    assert (capped.status_code, capped.json()["page_size"]) == (200, 1000)

    for bad in ({"PageSize": 0}, {"PageSize": "ten"}, {"Page": -1}, {"PageToken": "garbage"}):
        response = http.get(sandbox.url(MESSAGES_PATH), params=bad, auth=AUTH)
        assert (response.status_code, response.json()["code"]) == (400, 20001), bad


def test_date_filters_compare_the_creation_time(sandbox, twilio_client, http):
    days = {d: twilio_client.messages.create(to=TO, from_=FROM, body=f"day {d}").sid for d in (10, 15, 20)}
    for d, sid in days.items():
        set_created_at(sandbox.db_path, sid, datetime(2026, 1, d, 12, 0, 0, 400_000, tzinfo=UTC))

    def bodies(**kwargs):
        return [m.body for m in twilio_client.messages.list(to=TO, **kwargs)]

    assert bodies(date_sent_after=datetime(2026, 1, 15, tzinfo=UTC)) == ["day 20", "day 15"]
    assert bodies(date_sent_before=datetime(2026, 1, 15, 23, 59, 59, tzinfo=UTC)) == ["day 15", "day 10"]
    assert bodies(date_sent=datetime(2026, 1, 15, tzinfo=UTC)) == ["day 15"]
    assert bodies(date_sent_after=datetime(2026, 1, 11), date_sent_before=datetime(2026, 1, 19)) == ["day 15"]
    # Date-times count to the second, like Twilio's timestamps: 12:00:00.4 is "at or after 12:00:00".
    assert bodies(date_sent_after=datetime(2026, 1, 20, 12, 0, 0, tzinfo=UTC)) == ["day 20"]
    assert bodies(date_sent_after=datetime(2026, 1, 20, 12, 0, 1, tzinfo=UTC)) == []
    assert bodies(date_sent_before=datetime(2026, 1, 10, 11, 59, 59, tzinfo=UTC)) == []

    # Twilio's own query-string syntax: DateSent>=YYYY-MM-DD is the parameter "DateSent>" (sent as DateSent%3E).
    raw = http.get(sandbox.url(MESSAGES_PATH), params={"To": TO, "DateSent>": "2026-01-15"}, auth=AUTH)
    assert "DateSent%3E=2026-01-15" in raw.url
    assert [m["body"] for m in raw.json()["messages"]] == ["day 20", "day 15"]
    assert "DateSent%3E=2026-01-15" in raw.json()["uri"]
    on_day = http.get(sandbox.url(MESSAGES_PATH), params={"DateSent": "2026-01-10"}, auth=AUTH).json()
    assert [m["body"] for m in on_day["messages"]] == ["day 10"]
    until = http.get(sandbox.url(MESSAGES_PATH + "?DateSent<=2026-01-15"), auth=AUTH).json()
    assert [m["body"] for m in until["messages"]] == ["day 15", "day 10"]


def test_just_created_message_is_found_after_a_recent_cutoff(sandbox, twilio_client):
    started = datetime.now(UTC) - timedelta(seconds=1)
    sid = twilio_client.messages.create(to=TO, from_=FROM, body="did it go?").sid

    assert [m.sid for m in twilio_client.messages.list(to=TO, date_sent_after=started)] == [sid]
    assert twilio_client.messages.list(to=TO, date_sent=date.today() + timedelta(days=2)) == []


def test_bad_date_is_20001(sandbox, http):
    response = http.get(sandbox.url(MESSAGES_PATH), params={"DateSent>": "yesterday"}, auth=AUTH)
    body = response.json()
    assert (response.status_code, body["code"]) == (400, 20001)
    assert "DateSent>" in body["message"] and "yesterday" in body["message"]


def test_list_requires_credentials(sandbox, http):
    record(sandbox.store, TO, "secret")

    anonymous = http.get(sandbox.url(MESSAGES_PATH), params={"To": TO})
    assert (anonymous.status_code, anonymous.json()["code"]) == (401, 20003)
    assert "messages" not in anonymous.json()

    client = Client(DEFAULT_TWILIO_ACCOUNT_SID, "not-the-sandbox-token")
    client.api.base_url = sandbox.base_url
    with pytest.raises(TwilioException) as err:
        client.messages.list(to=TO)
    assert err.value.args[1].status_code == 401

    other_account = f"/2010-04-01/Accounts/AC{'1' * 32}/Messages.json"
    assert http.get(sandbox.url(other_account), auth=AUTH).status_code == 401


def test_other_accounts_messages_are_not_listed(sandbox, twilio_client):
    record(sandbox.store, TO, "someone else's", account_sid="AC" + "2" * 32)
    mine = record(sandbox.store, TO, "mine")

    assert [m.sid for m in twilio_client.messages.list(to=TO)] == [mine]


def test_to_lookup_uses_the_index_on_100k_rows(tmp_path):
    store = SandboxStore(tmp_path / "big.db")
    store.initialise()
    with sqlite3.connect(store.path) as conn:
        conn.execute(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 100000) "
            "INSERT INTO sms_messages (sid, account_sid, to_number, from_number, body, status, num_segments,"
            " created_at, resource) SELECT printf('SM%032d', i), ?, printf('+1555%07d', i % 5000), ?, 'b',"
            " 'queued', 1, 1.0e9 + i, json_object('sid', printf('SM%032d', i)) FROM n",
            (DEFAULT_TWILIO_ACCOUNT_SID, FROM),
        )
    statements: list[str] = []
    store._conn().set_trace_callback(statements.append)

    rows = store.page_sms(DEFAULT_TWILIO_ACCOUNT_SID, to="+15550000007", before_id=90_000, limit=5)

    assert [r[0] for r in rows] == [85_007, 80_007, 75_007, 70_007, 65_007]
    select = next(s for s in statements if s.lstrip().upper().startswith("SELECT"))
    plan = " ".join(str(r[3]) for r in store._conn().execute("EXPLAIN QUERY PLAN " + select))
    assert "USING INDEX sms_messages_to" in plan, plan
    assert "TEMP B-TREE" not in plan, plan  # newest-first comes from the index, no sort


def test_file_created_without_the_index_gains_it(tmp_path):
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as conn:  # the sms table as an earlier sandbox created it, without the index
        conn.execute(
            "CREATE TABLE sms_messages (id INTEGER PRIMARY KEY AUTOINCREMENT, sid TEXT NOT NULL UNIQUE,"
            " account_sid TEXT NOT NULL, to_number TEXT NOT NULL, from_number TEXT, messaging_service_sid TEXT,"
            " body TEXT NOT NULL, status TEXT NOT NULL, num_segments INTEGER NOT NULL, created_at REAL NOT NULL,"
            " resource TEXT NOT NULL)"
        )
    store = SandboxStore(path)
    sid = record(store, TO, "after upgrade")

    with sqlite3.connect(path) as conn:
        indexes = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
    assert "sms_messages_to" in indexes
    assert [r[0] for r in store.page_sms(DEFAULT_TWILIO_ACCOUNT_SID, to=TO)] == [1]
    assert store.get_sms(sid) is not None
