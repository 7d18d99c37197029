"""Issue 9's "done when": an event published through the API with another publisher's idempotency key cannot stop a
Data Factory load. A user publishes, through the real ``POST /api/v1/events`` route, events with exactly the keys
the day's load will use (half with the load's own data, half with other data); then the load's publish step runs:
it publishes every one of its events under its own publisher, and the user's events stay as they were."""

from __future__ import annotations

import json
from datetime import date

from fastapi.testclient import TestClient
from sqlalchemy import select

from demobank.data_factory import transactions as tx
from demobank.data_factory import warehouse as wh
from demobank.data_factory.quality import run_detail
from demobank.db.models import OutboxEvent
from demobank.events.outbox import idempotent_event_id
from tests.data_factory.fixtures import (  # noqa: F401 - fixtures
    CLEAN_DAY,
    Databases,
    dbs_fixture,
    postgres_database_fixture,
    postgres_source_fixture,
    sqlite_source_fixture,
)
from tests.db.conftest import _isolated_engines  # noqa: F401 - autouse fixture
from tests.ui.conftest import Announcer, events_app, sign_in

DAG = tx.DAG_ID
ROWS = 1_500  # CLEAN_DAY's rows, none malformed


def load_without_publishing(dbs: Databases, day: date, run_id: str) -> None:
    """Steps 1 and 2 of the DAG: the day is in the warehouse, its events not yet published."""
    checked = tx.check_source_step(dag_id=DAG, run_id=run_id, conf_date=day.isoformat(), fallback=None,
                                   logical_date=None, max_bad_share=0.10, source_url=dbs.source_url,
                                   suite_engine=dbs.suite)
    tx.load_step(dag_id=DAG, run_id=run_id, task_id="validate_and_load", day=checked["day"],
                 expected_rows=checked["expected_rows"], max_bad_share=checked["max_bad_share"],
                 source_url=dbs.source_url, warehouse_url=dbs.warehouse_url, suite_engine=dbs.suite)


def events_the_load_will_publish(dbs: Databases, day: date) -> list[dict]:
    """The (type, data, idempotency key) of each event the publish step will write, read as the step reads them."""
    with dbs.warehouse.connect() as connection:
        load_key = connection.scalar(select(wh.loads.c.load_key).where(wh.loads.c.published_at.is_(None)))
    return [{"type": "transaction.created", "data": tx.event_data(row), "idempotency_key": row["transaction_id"]}
            for rows in tx._new_rows(dbs.warehouse, day, load_key, -1, 500) for row in rows]


def outbox(dbs: Databases) -> dict[str, tuple]:
    with dbs.suite.connect() as connection:
        return {row.id: (row.publisher, row.idempotency_key, row.envelope) for row in connection.execute(
            select(OutboxEvent.id, OutboxEvent.publisher, OutboxEvent.idempotency_key, OutboxEvent.envelope))}


def test_a_users_events_with_the_loads_idempotency_keys_do_not_stop_the_load(dbs: Databases) -> None:
    load_without_publishing(dbs, CLEAN_DAY, "run-1")
    planned = events_the_load_will_publish(dbs, CLEAN_DAY)
    assert len(planned) == ROWS
    same = planned[: ROWS // 2]  # the load's keys with the load's own data
    other = [{**event, "data": {**event["data"], "amount": "1.00", "description": "not the bank's"}}
             for event in planned[ROWS // 2:]]  # the load's keys with other data

    app = events_app(dbs.suite, Announcer())
    sign_in(app, "user", name="core-banking-feed")  # a bank system's account, of the role that may publish
    with TestClient(app) as client:
        for start in range(0, ROWS, 500):
            response = client.post("/api/v1/events", json={"events": (same + other)[start:start + 500]})
            assert response.status_code == 201, response.text
    users = outbox(dbs)
    assert len(users) == ROWS
    assert {publisher for publisher, _, _ in users.values()} == {"user:core-banking-feed"}

    published = tx.publish_step(dag_id=DAG, run_id="run-1", task_id="publish_events",
                                warehouse_url=dbs.warehouse_url, suite_engine=dbs.suite)

    assert published == {"published": ROWS, "loads_finished": 1}
    after = outbox(dbs)
    assert {event_id: after[event_id] for event_id in users} == users  # the user's events, untouched
    loads = {event_id: row for event_id, row in after.items() if event_id not in users}
    assert len(loads) == ROWS
    assert {publisher for publisher, _, _ in loads.values()} == {f"dag:{DAG}"}
    by_key = {key: (event_id, json.loads(envelope)) for event_id, (_, key, envelope) in loads.items()}
    for event in planned:  # every event of the load, with the load's data, under the load's key
        event_id, envelope = by_key[event["idempotency_key"]]
        assert event_id == idempotent_event_id(f"dag:{DAG}", "transaction.created", event["idempotency_key"])
        assert envelope["data"] == event["data"]
        assert envelope["publisher"] == f"dag:{DAG}"
    record = run_detail(dbs.suite, DAG, "run-1")
    assert record["status"] == "success" and record["events_published"] == ROWS

    # A re-run publishes nothing twice, and the user's keys still do not get in the way.
    assert tx.publish_new_transactions(dbs.warehouse, dbs.suite).published == 0
    assert outbox(dbs) == after
