"""Publishers in the outbox (SQLite file and PostgreSQL): every event records who published it, idempotency keys
belong to their publisher and type, the API's types, the batch byte limit, and migration 0006's backfill."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from alembic import command
from sqlalchemy import Engine, func, select, text
from sqlalchemy.orm import Session

from demobank.db.engine import get_engine, session_scope
from demobank.db.migrate import alembic_config, upgrade
from demobank.db.models import EventDelivery, EventTarget, OutboxEvent
from demobank.events.catalog import EventValidationError, examples
from demobank.events.envelope import CloudEvent, check_publisher, dag_publisher, user_publisher
from demobank.events.outbox import (
    IDEMPOTENCY_NAMESPACE,
    EventConflictError,
    idempotent_event_id,
    prepare_event,
    publish,
    publish_many,
    publish_now,
)
from demobank.limits import BATCH_MAX_BYTES
from tests.db.conftest import (  # noqa: F401 - pytest registers the imported fixtures for this module
    _isolated_engines,
    db_url,
    migrated_url,
    postgres_admin_url,
    postgres_url,
    sqlite_url,
)

PIPELINE = "dag:data_factory_transactions"
ALICE = "user:alice"


@pytest.fixture
def engine(migrated_url: str) -> Engine:  # noqa: F811
    return get_engine(migrated_url)


@pytest.fixture(autouse=True)
def _default_limits(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.delenv(BATCH_MAX_BYTES.env, raising=False)
    yield


def _transaction(number: int = 1, **changes: object) -> dict:
    data = examples("transaction.created")[0]
    data["transaction_id"] = f"TXN-{number:012d}"
    data.update(changes)
    return data


def _rows(engine: Engine) -> list[tuple]:
    with Session(engine) as session:
        return [tuple(row) for row in session.execute(
            select(OutboxEvent.id, OutboxEvent.publisher, OutboxEvent.type, OutboxEvent.idempotency_key,
                   OutboxEvent.envelope).order_by(OutboxEvent.sequence))]


# -- who published ------------------------------------------------------------------------------------------------


def test_the_publisher_is_in_the_envelope_and_in_the_row(engine: Engine) -> None:
    with session_scope(engine) as session:
        event_id = publish(session, "transaction.created", _transaction(), publisher=PIPELINE,
                           idempotency_key="TXN-000000000001")
        keyless = publish(session, "customer.created", examples("customer.created")[0], publisher=ALICE)

    rows = {row[0]: row for row in _rows(engine)}
    assert rows[event_id][1:4] == (PIPELINE, "transaction.created", "TXN-000000000001")
    assert rows[keyless][1:4] == (ALICE, "customer.created", None)
    envelope = json.loads(rows[event_id][4])
    assert envelope["publisher"] == PIPELINE
    assert list(envelope)[-2:] == ["publisher", "data"]  # an extension attribute, before the data
    assert CloudEvent.from_json(rows[keyless][4]).publisher == ALICE


@pytest.mark.parametrize("bad", [None, "", "alice", "system:cron", "user:", "dag:my dag", "user:bob\nx",
                                 "user:" + "a" * 251, "dag:é"])
def test_a_malformed_publisher_is_refused_and_nothing_is_written(engine: Engine, bad: object) -> None:
    with session_scope(engine) as session:
        with pytest.raises(ValueError, match="is not user:<name> or dag:<name> with a name of 1 to 250 ASCII"):
            publish(session, "demobank.ping", {"message": "ping"}, publisher=bad)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="is not user:<name> or dag:<name>"):
            publish_many(session, [{"type": "demobank.ping", "data": {"message": "x"}}], publisher=bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="is not user:<name> or dag:<name>"):
        prepare_event("demobank.ping", {"message": "ping"}, publisher=bad)  # type: ignore[arg-type]
    assert _rows(engine) == []


def test_the_envelope_checks_its_publisher() -> None:
    from pydantic import ValidationError

    fields = {"id": "0193a1c4-5e2f-7c31-9a4e-3f0b6d1c2a77", "type": "demobank.ping", "time": datetime.now(UTC),
              "data": {"message": "ping"}}
    assert CloudEvent(**fields, publisher=ALICE).to_dict()["publisher"] == ALICE
    assert "publisher" not in CloudEvent(**fields).to_dict()  # an envelope stored before publishers were recorded
    with pytest.raises(ValidationError, match="publisher"):
        CloudEvent(**fields, publisher="root")


def test_publishers_are_made_from_user_names_and_dag_ids() -> None:
    assert user_publisher("ops.lead@bank.example") == "user:ops.lead@bank.example"
    assert dag_publisher("data_factory_transactions") == PIPELINE
    assert check_publisher("dag:a.b-c_d") == "dag:a.b-c_d"
    with pytest.raises(ValueError, match="user name 'Jane Doe' cannot be recorded as the publisher of an event"):
        user_publisher("Jane Doe")
    with pytest.raises(ValueError, match="DAG id '' cannot be recorded"):
        dag_publisher("")


def test_an_event_cannot_name_its_own_publisher(engine: Engine) -> None:
    with session_scope(engine) as session, pytest.raises(EventValidationError) as refused:
        publish_many(session, [{"type": "transaction.created", "data": _transaction(), "publisher": PIPELINE}],
                     publisher=ALICE)
    assert [problem.path for problem in refused.value.problems] == ["events[0].publisher"]
    assert "is not a field of an event" in str(refused.value)
    assert _rows(engine) == []


# -- idempotency keys belong to their publisher ----------------------------------------------------------------


def test_the_same_key_of_two_publishers_is_two_events(engine: Engine) -> None:
    data = _transaction()
    with session_scope(engine) as session:
        pipeline = publish(session, "transaction.created", data, publisher=PIPELINE, idempotency_key="TXN-1")
        # Alice takes the pipeline's key, with other data: her own event, no conflict with the pipeline.
        alice = publish(session, "transaction.created", _transaction(amount="1.00"), publisher=ALICE,
                        idempotency_key="TXN-1")
    with session_scope(engine) as session:
        # Each publisher's retry finds its own event.
        assert publish(session, "transaction.created", data, publisher=PIPELINE, idempotency_key="TXN-1") == pipeline
        assert publish_many(session, [{"type": "transaction.created", "data": _transaction(amount="1.00"),
                                       "idempotency_key": "TXN-1"}], publisher=ALICE) == [alice]

    assert pipeline != alice
    assert pipeline == idempotent_event_id(PIPELINE, "transaction.created", "TXN-1")
    assert pipeline == str(uuid.uuid5(IDEMPOTENCY_NAMESPACE, f"{PIPELINE}\ntransaction.created\nTXN-1"))
    assert len(_rows(engine)) == 2

    # Within one publisher the key still means one event.
    with session_scope(engine) as session, pytest.raises(EventConflictError) as conflict:
        publish(session, "transaction.created", _transaction(amount="2.00"), publisher=ALICE, idempotency_key="TXN-1")
    assert f"'TXN-1' was already used by {ALICE} for event {alice}" in str(conflict.value)


def test_keys_are_scoped_by_type_too(engine: Engine) -> None:
    with session_scope(engine) as session:
        ping = publish(session, "demobank.ping", {"message": "ping"}, publisher=ALICE, idempotency_key="k")
        transaction = publish(session, "transaction.created", _transaction(), publisher=ALICE, idempotency_key="k")
    assert ping != transaction
    assert len(_rows(engine)) == 2


def test_the_unique_index_guards_the_scope(engine: Engine) -> None:
    """Two writers that both found the key free: the database refuses the second (the id differs: a stored row
    whose id came from elsewhere, as after migration 0006, is still one event per publisher, type and key)."""
    from sqlalchemy.exc import IntegrityError

    with session_scope(engine) as session:
        publish(session, "demobank.ping", {"message": "ping"}, publisher=ALICE, idempotency_key="k")
    with Session(engine) as session, pytest.raises(IntegrityError):
        session.add(OutboxEvent(id=str(uuid.uuid4()), type="demobank.ping", subject=None, time=datetime.now(UTC),
                                publisher=ALICE, idempotency_key="k", envelope="{}", size_bytes=2))
        session.commit()


def test_publish_now_takes_the_publisher(engine: Engine) -> None:
    event_id = publish_now("demobank.ping", {"message": "from a task"}, engine=engine, publisher="dag:nightly",
                           idempotency_key="2026-12-02")
    assert publish_now("demobank.ping", {"message": "from a task"}, engine=engine, publisher="dag:nightly",
                       idempotency_key="2026-12-02") == event_id
    assert [row[1] for row in _rows(engine)] == ["dag:nightly"]


# -- what the API may publish, and how much ------------------------------------------------------------------------


def test_types_closed_to_the_api_refuse_the_whole_batch(engine: Engine) -> None:
    events = [
        {"type": "transaction.created", "data": _transaction()},
        {"type": "pipeline.run.completed", "data": examples("pipeline.run.completed")[0]},
        {"type": "demobank.ping", "data": {"message": "ping"}},
    ]
    with session_scope(engine) as session, pytest.raises(EventValidationError) as refused:
        publish_many(session, events, publisher=ALICE, through_api=True)

    assert [problem.path for problem in refused.value.problems] == ["events[1].type", "events[2].type"]
    assert "events[1].type: pipeline.run.completed may not be published through the API" in str(refused.value)
    assert "one of customer.created, transaction.created, transaction.flagged" in str(refused.value)
    assert _rows(engine) == []

    # The same events from the suite itself (not through the API) are published.
    with session_scope(engine) as session:
        assert len(publish_many(session, events, publisher=PIPELINE)) == 3


def test_a_batch_over_the_byte_limit_is_refused_with_the_total_and_how_to_split(
        engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    events = [{"type": "transaction.created", "data": _transaction(n)} for n in range(40)]
    one = prepare_event("transaction.created", _transaction(0), publisher=ALICE).size_bytes
    monkeypatch.setenv(BATCH_MAX_BYTES.env, str(one * 10))

    with session_scope(engine) as session, pytest.raises(EventValidationError) as refused:
        publish_many(session, events, publisher=ALICE)

    [problem] = refused.value.problems
    assert problem.path == "events"
    assert problem.message.startswith("the batch's 40 events are ")
    assert f"over the limit of {one * 10} bytes (DEMOBANK_EVENT_BATCH_MAX_BYTES) for one batch" in problem.message
    assert "split the batch: at about" in problem.hint and "batches of at most 10 events fit" in problem.hint
    assert _rows(engine) == []
    with session_scope(engine) as session:
        assert len(publish_many(session, events[:10], publisher=ALICE)) == 10  # at the limit: accepted


def test_the_default_batch_limit_takes_a_full_batch_of_the_data_factory(engine: Engine) -> None:
    events = [{"type": "transaction.created", "data": _transaction(n), "idempotency_key": f"TXN-{n}"}
              for n in range(500)]
    with session_scope(engine) as session:
        assert len(publish_many(session, events, publisher=PIPELINE)) == 500
    assert BATCH_MAX_BYTES.value() == 4 * 1024 * 1024


# -- migration 0006: the rows written before it --------------------------------------------------------------------


def _legacy_id(event_type: str, key: str) -> str:
    return str(uuid.uuid5(IDEMPOTENCY_NAMESPACE, f"{event_type}\n{key}"))


def _insert_legacy(connection, event_id: str, event_type: str, subject: str | None, data: dict) -> int:
    envelope = json.dumps({"specversion": "1.0", "id": event_id, "source": "com.demobank", "type": event_type,
                           "time": "2026-11-30T10:00:00.000Z", "subject": subject, "data": data})
    connection.execute(text(
        "INSERT INTO outbox_events (id, type, subject, time, envelope, size_bytes) "
        "VALUES (:id, :type, :subject, :time, :envelope, :size)"),
        {"id": event_id, "type": event_type, "subject": subject, "time": datetime(2026, 11, 30, 10, tzinfo=UTC),
         "envelope": envelope, "size": len(envelope)})
    return connection.execute(text("SELECT sequence FROM outbox_events WHERE id = :id"), {"id": event_id}).scalar()


def test_migration_0006_backfills_publishers_and_the_data_factorys_keys(db_url: str) -> None:  # noqa: F811
    upgrade(db_url, "0005")
    engine = get_engine(db_url)
    transaction, customer = _transaction(7), examples("customer.created")[0]
    rows = {
        # The Data Factory's, keyed by their subject (the transaction / customer id).
        "load": (_legacy_id("transaction.created", transaction["transaction_id"]), "transaction.created",
                 transaction["transaction_id"], transaction),
        "customers": (_legacy_id("customer.created", customer["customer_id"]), "customer.created",
                      customer["customer_id"], customer),
        # An API caller's key that is not the subject: not recoverable.
        "api_key": (_legacy_id("transaction.created", "booking-42"), "transaction.created", "TXN-000000000042",
                    _transaction(42)),
        # No key at all (a version-7 id), and a ping.
        "no_key": ("0193a1c4-5e2f-7c31-9a4e-3f0b6d1c2a77", "transaction.created", "TXN-000000000043",
                   _transaction(43)),
        "ping": (_legacy_id("demobank.ping", "check-1"), "demobank.ping", None, {"message": "ping"}),
    }
    with engine.begin() as connection:
        connection.execute(text("INSERT INTO event_targets (name, kind, config, event_types, enabled) "
                                "VALUES ('bus', 'eventbridge', '{}', '[\"*\"]', :on)"), {"on": True})
        target_id = connection.execute(text("SELECT id FROM event_targets")).scalar()
        for event_id, event_type, subject, data in rows.values():
            _insert_legacy(connection, event_id, event_type, subject, data)
            connection.execute(text("INSERT INTO event_deliveries (event_id, target_id, status, attempts) "
                                    "VALUES (:event, :target, 'delivered', 1)"),
                               {"event": event_id, "target": target_id})

    upgrade(db_url)

    stored = {row[0]: row for row in _rows(engine)}
    assert stored[rows["load"][0]][1:4] == (PIPELINE, "transaction.created", transaction["transaction_id"])
    assert stored[rows["customers"][0]][1:4] == ("dag:data_factory_customer_sync", "customer.created",
                                                 customer["customer_id"])
    for name in ("api_key", "no_key", "ping"):
        assert stored[rows[name][0]][1] == "dag:unknown" and stored[rows[name][0]][3] is None, name
    assert "publisher" not in json.loads(stored[rows["load"][0]][4])  # envelopes stay as they were delivered
    with Session(engine) as session:  # no delivery was lost on the way (SQLite: no copy of the table)
        assert session.scalar(select(func.count()).select_from(EventDelivery)) == len(rows)
        assert session.scalar(select(func.count()).select_from(EventTarget)) == 1

    # A load that was publishing during the upgrade finds its event: nothing twice. Anyone else's key is new.
    with session_scope(engine) as session:
        again = publish_many(session, [{"type": "transaction.created", "data": transaction,
                                        "idempotency_key": transaction["transaction_id"]}], publisher=PIPELINE)
        alice = publish(session, "transaction.created", transaction, publisher=ALICE,
                        idempotency_key=transaction["transaction_id"])
    assert again == [rows["load"][0]]
    assert alice not in stored
    assert len(_rows(engine)) == len(rows) + 1


def test_migration_0006_downgrades_without_losing_events(migrated_url: str) -> None:  # noqa: F811
    engine = get_engine(migrated_url)
    with session_scope(engine) as session:
        publish(session, "demobank.ping", {"message": "ping"}, publisher=ALICE, idempotency_key="k")
    command.downgrade(alembic_config(migrated_url), "0005")
    with engine.connect() as connection:
        assert connection.execute(text("SELECT count(*) FROM outbox_events")).scalar() == 1
        columns = list(connection.execute(text("SELECT * FROM outbox_events")).keys())
    assert "publisher" not in columns and "idempotency_key" not in columns
    upgrade(migrated_url)
    assert [row[1] for row in _rows(engine)] == ["dag:unknown"]
