"""The Events REST API (``demobank.ui.events_api``) over HTTP, on a migrated SQLite file: publishing, the catalog,
targets (create, list, get, update, enable, disable), test events, replay and deliveries."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from demobank.db.models import EventDelivery, OutboxEvent
from demobank.events.catalog import event_types, examples
from demobank.events.outbox import MAX_BATCH_SIZE
from tests.ui.conftest import Announcer, delivery_count, outbox_count, sign_in

API = "/api/v1"
SIGNED_IN = "user:op-tester"
"""The publisher of what the signed-in user of ``events_app`` (role op) publishes."""


def transaction(n: int = 0, **changes: Any) -> dict[str, Any]:
    """A valid ``transaction.created`` event (one of the catalog's examples, by ``n``)."""
    samples = examples("transaction.created")
    data = {**samples[n % len(samples)], **changes}
    return {"type": "transaction.created", "data": data, "subject": f"TXN-{n:06d}"}


def target_body(name: str = "finance-bus", **fields: Any) -> dict[str, Any]:
    return {"name": name, "kind": "eventbridge", "event_types": ["transaction.*"],
            "config": {"bus_name": "finance-events", "region_name": "eu-central-1"}, **fields}


def create(client: TestClient, name: str = "finance-bus", **fields: Any) -> dict[str, Any]:
    response = client.post(f"{API}/targets", json=target_body(name, **fields))
    assert response.status_code == 201, response.text
    return response.json()


def publish(client: TestClient, events: list[dict[str, Any]]) -> list[str]:
    response = client.post(f"{API}/events", json={"events": events})
    assert response.status_code == 201, response.text
    return response.json()["ids"]


def utc(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


# -- publishing ------------------------------------------------------------------------------------------------


def test_publish_a_full_batch(client: TestClient, engine: Engine, announcer: Announcer) -> None:
    target = create(client, event_types=["transaction.created"])
    events = [transaction(n) for n in range(MAX_BATCH_SIZE)]

    response = client.post(f"{API}/events", json={"events": events})

    assert response.status_code == 201, response.text
    body = response.json()
    assert body["count"] == MAX_BATCH_SIZE == len(body["ids"]) == len(set(body["ids"]))
    assert body["dispatch"] == "next sweep (within a minute)"
    assert outbox_count(engine) == MAX_BATCH_SIZE
    assert client.get(f"{API}/targets/{target['id']}").json()["deliveries"] == {
        "pending": MAX_BATCH_SIZE, "delivered": 0, "dead": 0}
    assert announcer.calls == [{"events": MAX_BATCH_SIZE, "source": "api"}]


def test_publish_says_when_the_dispatcher_was_started(engine: Engine) -> None:
    from tests.ui.conftest import events_app

    with TestClient(events_app(engine, Announcer(started=True))) as client:
        response = client.post(f"{API}/events", json={"events": [transaction()]})
    assert response.status_code == 201
    assert response.json()["dispatch"] == "started"


def test_a_batch_over_the_limit_is_refused(client: TestClient, engine: Engine, announcer: Announcer) -> None:
    response = client.post(f"{API}/events", json={"events": [transaction(n) for n in range(MAX_BATCH_SIZE + 1)]})

    assert response.status_code == 422
    body = response.json()
    assert f"{MAX_BATCH_SIZE + 1} events" in body["detail"]
    assert f"at most {MAX_BATCH_SIZE} per batch" in body["detail"]
    assert body["problems"][0]["path"] == "events"
    assert outbox_count(engine) == 0
    assert announcer.calls == []


def test_an_unknown_type_is_refused_with_its_field(client: TestClient, engine: Engine) -> None:
    response = client.post(f"{API}/events", json={"events": [{"type": "transaction.exploded", "data": {}}]})

    assert response.status_code == 422
    body = response.json()
    assert "events[0].type" in body["detail"]
    assert "transaction.created" in body["detail"]  # names the known types
    assert [problem["path"] for problem in body["problems"]] == ["events[0].type"]
    assert outbox_count(engine) == 0


def test_a_schema_violation_refuses_the_whole_batch(client: TestClient, engine: Engine,
                                                    announcer: Announcer) -> None:
    events = [transaction(0), transaction(1, amount=-42), transaction(2)]

    response = client.post(f"{API}/events", json={"events": events})

    assert response.status_code == 422
    body = response.json()
    assert "events[1].data.amount" in body["detail"]
    assert "nothing was published" in body["detail"]
    assert [problem["path"] for problem in body["problems"]] == ["events[1].data.amount"]
    assert outbox_count(engine) == 0
    assert delivery_count(engine) == 0
    assert announcer.calls == []


def test_every_problem_of_every_event_is_reported(client: TestClient) -> None:
    events = [transaction(0, currency="euro"), {"type": "transaction.created"}, transaction(2, extra_field=1)]

    response = client.post(f"{API}/events", json={"events": events})

    assert response.status_code == 422
    paths = {problem["path"] for problem in response.json()["problems"]}
    assert "events[0].data.currency" in paths
    assert "events[1].data" in paths
    assert any(path.startswith("events[2].data") for path in paths)


def test_a_request_that_is_not_a_batch_is_refused(client: TestClient) -> None:
    assert client.post(f"{API}/events", json=[transaction()]).status_code == 422
    assert client.post(f"{API}/events", json={"events": [transaction()], "extra": 1}).status_code == 422
    empty = client.post(f"{API}/events", json={"events": []})
    assert empty.status_code == 201
    assert empty.json() == {"ids": [], "count": 0, "dispatch": "nothing to dispatch"}


def test_idempotency_keys(client: TestClient, engine: Engine) -> None:
    event = {**transaction(0), "idempotency_key": "booking-42"}
    [first] = publish(client, [event])
    [again] = publish(client, [event])
    assert again == first
    assert outbox_count(engine) == 1

    other = {**transaction(0, amount="99.00"), "idempotency_key": "booking-42"}
    response = client.post(f"{API}/events", json={"events": [other]})

    assert response.status_code == 409
    body = response.json()
    assert "events[0].idempotency_key" in body["detail"]
    assert body["problems"][0]["path"] == "events[0].idempotency_key"
    assert outbox_count(engine) == 1


def test_an_event_time_can_be_given(client: TestClient) -> None:
    response = client.post(f"{API}/events", json={"events": [{**transaction(), "time": "2026-11-26T09:00:00Z"}]})
    assert response.status_code == 201, response.text


def test_the_catalog(client: TestClient) -> None:
    response = client.get(f"{API}/event-types")

    assert response.status_code == 200
    catalog = {item["type"]: item for item in response.json()}
    assert sorted(catalog) == sorted(event_types())
    assert catalog["transaction.created"]["example"] == examples("transaction.created")[0]
    assert 1 in catalog["transaction.created"]["versions"]


def test_the_logic_app_schema_is_served_as_published(client: TestClient) -> None:
    from demobank.logic_apps.definition import SCHEMA_FILE

    response = client.get(f"{API}/workflows/schema")
    assert response.status_code == 200
    assert response.json() == json.loads(SCHEMA_FILE.read_text())


# -- targets -------------------------------------------------------------------------------------------------------


def test_create_list_get_update_disable_enable(client: TestClient) -> None:
    assert client.get(f"{API}/targets").json() == []

    created = create(client, description="Finance's bus", match={"amount": {">=": "1000"}})
    assert created["name"] == "finance-bus"
    assert created["kind"] == "eventbridge"
    assert created["enabled"] is True
    assert created["event_types"] == ["transaction.*"]
    assert created["match"] == {"amount": {">=": "1000"}}
    # Defaults are filled in: what the page shows is what the dispatcher uses.
    assert created["config"] == {"aws_conn_id": "aws_default", "bus_name": "finance-events",
                                 "region_name": "eu-central-1"}
    assert created["deliveries"] == {"pending": 0, "delivered": 0, "dead": 0}
    assert created["last_error"] is None
    assert {"id", "created_at", "updated_at"} <= set(created)

    dag = create(client, "alerts", kind="airflow_dag", config={"dag_id": "connect_transaction_alert"})
    listed = client.get(f"{API}/targets").json()
    assert [item["name"] for item in listed] == ["finance-bus", "alerts"]
    assert client.get(f"{API}/targets/{dag['id']}").json() == listed[1]

    changed = client.put(f"{API}/targets/{created['id']}", json=target_body(
        "finance-bus-eu", event_types=["transaction.created", "customer.*"], match=None,
        config={"bus_name": "finance-events-2", "aws_conn_id": "aws_finance"}))
    assert changed.status_code == 200, changed.text
    updated = changed.json()
    assert updated["id"] == created["id"]
    assert updated["name"] == "finance-bus-eu"
    assert updated["event_types"] == ["transaction.created", "customer.*"]
    assert updated["match"] is None
    assert updated["config"] == {"aws_conn_id": "aws_finance", "bus_name": "finance-events-2"}
    assert client.get(f"{API}/targets/{created['id']}").json()["name"] == "finance-bus-eu"

    disabled = client.post(f"{API}/targets/{created['id']}/disable")
    assert disabled.status_code == 200
    assert disabled.json()["enabled"] is False
    assert client.get(f"{API}/targets/{created['id']}").json()["enabled"] is False
    enabled = client.post(f"{API}/targets/{created['id']}/enable")
    assert enabled.status_code == 200
    assert enabled.json()["enabled"] is True


@pytest.mark.parametrize(("changes", "names"), [
    ({"config": {"bus_name": "finance events"}}, ["config.bus_name"]),
    ({"config": {"region_name": "Frankfurt"}}, ["config.region_name"]),
    ({"config": {"bus_name": "b", "queue_url": "x"}}, ["config.queue_url"]),
    ({"config": {"max_event_bytes": 10**9}}, ["config.max_event_bytes"]),
    ({"kind": "sqs"}, ["kind", "eventbridge", "airflow_dag"]),
    ({"kind": "airflow_dag", "config": {}}, ["config.dag_id"]),
    ({"match": {"amount": {"≥": "1000"}}}, ["match", "unknown comparison"]),
    ({"match": {"amount": {">=": "lots"}}}, ["match", "is not a number"]),
    ({"match": "amount > 1000"}, ["match"]),
    ({"event_types": ["transaction.exploded"]}, ["event_types", "transaction.exploded", "not an event type"]),
    ({"event_types": ["nothing.*"]}, ["event_types", "matches no event type"]),
    ({"event_types": []}, ["event_types"]),
    ({"name": "finance/bus"}, ["name"]),
    ({"colour": "blue"}, ["colour"]),
])
def test_bad_target_specs_are_refused_with_the_field(client: TestClient, changes: dict[str, Any],
                                                     names: list[str]) -> None:
    response = client.post(f"{API}/targets", json={**target_body(), **changes})

    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    assert isinstance(detail, str)
    for name in names:
        assert name in detail
    assert client.get(f"{API}/targets").json() == []

    existing = create(client, "existing")
    update = client.put(f"{API}/targets/{existing['id']}", json={**target_body("existing"), **changes})
    assert update.status_code == 422
    assert update.json()["detail"] == detail.replace("finance-bus", "existing")
    assert client.get(f"{API}/targets/{existing['id']}").json()["config"] == existing["config"]


def test_a_body_that_is_not_an_object_is_refused(client: TestClient) -> None:
    response = client.post(f"{API}/targets", json=["finance-bus"])
    assert response.status_code == 422


def test_names_are_unique(client: TestClient) -> None:
    first = create(client, "first")
    second = create(client, "second")

    duplicate = client.post(f"{API}/targets", json=target_body("first"))
    assert duplicate.status_code == 409
    assert "'first' already exists" in duplicate.json()["detail"]

    renamed = client.put(f"{API}/targets/{second['id']}", json=target_body("first"))
    assert renamed.status_code == 409
    assert client.get(f"{API}/targets/{second['id']}").json()["name"] == "second"

    same = client.put(f"{API}/targets/{first['id']}", json=target_body("first", description="unchanged name"))
    assert same.status_code == 200


@pytest.mark.parametrize(("method", "path", "body"), [
    ("GET", "/targets/999", None),
    ("PUT", "/targets/999", target_body()),
    ("POST", "/targets/999/enable", None),
    ("POST", "/targets/999/disable", None),
    ("POST", "/targets/999/ping", None),
    ("GET", "/targets/999/deliveries", None),
    ("POST", "/targets/999/replay", {"event_type": "transaction.created", "start": "2026-11-01T00:00:00Z",
                                     "end": "2026-12-01T00:00:00Z"}),
])
def test_an_unknown_target_is_404(client: TestClient, method: str, path: str, body: Any) -> None:
    create(client)
    response = client.request(method, API + path, json=body)

    assert response.status_code == 404, response.text
    assert "999" in response.json()["detail"]


# -- test events, deliveries, replay ---------------------------------------------------------------------------------


def test_ping_goes_to_that_target_only(client: TestClient, engine: Engine, announcer: Announcer) -> None:
    target = create(client, "bus", event_types=["*"])
    other = create(client, "other", event_types=["*"])
    disabled = create(client, "disabled", enabled=False)

    refused = client.post(f"{API}/targets/{disabled['id']}/ping")
    assert refused.status_code == 409
    assert "disabled" in refused.json()["detail"] and "enable" in refused.json()["detail"]
    assert outbox_count(engine) == 0

    response = client.post(f"{API}/targets/{target['id']}/ping")

    assert response.status_code == 202, response.text
    event_id = response.json()["event_id"]
    assert response.json()["dispatch"] == "next sweep (within a minute)"
    assert announcer.calls == [{"events": 1, "source": "ping"}]
    with Session(engine) as session:
        rows = session.execute(select(EventDelivery.event_id, EventDelivery.target_id, EventDelivery.status)).all()
    assert rows == [(event_id, target["id"], "pending")]
    assert client.get(f"{API}/targets/{target['id']}").json()["deliveries"]["pending"] == 1
    assert client.get(f"{API}/targets/{other['id']}").json()["deliveries"]["pending"] == 0

    [delivery] = client.get(f"{API}/targets/{target['id']}/deliveries").json()
    assert delivery["event_id"] == event_id
    assert delivery["type"] == "demobank.ping"
    assert delivery["status"] == "pending"
    assert delivery["attempts"] == 0
    assert delivery["last_error"] is None
    assert client.get(f"{API}/targets/{other['id']}/deliveries").json() == []


def test_deliveries_listing(client: TestClient) -> None:
    target = create(client, event_types=["transaction.created"])
    ids = publish(client, [transaction(n) for n in range(5)])

    listed = client.get(f"{API}/targets/{target['id']}/deliveries").json()
    assert [row["event_id"] for row in listed] == ids[::-1]  # newest event first
    assert {row["status"] for row in listed} == {"pending"}
    assert all(row["type"] == "transaction.created" for row in listed)
    assert {row["subject"] for row in listed} == {f"TXN-{n:06d}" for n in range(5)}
    assert abs(datetime.fromisoformat(listed[0]["time"]).replace(tzinfo=UTC) - datetime.now(UTC)) < timedelta(hours=1)

    assert len(client.get(f"{API}/targets/{target['id']}/deliveries", params={"limit": 2}).json()) == 2
    assert len(client.get(f"{API}/targets/{target['id']}/deliveries", params={"status": "pending"}).json()) == 5
    assert client.get(f"{API}/targets/{target['id']}/deliveries", params={"status": "dead"}).json() == []
    assert client.get(f"{API}/targets/{target['id']}/deliveries", params={"status": "lost"}).status_code == 422
    assert client.get(f"{API}/targets/{target['id']}/deliveries", params={"limit": 0}).status_code == 422


def test_replay(client: TestClient, engine: Engine, announcer: Announcer) -> None:
    publish(client, [transaction(n) for n in range(3)])
    publish(client, [{"type": "customer.created", "data": examples("customer.created")[0]}])
    target = create(client, event_types=["transaction.created"])  # added after the events: nothing for it yet
    assert target["deliveries"]["pending"] == 0
    announcer.calls.clear()
    now = datetime.now(UTC)
    window = {"event_type": "transaction.created", "start": utc(now - timedelta(hours=1)),
              "end": utc(now + timedelta(hours=1))}

    response = client.post(f"{API}/targets/{target['id']}/replay", json=window)

    assert response.status_code == 202, response.text
    assert response.json() == {"queued": 3, "dispatch": "next sweep (within a minute)"}
    assert announcer.calls == [{"events": 3, "source": "replay"}]
    assert client.get(f"{API}/targets/{target['id']}").json()["deliveries"]["pending"] == 3
    assert len(client.get(f"{API}/targets/{target['id']}/deliveries").json()) == 3

    again = client.post(f"{API}/targets/{target['id']}/replay", json=window)  # resets, does not duplicate
    assert again.json()["queued"] == 3
    assert client.get(f"{API}/targets/{target['id']}").json()["deliveries"]["pending"] == 3

    earlier = {**window, "start": utc(now - timedelta(days=2)), "end": utc(now - timedelta(days=1))}
    nothing = client.post(f"{API}/targets/{target['id']}/replay", json=earlier)
    assert nothing.status_code == 202
    assert nothing.json() == {"queued": 0, "dispatch": "nothing to dispatch"}


def test_replay_keeps_to_the_match_filter(client: TestClient) -> None:
    small, large = examples("transaction.created")[:2]  # 42.50 and 3250.00
    publish(client, [{"type": "transaction.created", "data": data} for data in (small, large, small, large)])
    target = create(client, event_types=["customer.created"], match={"amount": {">=": "1000"}})
    now = datetime.now(UTC)

    response = client.post(f"{API}/targets/{target['id']}/replay", json={
        "event_type": "transaction.created", "start": utc(now - timedelta(hours=1)),
        "end": utc(now + timedelta(hours=1))})

    assert response.status_code == 202, response.text
    assert response.json()["queued"] == 2
    assert len(client.get(f"{API}/targets/{target['id']}/deliveries").json()) == 2


@pytest.mark.parametrize(("changes", "words"), [
    ({"event_type": "transaction.exploded"}, ["transaction.exploded", "not in the catalog"]),
    ({"start": "2026-11-01T00:00:00", "end": "2026-12-01T00:00:00"}, ["UTC offset"]),
    ({"start": "2026-12-01T00:00:00Z", "end": "2026-11-01T00:00:00Z"}, ["empty"]),
])
def test_bad_replays_are_refused(client: TestClient, changes: dict[str, Any], words: list[str]) -> None:
    target = create(client)
    body = {"event_type": "transaction.created", "start": "2026-11-01T00:00:00Z", "end": "2026-12-01T00:00:00Z",
            **changes}

    response = client.post(f"{API}/targets/{target['id']}/replay", json=body)

    assert response.status_code == 422, response.text
    for word in words:
        assert word in response.json()["detail"]


# -- publishers -----------------------------------------------------------------------------------------------------


def outbox_rows(engine: Engine) -> list[tuple[str, str, str | None, dict[str, Any]]]:
    with Session(engine) as session:
        return [(event_id, publisher, key, json.loads(envelope)) for event_id, publisher, key, envelope in
                session.execute(select(OutboxEvent.id, OutboxEvent.publisher, OutboxEvent.idempotency_key,
                                       OutboxEvent.envelope).order_by(OutboxEvent.sequence))]


def test_the_publisher_is_the_signed_in_user(client: TestClient, engine: Engine) -> None:
    target = create(client, event_types=["transaction.created"])

    [event_id] = publish(client, [{**transaction(), "idempotency_key": "booking-1"}])

    [(stored_id, publisher, key, envelope)] = outbox_rows(engine)
    assert (stored_id, publisher, key) == (event_id, SIGNED_IN, "booking-1")
    assert envelope["publisher"] == SIGNED_IN
    [delivery] = client.get(f"{API}/targets/{target['id']}/deliveries").json()
    assert delivery["publisher"] == SIGNED_IN


def test_another_user_with_the_same_key_publishes_another_event(engine: Engine) -> None:
    from tests.ui.conftest import events_app

    event = {**transaction(), "idempotency_key": "booking-1"}
    ids = {}
    for name in ("alice", "bob"):
        app = events_app(engine, Announcer())
        sign_in(app, "user", name=name)
        with TestClient(app) as client:
            ids[name] = publish(client, [event])[0]
            assert publish(client, [event]) == [ids[name]]  # each one's retry is a no-op
    assert ids["alice"] != ids["bob"]
    assert [row[1] for row in outbox_rows(engine)] == ["user:alice", "user:bob"]


@pytest.mark.parametrize("body", [
    {"events": [transaction()], "publisher": "dag:data_factory_transactions"},
    {"events": [{**transaction(), "publisher": "dag:data_factory_transactions"}]},
])
def test_a_publisher_in_the_body_is_refused(client: TestClient, engine: Engine, body: dict[str, Any]) -> None:
    response = client.post(f"{API}/events", json=body)

    assert response.status_code == 422, response.text
    assert "publisher" in response.text
    assert outbox_count(engine) == 0


def test_a_user_name_that_cannot_be_a_publisher_is_refused(engine: Engine) -> None:
    from tests.ui.conftest import events_app

    app = events_app(engine, Announcer())
    sign_in(app, "op", name="Jane Doe")
    with TestClient(app) as client:
        response = client.post(f"{API}/events", json={"events": [transaction()]})
    assert response.status_code == 403
    assert "user name 'Jane Doe' cannot be recorded as the publisher of an event" in response.json()["detail"]
    assert outbox_count(engine) == 0


def test_a_ping_is_published_by_the_user_who_sent_it(client: TestClient, engine: Engine) -> None:
    target = create(client, "bus", event_types=["*"])

    assert client.post(f"{API}/targets/{target['id']}/ping").status_code == 202

    [(_, publisher, _, envelope)] = outbox_rows(engine)
    assert publisher == envelope["publisher"] == SIGNED_IN
    assert envelope["type"] == "demobank.ping"


@pytest.mark.parametrize("closed", ["pipeline.run.completed", "demobank.ping"])
def test_a_type_closed_to_the_api_refuses_the_whole_batch(client: TestClient, engine: Engine,
                                                          announcer: Announcer, closed: str) -> None:
    events = [transaction(0), {"type": closed, "data": examples(closed)[0]}, transaction(1)]

    response = client.post(f"{API}/events", json={"events": events})

    assert response.status_code == 422, response.text
    body = response.json()
    assert [problem["path"] for problem in body["problems"]] == ["events[1].type"]
    assert f"events[1].type: {closed} may not be published through the API: only " in body["detail"]
    assert "x-demobank-api-publishing is false" in body["detail"]
    assert "one of customer.created, transaction.created, transaction.flagged" in body["detail"]
    assert outbox_count(engine) == 0
    assert announcer.calls == []


def test_the_catalog_says_which_types_the_api_publishes(client: TestClient) -> None:
    catalog = {item["type"]: item for item in client.get(f"{API}/event-types").json()}

    assert {name for name, item in catalog.items() if item["api_publishing"]} == {
        "transaction.created", "transaction.flagged", "customer.created"}
    assert catalog["pipeline.run.completed"]["published_by"] == "the Data Factory's run reporting"
    assert catalog["transaction.created"]["published_by"] is None


# -- input limits -----------------------------------------------------------------------------------------------------


def test_a_422_lists_at_most_100_problems_and_counts_the_rest(client: TestClient, engine: Engine) -> None:
    events = [{**transaction(n), "data": {**transaction(n)["data"], "currency": "euro"}} for n in range(150)]

    response = client.post(f"{API}/events", json={"events": events})

    assert response.status_code == 422
    body = response.json()
    assert len(body["problems"]) == 100
    assert body["problems"][0]["path"] == "events[0].data.currency"
    assert body["more_problems"] == 50
    assert ("(50 more problems not listed: at most 100 are, DEMOBANK_API_MAX_PROBLEMS; fix these and send the "
            "request again to see the rest)") in body["detail"]
    assert len(response.content) < 100_000
    assert outbox_count(engine) == 0

    one = client.post(f"{API}/events", json={"events": events[:1]}).json()
    assert one["more_problems"] == 0 and "more problem" not in one["detail"]


def test_a_target_422_is_bounded_too(client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEMOBANK_API_MAX_PROBLEMS", "2")

    response = client.post(f"{API}/targets", json={"name": "bad/name", "kind": "sqs", "colour": "blue"})

    assert response.status_code == 422
    body = response.json()
    assert [problem["path"] for problem in body["problems"]] == ["name", "kind"]
    assert body["more_problems"] == 1
    assert body["detail"].startswith("invalid target: name: ")
    assert "; and 1 more" in body["detail"] and "1 more problem not listed" in body["detail"]


def test_a_batch_over_the_byte_limit_is_refused_with_the_total_and_the_limit(
        client: TestClient, engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEMOBANK_EVENT_BATCH_MAX_BYTES", "20000")

    response = client.post(f"{API}/events", json={"events": [transaction(n) for n in range(60)]})

    assert response.status_code == 422
    body = response.json()
    [problem] = body["problems"]
    assert problem["path"] == "events"
    assert "over the limit of 20000 bytes (DEMOBANK_EVENT_BATCH_MAX_BYTES) for one batch" in problem["message"]
    assert problem["message"].startswith("the batch's 60 events are ")
    assert "split the batch" in problem["hint"]
    assert outbox_count(engine) == 0


def test_a_replay_over_the_cap_is_refused_and_says_to_narrow_the_window(
        client: TestClient, engine: Engine, announcer: Announcer, monkeypatch: pytest.MonkeyPatch) -> None:
    publish(client, [transaction(n) for n in range(5)])
    target = create(client, event_types=["customer.created"])
    announcer.calls.clear()
    monkeypatch.setenv("DEMOBANK_REPLAY_MAX_EVENTS", "4")
    now = datetime.now(UTC)
    window = {"event_type": "transaction.created", "start": utc(now - timedelta(hours=1)),
              "end": utc(now + timedelta(hours=1))}

    response = client.post(f"{API}/targets/{target['id']}/replay", json=window)

    assert response.status_code == 422, response.text
    body = response.json()
    assert (body["events"], body["limit"]) == (5, 4)
    assert "holds 5 transaction.created events, over the cap of 4 events (DEMOBANK_REPLAY_MAX_EVENTS)" in \
        body["detail"]
    assert "Narrow the window" in body["detail"]
    assert client.get(f"{API}/targets/{target['id']}").json()["deliveries"]["pending"] == 0
    assert announcer.calls == []


@pytest.mark.parametrize(("changes", "words"), [
    ({"event_types": ["transaction.created"] * 51}, ["51 patterns", "limit of 50 patterns",
                                                     "DEMOBANK_TARGET_MAX_EVENT_TYPES"]),
    ({"match": {f"f{n}": "x" for n in range(21)}}, ["21 conditions", "DEMOBANK_TARGET_MAX_CONDITIONS"]),
    ({"match": {"currency": ["EUR"] * 101}}, ["101 values", "DEMOBANK_TARGET_MAX_VALUES"]),
    ({"match": {"description": "x" * 5000}}, ["5000 characters", "DEMOBANK_TARGET_MAX_TEXT_LENGTH"]),
    ({"match": {".".join(["m"] * 12): "x"}}, ["12 parts", "DEMOBANK_TARGET_MAX_PATH_DEPTH"]),
])
def test_unbounded_target_filters_are_refused_with_the_limit(client: TestClient, changes: dict[str, Any],
                                                             words: list[str]) -> None:
    response = client.post(f"{API}/targets", json={**target_body(), **changes})

    assert response.status_code == 422, response.text
    for word in words:
        assert word in response.json()["detail"]
    assert len(response.content) < 5_000  # the 5,000-character value is not echoed back
    assert client.get(f"{API}/targets").json() == []


def test_a_body_that_is_not_the_routes_model_gets_a_bounded_422_too(client: TestClient) -> None:
    body = {"events": [transaction()], **{f"extra_{n}": n for n in range(1_000)}}

    response = client.post(f"{API}/events", json=body)

    assert response.status_code == 422
    answer = response.json()
    assert len(answer["problems"]) == 100 and answer["more_problems"] == 900
    assert answer["problems"][0] == {"path": "extra_0", "message": "Extra inputs are not permitted"}
    assert answer["detail"].startswith("invalid request body: extra_0: Extra inputs are not permitted")
    assert len(response.content) < 50_000

    target = create(client)
    replay = client.post(f"{API}/targets/{target['id']}/replay", json={"event_type": "transaction.created"})
    assert replay.status_code == 422
    assert {problem["path"] for problem in replay.json()["problems"]} == {"start", "end"}
    assert replay.json()["more_problems"] == 0


# -- the audit trail -------------------------------------------------------------------------------------------


def test_the_audit_trail_names_the_signed_in_user(client: TestClient) -> None:
    target = create(client, event_types=["transaction.created"])
    assert client.put(f"{API}/targets/{target['id']}",
                      json=target_body(event_types=["transaction.created"], enabled=False)).status_code == 200
    assert client.post(f"{API}/targets/{target['id']}/enable").status_code == 200
    event_id = client.post(f"{API}/targets/{target['id']}/ping").json()["event_id"]
    window = {"event_type": "transaction.created", "start": "2001-01-01T00:00:00Z", "end": "2001-01-02T00:00:00Z"}
    assert client.post(f"{API}/targets/{target['id']}/replay", json=window).status_code == 202
    other = create(client, "other-bus")

    response = client.get(f"{API}/targets/{target['id']}/audit")

    assert response.status_code == 200
    entries = response.json()
    assert [(entry["actor"], entry["action"]) for entry in entries] == [
        ("op-tester", "replayed"), ("op-tester", "pinged"), ("op-tester", "enabled"), ("op-tester", "changed"),
        ("op-tester", "created")]
    assert entries[0]["details"] == {"event_type": "transaction.created", "start": "2001-01-01T00:00:00+00:00",
                                     "end": "2001-01-02T00:00:00+00:00", "queued": 0}
    assert entries[1]["details"] == {"event_id": event_id}
    assert entries[3]["details"] == {"changes": {"enabled": {"before": True, "after": False}}}
    assert all(entry["target_name"] == "finance-bus" and entry["target_id"] == target["id"] for entry in entries)
    assert datetime.fromisoformat(entries[0]["at"]).tzinfo is not None

    everything = client.get(f"{API}/audit").json()
    assert [(entry["target_name"], entry["action"]) for entry in everything[:2]] == [("other-bus", "created"),
                                                                                     ("finance-bus", "replayed")]
    assert len(client.get(f"{API}/audit", params={"limit": 2}).json()) == 2
    assert client.get(f"{API}/audit", params={"limit": 0}).status_code == 422
    assert client.get(f"{API}/targets/{other['id']}/audit").json()[0]["action"] == "created"
    missing = client.get(f"{API}/targets/999/audit")
    assert missing.status_code == 404
    assert "event target 999 does not exist" in missing.json()["detail"]
