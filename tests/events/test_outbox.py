"""Publishing into the outbox on a migrated database (SQLite file and PostgreSQL): validation before any write,
the caller's transaction, batches, size limits, idempotency keys and the deliveries per matching target."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from alembic import command
from sqlalchemy import Engine, delete, func, inspect, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from demobank.db.engine import get_engine, session_scope
from demobank.db.migrate import alembic_config, schema_diff, upgrade
from demobank.db.models import EventDelivery, EventTarget, OutboxEvent
from demobank.events.catalog import EventValidationError, UnknownEventTypeError, examples, schema_uri
from demobank.events.envelope import CloudEvent
from demobank.events.filters import filter_matches, type_matches, validate_type_filter
from demobank.events.outbox import (
    DEFAULT_MAX_EVENT_BYTES,
    MAX_BATCH_SIZE,
    MAX_EVENT_BYTES_ENV,
    EventConflictError,
    max_event_bytes,
    prepare_event,
    publish,
    publish_many,
    publish_now,
)
from demobank.exceptions import ConfigurationError
from tests.db.conftest import (  # noqa: F401 - pytest registers the imported fixtures for this module
    _isolated_engines,
    db_url,
    migrated_url,
    postgres_admin_url,
    postgres_url,
    sqlite_url,
)

PUBLISHER = "dag:test_outbox"  # who this module's events are published by


@pytest.fixture
def engine(migrated_url: str) -> Engine:  # noqa: F811
    return get_engine(migrated_url)


@pytest.fixture(autouse=True)
def _default_size_limit(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.delenv(MAX_EVENT_BYTES_ENV, raising=False)
    yield


def _transaction(number: int = 1, **changes: object) -> dict:
    data = examples("transaction.created")[0]
    data["transaction_id"] = f"TXN-{number:012d}"
    data.update(changes)
    return data


def _counts(engine: Engine) -> tuple[int, int]:
    with Session(engine) as session:
        return (
            session.scalar(select(func.count()).select_from(OutboxEvent)),
            session.scalar(select(func.count()).select_from(EventDelivery)),
        )


def _add_targets(engine: Engine, *targets: tuple[str, list[str], bool] | tuple[str, list[str], bool, dict]) -> dict:
    with session_scope(engine) as session:
        rows = [
            EventTarget(name=spec[0], event_types=spec[1], enabled=spec[2], config=spec[3] if len(spec) > 3 else {})
            for spec in targets
        ]
        session.add_all(rows)
        session.flush()
        return {row.name: row.id for row in rows}


def _deliveries(engine: Engine, event_id: str) -> dict[str, EventDelivery]:
    with Session(engine) as session:
        rows = session.execute(
            select(EventTarget.name, EventDelivery)
            .join(EventDelivery, EventDelivery.target_id == EventTarget.id)
            .where(EventDelivery.event_id == event_id)
        ).all()
        session.expunge_all()
        return {name: delivery for name, delivery in rows}


# -- publish ------------------------------------------------------------------------------------------------


def test_publish_writes_the_envelope_in_the_callers_transaction(engine: Engine) -> None:
    data = _transaction(amount=Decimal("42.50"), booked_at=datetime(2026, 11, 26, 9, 41, 7, tzinfo=UTC))
    before = datetime.now(UTC) - timedelta(seconds=1)

    with session_scope(engine) as session:
        event_id = publish(session, "transaction.created", data, publisher=PUBLISHER)

    with Session(engine) as session:
        row = session.scalars(select(OutboxEvent)).one()
    envelope = json.loads(row.envelope)
    assert row.id == event_id == envelope["id"]
    assert row.type == envelope["type"] == "transaction.created"
    assert row.subject == envelope["subject"] == "TXN-000000000001"  # the schema's subject field
    assert envelope["source"] == "com.demobank"
    assert envelope["dataschema"] == schema_uri("transaction.created", 1)
    assert envelope["data"]["amount"] == "42.50"  # Decimal → decimal string
    assert envelope["data"]["booked_at"] == "2026-11-26T09:41:07Z"
    assert row.size_bytes == len(row.envelope.encode("utf-8"))
    assert row.time == CloudEvent.from_json(row.envelope).time
    assert before <= row.time <= datetime.now(UTC) + timedelta(seconds=1)
    assert row.sequence >= 1


def test_explicit_subject_time_and_version(engine: Engine) -> None:
    when = datetime(2026, 11, 26, 9, 0, tzinfo=UTC)
    with session_scope(engine) as session:
        event_id = publish(session, "demobank.ping", {"message": "ping"}, "check-1", version=1, time=when,
                           publisher=PUBLISHER)

    with Session(engine) as session:
        row = session.scalars(select(OutboxEvent)).one()
    assert (row.id, row.subject, row.time) == (event_id, "check-1", when)
    assert json.loads(row.envelope)["time"] == "2026-11-26T09:00:00.000Z"


def test_sequence_follows_publish_order(engine: Engine) -> None:
    ids = []
    for number in range(5):
        with session_scope(engine) as session:
            ids.append(publish(session, "transaction.created", _transaction(number), publisher=PUBLISHER))

    with Session(engine) as session:
        stored = session.scalars(select(OutboxEvent.id).order_by(OutboxEvent.sequence)).all()
    assert stored == ids


def test_rolled_back_transaction_leaves_nothing(engine: Engine) -> None:
    _add_targets(engine, ("all", ["*"], True))

    with Session(engine) as session:
        publish(session, "transaction.created", _transaction(), publisher=PUBLISHER)
        assert session.scalar(select(func.count()).select_from(OutboxEvent)) == 1  # written in the transaction
        session.rollback()

    class BusinessError(Exception):
        pass

    with pytest.raises(BusinessError), session_scope(engine) as session:
        publish(session, "transaction.created", _transaction(2), publisher=PUBLISHER)
        raise BusinessError("the booking failed after the event was published")

    assert _counts(engine) == (0, 0)


def test_publish_does_not_commit(engine: Engine) -> None:
    with Session(engine) as session:
        publish(session, "demobank.ping", {"message": "ping"}, publisher=PUBLISHER)
        assert session.in_transaction()
        session.close()  # closing without commit discards it

    assert _counts(engine) == (0, 0)


def test_unknown_type_is_refused_and_nothing_is_written(engine: Engine) -> None:
    _add_targets(engine, ("all", ["*"], True))

    with session_scope(engine) as session:
        with pytest.raises(UnknownEventTypeError, match=r"type: \"transaction\.create\" is not an event type"):
            publish(session, "transaction.create", _transaction(), publisher=PUBLISHER)
        # The refusal wrote nothing and left the caller's transaction usable.
        publish(session, "demobank.ping", {"message": "still usable"}, publisher=PUBLISHER)

    with Session(engine) as session:
        assert session.scalars(select(OutboxEvent.type)).all() == ["demobank.ping"]


def test_schema_violation_names_the_field_and_nothing_is_written(engine: Engine) -> None:
    with session_scope(engine) as session, pytest.raises(EventValidationError) as caught:
        publish(session, "transaction.created", _transaction(amount=42.5, currency="euro"), publisher=PUBLISHER)

    message = str(caught.value)
    assert "data.amount: 42.5 is a number, not a string" in message
    assert 'data.currency: "euro" does not match' in message
    assert {problem.path for problem in caught.value.problems} == {"data.amount", "data.currency"}
    assert _counts(engine) == (0, 0)


@pytest.mark.parametrize(
    ("kwargs", "path"),
    [
        ({"subject": ""}, "subject"),
        ({"subject": "x" * 251}, "subject"),
        ({"time": datetime(2026, 11, 26, 9, 0)}, "time"),
        ({"idempotency_key": ""}, "idempotency_key"),
        ({"version": 2}, "version"),
    ],
)
def test_bad_publish_arguments_are_refused(engine: Engine, kwargs: dict, path: str) -> None:
    with session_scope(engine) as session, pytest.raises(EventValidationError) as caught:
        publish(session, "transaction.created", _transaction(), **kwargs, publisher=PUBLISHER)

    assert [problem.path for problem in caught.value.problems] == [path]
    assert _counts(engine) == (0, 0)


def test_data_that_is_not_json_is_refused_naming_the_field(engine: Engine) -> None:
    with session_scope(engine) as session, pytest.raises(EventValidationError, match=r"data\.booked_at: .*time zone"):
        publish(session, "transaction.created", _transaction(booked_at=datetime(2026, 11, 26, 9, 0)),
                publisher=PUBLISHER)

    assert _counts(engine) == (0, 0)


def test_sequence_values_are_never_reused(engine: Engine) -> None:
    with session_scope(engine) as session:
        publish_many(session, [{"type": "demobank.ping", "data": {"message": str(n)}} for n in range(3)],
                     publisher=PUBLISHER)
    with session_scope(engine) as session:
        last = session.scalar(select(func.max(OutboxEvent.sequence)))
        session.execute(delete(OutboxEvent).where(OutboxEvent.sequence == last))  # e.g. a retention purge
    with session_scope(engine) as session:
        publish(session, "demobank.ping", {"message": "after the purge"}, publisher=PUBLISHER)

    with Session(engine) as session:
        assert session.scalar(select(func.max(OutboxEvent.sequence))) > last


def test_deleting_an_event_or_a_target_deletes_its_deliveries(engine: Engine) -> None:
    targets = _add_targets(engine, ("a", ["*"], True), ("b", ["*"], True))
    with session_scope(engine) as session:
        first = publish(session, "demobank.ping", {"message": "1"}, publisher=PUBLISHER)
        publish(session, "demobank.ping", {"message": "2"}, publisher=PUBLISHER)
    assert _counts(engine) == (2, 4)

    with session_scope(engine) as session:
        session.execute(delete(OutboxEvent).where(OutboxEvent.id == first))
    assert _counts(engine) == (1, 2)
    with session_scope(engine) as session:
        session.execute(delete(EventTarget).where(EventTarget.id == targets["a"]))
    assert _counts(engine) == (1, 1)


def test_one_delivery_per_event_and_target(engine: Engine) -> None:
    targets = _add_targets(engine, ("a", ["*"], True))
    with session_scope(engine) as session:
        event_id = publish(session, "demobank.ping", {"message": "1"}, publisher=PUBLISHER)

    with pytest.raises(IntegrityError), session_scope(engine) as session:
        session.add(EventDelivery(event_id=event_id, target_id=targets["a"]))
    with pytest.raises(IntegrityError), session_scope(engine) as session:
        session.add(EventDelivery(event_id="00000000-0000-7000-8000-000000000000", target_id=targets["a"]))
    with pytest.raises(IntegrityError), session_scope(engine) as session:
        session.execute(EventDelivery.__table__.update().values(status="lost"))
    assert _counts(engine) == (1, 1)


def test_migration_0002_downgrades_and_upgrades(migrated_url: str) -> None:  # noqa: F811
    engine = get_engine(migrated_url)
    event_tables = {"outbox_events", "event_targets", "event_deliveries"}
    assert event_tables <= set(inspect(engine).get_table_names())

    command.downgrade(alembic_config(migrated_url), "0001")
    tables = set(inspect(engine).get_table_names())
    assert not event_tables & tables
    assert {"deliveries", "demo_customers"} <= tables

    upgrade(migrated_url)
    assert event_tables <= set(inspect(engine).get_table_names())
    assert schema_diff(migrated_url) == []


# -- size limits --------------------------------------------------------------------------------------------


def _big_pipeline_run(uris: int) -> dict:
    data = examples("pipeline.run.completed")[0]
    data["assets_read"] = [f"s3://demobank-raw/{index:05d}/" + "x" * 1480 for index in range(uris)]
    return data


def test_event_over_the_default_limit_is_refused(engine: Engine) -> None:
    assert max_event_bytes() == DEFAULT_MAX_EVENT_BYTES == 262_144

    with session_scope(engine) as session:
        with pytest.raises(EventValidationError) as caught:
            publish(session, "pipeline.run.completed", _big_pipeline_run(180), publisher=PUBLISHER)  # ~270 KB
        accepted = publish(session, "pipeline.run.completed", _big_pipeline_run(170), publisher=PUBLISHER)  # ~255 KB

    message = str(caught.value)
    assert "envelope: the event is 27" in message
    assert "over the limit of 262144 bytes (DEMOBANK_EVENT_MAX_BYTES)" in message
    with Session(engine) as session:
        assert session.scalars(select(OutboxEvent.id)).all() == [accepted]
        assert 250_000 < session.scalar(select(OutboxEvent.size_bytes)) <= 262_144


def test_size_limit_is_configurable(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    size = prepare_event("transaction.created", _transaction(), publisher=PUBLISHER).size_bytes
    monkeypatch.setenv(MAX_EVENT_BYTES_ENV, str(size - 1))

    with session_scope(engine) as session, pytest.raises(EventValidationError) as caught:
        publish(session, "transaction.created", _transaction(), publisher=PUBLISHER)

    assert f"the event is {size} bytes as a CloudEvents envelope, over the limit of {size - 1} bytes" in str(
        caught.value
    )
    assert _counts(engine) == (0, 0)

    monkeypatch.setenv(MAX_EVENT_BYTES_ENV, str(size))
    with session_scope(engine) as session:
        publish(session, "transaction.created", _transaction(), publisher=PUBLISHER)
    assert _counts(engine) == (1, 0)


@pytest.mark.parametrize("value", ["lots", "0", "-5", "1.5"])
def test_malformed_size_limit_is_a_configuration_error(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv(MAX_EVENT_BYTES_ENV, value)

    with pytest.raises(ConfigurationError, match=rf"{MAX_EVENT_BYTES_ENV}='{value}' is not a positive whole number"):
        max_event_bytes()


def test_a_matching_targets_smaller_limit_refuses_the_event(engine: Engine) -> None:
    size = prepare_event("transaction.created", _transaction(), publisher=PUBLISHER).size_bytes
    # EventBridge counts Time (14) + Source + DetailType + Detail (the envelope).
    entry = 14 + len("com.demobank") + len("transaction.created") + size
    _add_targets(
        engine,
        ("small-bus", ["transaction.*"], True, {"max_event_bytes": entry - 1}),
        ("small-but-disabled", ["*"], False, {"max_event_bytes": 10}),
        ("small-but-other-types", ["customer.created"], True, {"max_event_bytes": 10}),
    )

    with session_scope(engine) as session, pytest.raises(EventValidationError) as caught:
        publish(session, "transaction.created", _transaction(), publisher=PUBLISHER)

    assert (
        f"the event is {entry} bytes as target 'small-bus' (eventbridge) counts it, over that target's limit of "
        f"{entry - 1} bytes" in str(caught.value)
    )
    assert _counts(engine) == (0, 0)

    with session_scope(engine) as session:
        session.execute(EventTarget.__table__.update().values(config={"max_event_bytes": entry}))
    with session_scope(engine) as session:
        publish(session, "transaction.created", _transaction(), publisher=PUBLISHER)
    assert _counts(engine) == (1, 1)


# -- deliveries per target ----------------------------------------------------------------------------------


def test_deliveries_only_for_enabled_matching_targets(engine: Engine) -> None:
    _add_targets(
        engine,
        ("everything", ["*"], True),
        ("created-only", ["transaction.created"], True),
        ("all-transactions", ["transaction.*"], True),
        ("customers", ["customer.created"], True),
        ("pipelines", ["pipeline.*"], True),
        ("disabled", ["*"], False),
        ("two-types", ["transaction.flagged", "customer.created"], True),
    )
    events = {
        "transaction.created": _transaction(),
        "transaction.flagged": examples("transaction.flagged")[0],
        "customer.created": examples("customer.created")[0],
        "pipeline.run.completed": examples("pipeline.run.completed")[0],
        "demobank.ping": examples("demobank.ping")[0],
    }
    expected = {
        "transaction.created": {"everything", "created-only", "all-transactions"},
        "transaction.flagged": {"everything", "all-transactions", "two-types"},
        "customer.created": {"everything", "customers", "two-types"},
        "pipeline.run.completed": {"everything", "pipelines"},
        "demobank.ping": {"everything"},
    }
    before = datetime.now(UTC) - timedelta(seconds=1)

    with session_scope(engine) as session:
        ids = {event_type: publish(session, event_type, data, publisher=PUBLISHER)
               for event_type, data in events.items()}

    for event_type, event_id in ids.items():
        deliveries = _deliveries(engine, event_id)
        assert set(deliveries) == expected[event_type], event_type
        for delivery in deliveries.values():
            assert (delivery.status, delivery.attempts, delivery.last_error) == ("pending", 0, None)
            assert (delivery.claimed_by, delivery.claimed_until, delivery.delivered_at) == (None, None, None)
            assert before <= delivery.next_attempt_at <= datetime.now(UTC) + timedelta(seconds=1)


def test_no_targets_means_no_deliveries(engine: Engine) -> None:
    with session_scope(engine) as session:
        publish(session, "demobank.ping", {"message": "ping"}, publisher=PUBLISHER)

    assert _counts(engine) == (1, 0)


def test_malformed_target_filter_stops_publishing(engine: Engine) -> None:
    _add_targets(engine, ("broken", "transaction.created", True))  # type: ignore[arg-type]  # a string, not a list

    with session_scope(engine) as session, pytest.raises(ConfigurationError, match=r"'broken'.*malformed event_types"):
        publish(session, "transaction.created", _transaction(), publisher=PUBLISHER)

    assert _counts(engine) == (0, 0)


def test_type_filter_patterns() -> None:
    assert type_matches("*", "transaction.created")
    assert type_matches("transaction.created", "transaction.created")
    assert not type_matches("transaction.created", "transaction.flagged")
    assert type_matches("transaction.*", "transaction.flagged")
    assert not type_matches("transaction.*", "transactions.created")
    assert not type_matches("transaction.*", "transaction")
    assert type_matches("pipeline.*", "pipeline.run.completed")
    assert type_matches("pipeline.run.*", "pipeline.run.completed")
    assert not type_matches("transaction.created", "transaction.created.v2")
    assert filter_matches(["customer.created", "transaction.*"], "transaction.created")
    assert not filter_matches([], "transaction.created")


def test_validate_type_filter() -> None:
    known = ["customer.created", "transaction.created", "transaction.flagged"]

    assert validate_type_filter(["*"]) == ["*"]
    assert validate_type_filter(["transaction.*", "customer.created", "transaction.*"], known) == [
        "transaction.*",
        "customer.created",
    ]
    for bad, fragment in [
        ("*", "non-empty list"),
        ([], "non-empty list"),
        (["Transaction.Created"], "neither '*'"),
        (["transaction*"], "neither '*'"),
        (["*.created"], "neither '*'"),
        ([".*"], "not a prefix pattern"),
        ([7], "not a string"),
        (["transaction.deleted"], "not an event type of the catalog"),
        (["account.*"], "matches no event type"),
    ]:
        with pytest.raises(ValueError, match=fragment):
            validate_type_filter(bad, known)


# -- batches ------------------------------------------------------------------------------------------------


def test_publish_many_writes_500_events_in_order(engine: Engine) -> None:
    ids_by_name = _add_targets(engine, ("everything", ["*"], True), ("transactions", ["transaction.*"], True))
    events = [{"type": "transaction.created", "data": _transaction(index)} for index in range(MAX_BATCH_SIZE - 1)]
    events.append({"type": "demobank.ping", "data": {"message": "last"}, "subject": "batch-end"})

    with session_scope(engine) as session:
        ids = publish_many(session, events, publisher=PUBLISHER)

    assert len(ids) == len(set(ids)) == MAX_BATCH_SIZE
    with Session(engine) as session:
        stored = session.execute(select(OutboxEvent.id, OutboxEvent.subject).order_by(OutboxEvent.sequence)).all()
        per_target = dict(
            session.execute(select(EventDelivery.target_id, func.count()).group_by(EventDelivery.target_id)).all()
        )
    assert [row.id for row in stored] == ids
    assert stored[0].subject == "TXN-000000000000"
    assert stored[-1].subject == "batch-end"
    assert per_target == {ids_by_name["everything"]: 500, ids_by_name["transactions"]: 499}


def test_publish_many_is_all_or_nothing(engine: Engine) -> None:
    _add_targets(engine, ("everything", ["*"], True))
    events = [{"type": "transaction.created", "data": _transaction(index)} for index in range(MAX_BATCH_SIZE)]
    events[17]["data"]["amount"] = "12,50"
    events[250] = {"type": "transaction.create", "data": _transaction(250)}
    events[433]["data"].pop("currency")
    events[499]["colour"] = "blue"

    with session_scope(engine) as session, pytest.raises(EventValidationError) as caught:
        publish_many(session, events, publisher=PUBLISHER)

    message = str(caught.value)
    assert message.startswith("batch of 500 events (4 invalid) refused, nothing was published (4 problems): ")
    assert [problem.path for problem in caught.value.problems] == [
        "events[17].data.amount",
        "events[250].type",
        "events[433].data.currency",
        "events[499].colour",
    ]
    assert "did you mean 'transaction.created'" in message
    assert _counts(engine) == (0, 0)


def test_publish_many_refuses_more_than_500_events(engine: Engine) -> None:
    events = [{"type": "demobank.ping", "data": {"message": "ping"}}] * (MAX_BATCH_SIZE + 1)

    with session_scope(engine) as session, pytest.raises(EventValidationError, match=r"has 501 events.*at most 500"):
        publish_many(session, events, publisher=PUBLISHER)

    assert _counts(engine) == (0, 0)


def test_publish_many_edge_cases(engine: Engine) -> None:
    with session_scope(engine) as session:
        assert publish_many(session, [], publisher=PUBLISHER) == []
        for bad, path in [
            ({"type": "demobank.ping", "data": {}}, "events"),  # a mapping, not a list
            (["not an event"], "events[0]"),
            ([{"type": "demobank.ping"}], "events[0].data"),
            ([{"data": {"message": "ping"}}], "events[0].type"),
        ]:
            with pytest.raises(EventValidationError) as caught:
                publish_many(session, bad, publisher=PUBLISHER)  # type: ignore[arg-type]
            assert [problem.path for problem in caught.value.problems] == [path]

    assert _counts(engine) == (0, 0)


def test_batch_size_limit_problem_names_the_event(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(MAX_EVENT_BYTES_ENV, "1000")
    events = [
        {"type": "demobank.ping", "data": {"message": "small"}},
        {"type": "pipeline.run.completed", "data": _big_pipeline_run(2)},
    ]

    with session_scope(engine) as session, pytest.raises(EventValidationError) as caught:
        publish_many(session, events, publisher=PUBLISHER)

    assert [problem.path for problem in caught.value.problems] == ["events[1].envelope"]
    assert "over the limit of 1000 bytes" in str(caught.value)
    assert _counts(engine) == (0, 0)


# -- idempotency keys ---------------------------------------------------------------------------------------


def test_idempotency_key_publishes_once(engine: Engine) -> None:
    _add_targets(engine, ("everything", ["*"], True))
    data = _transaction()

    with session_scope(engine) as session:
        first = publish(session, "transaction.created", data, idempotency_key="booking-1", publisher=PUBLISHER)
    with session_scope(engine) as session:
        again = publish(session, "transaction.created", data, idempotency_key="booking-1", publisher=PUBLISHER)
        batch = publish_many(
            session,
            [
                {"type": "transaction.created", "data": data, "idempotency_key": "booking-1"},
                {"type": "transaction.created", "data": _transaction(2), "idempotency_key": "booking-2"},
                {"type": "transaction.created", "data": _transaction(2), "idempotency_key": "booking-2"},
            ], publisher=PUBLISHER,
        )

    assert again == first == batch[0]
    assert batch[1] == batch[2] != first
    assert _counts(engine) == (2, 2)


def test_idempotency_key_reused_for_other_data_is_refused(engine: Engine) -> None:
    with session_scope(engine) as session:
        first = publish(session, "transaction.created", _transaction(), idempotency_key="booking-1",
                        publisher=PUBLISHER)

    with session_scope(engine) as session, pytest.raises(EventConflictError) as caught:
        publish(session, "transaction.created", _transaction(amount="43.00"), idempotency_key="booking-1",
                publisher=PUBLISHER)
    assert f"idempotency_key: 'booking-1' was already used by {PUBLISHER} for event {first}" in str(caught.value)

    with session_scope(engine) as session, pytest.raises(EventConflictError) as caught:
        publish_many(
            session,
            [
                {"type": "transaction.created", "data": _transaction(5), "idempotency_key": "booking-5"},
                {"type": "transaction.created", "data": _transaction(6), "idempotency_key": "booking-5"},
            ], publisher=PUBLISHER,
        )
    assert [problem.path for problem in caught.value.problems] == ["events[1].idempotency_key"]

    # The same key for another event type is another event.
    with session_scope(engine) as session:
        other = publish(session, "demobank.ping", {"message": "ping"}, idempotency_key="booking-1", publisher=PUBLISHER)
    assert other != first
    assert _counts(engine) == (2, 0)


# -- publish_now --------------------------------------------------------------------------------------------


def test_publish_now_commits_its_own_transaction(engine: Engine) -> None:
    event_id = publish_now("demobank.ping", {"message": "from a task"}, engine=engine, publisher=PUBLISHER)

    with Session(engine) as session:
        assert session.scalars(select(OutboxEvent.id)).all() == [event_id]

    with pytest.raises(EventValidationError, match=r"data\.message: is missing"):
        publish_now("demobank.ping", {}, engine=engine, publisher=PUBLISHER)
    assert _counts(engine) == (1, 0)


def test_publish_now_uses_the_configured_database(migrated_url: str, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    monkeypatch.setenv("DEMOBANK_DB_URL", migrated_url)

    event_id = publish_now("demobank.ping", {"message": "ping"}, idempotency_key="check-1", publisher=PUBLISHER)

    assert publish_now("demobank.ping", {"message": "ping"}, idempotency_key="check-1", publisher=PUBLISHER) == event_id
    assert _counts(get_engine(migrated_url)) == (1, 0)
