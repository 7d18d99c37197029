"""Target specs, the match filter, seeding from a settings file, and targets in the outbox (filters, test events)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from demobank.db.engine import get_engine, session_scope
from demobank.db.models import EventDelivery, OutboxEvent
from demobank.events import filters, targets
from demobank.events.catalog import examples
from demobank.events.outbox import publish, publish_many
from tests.db.conftest import _isolated_engines, sqlite_url  # noqa: F401 - fixtures

PUBLISHER = "user:test_targets"  # who this module's events and test events are published by

PROJECT = Path(__file__).resolve().parents[2]


@pytest.fixture
def engine(sqlite_url: str) -> Engine:  # noqa: F811
    from demobank.db.migrate import upgrade

    upgrade(sqlite_url)
    return get_engine(sqlite_url)


def transaction(amount: str, **changes: Any) -> dict[str, Any]:
    return {**examples("transaction.created")[0], "amount": amount, **changes}


def spec(**fields: Any) -> targets.TargetSpec:
    return targets.TargetSpec.model_validate({"name": "bus", **fields})


# -- match filter -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("match", "data", "expected"), [
    ({"amount": {">=": "1000"}}, {"amount": "1000.00"}, True),
    ({"amount": {">=": "1000"}}, {"amount": "999.99"}, False),
    ({"amount": {">": 10, "<=": "20"}}, {"amount": "20"}, True),
    ({"amount": {">": 10, "<=": "20"}}, {"amount": "20.01"}, False),
    ({"amount": {">=": "1000"}}, {"amount": "not a number"}, False),
    ({"amount": {">=": "1000"}}, {}, False),
    ({"currency": ["EUR", "USD"]}, {"currency": "USD"}, True),
    ({"currency": ["EUR", "USD"]}, {"currency": "GBP"}, False),
    ({"direction": "debit", "merchant.country": "DE"}, {"direction": "debit", "merchant": {"country": "DE"}}, True),
    ({"direction": "debit", "merchant.country": "DE"}, {"direction": "debit", "merchant": {"country": "FR"}}, False),
    ({"merchant.country": "DE"}, {"merchant": None}, False),
    (None, {"anything": 1}, True),
])
def test_data_matches(match: Any, data: Any, expected: bool) -> None:
    assert filters.data_matches(filters.validate_match(match), data) is expected


@pytest.mark.parametrize(("match", "names"), [
    ([1, 2], "must be an object"),
    ({"amount": {"~": "1"}}, "unknown comparison '~'"),
    ({"amount": {">=": "lots"}}, "'lots' is not a number"),
    ({"amount": {}}, "an empty comparison"),
    ({"bad field!": "x"}, "a field is a name or a dotted path"),
    ({"currency": []}, "must be non-empty"),
    ({"currency": {"nested": "object"}}, "unknown comparison 'nested'"),
])
def test_a_bad_match_is_refused_naming_the_condition(match: Any, names: str) -> None:
    with pytest.raises(ValueError, match=r"invalid match filter|must be an object") as caught:
        filters.validate_match(match)
    assert names in str(caught.value)


# -- specs ------------------------------------------------------------------------------------------------------


def test_a_spec_fills_in_the_kinds_defaults() -> None:
    assert spec().config == {"aws_conn_id": "aws_default", "bus_name": "demobank-events"}
    assert spec(kind="airflow_dag", config={"dag_id": "connect_transaction_alert"}).config == {
        "dag_id": "connect_transaction_alert"}


@pytest.mark.parametrize(("fields", "names"), [
    ({"config": {"bus_name": "has space"}}, "config.bus_name"),
    ({"config": {"region_name": "Europe"}}, "config.region_name"),
    ({"config": {"max_event_bytes": 300_000}}, "config.max_event_bytes"),
    ({"config": {"bucket": "x"}}, "config.bucket"),
    ({"kind": "webhook"}, "kind"),
    ({"kind": "airflow_dag"}, "config.dag_id"),
    ({"event_types": ["transaction.deleted"]}, "not an event type of the catalog"),
    ({"event_types": []}, "non-empty list"),
    ({"name": "no/slash"}, "name"),
    ({"match": {"amount": {">=": "x"}}}, "match"),
])
def test_a_bad_spec_is_refused_naming_the_field(fields: dict[str, Any], names: str) -> None:
    with pytest.raises((ValidationError, targets.TargetError)) as caught:
        spec(**fields)
    message = (targets.describe_validation_error(caught.value) if isinstance(caught.value, ValidationError)
               else str(caught.value))
    assert names in message


# -- management -------------------------------------------------------------------------------------------------


def test_create_edit_disable_and_name_conflicts(engine: Engine) -> None:
    created = targets.create_target(engine, spec(event_types=["transaction.*"]), actor="test")
    assert created.deliveries == {"pending": 0, "delivered": 0, "dead": 0} and created.enabled
    with pytest.raises(targets.TargetConflictError, match="already exists"):
        targets.create_target(engine, spec(), actor="test")
    other = targets.create_target(engine, spec(name="other"), actor="test")
    with pytest.raises(targets.TargetConflictError, match="already exists"):
        targets.update_target(engine, other.id, spec(), actor="test")
    edited = targets.update_target(engine, created.id, spec(config={"bus_name": "finance-events"}), actor="test")
    assert edited.config["bus_name"] == "finance-events" and edited.event_types == ["*"]
    assert not targets.set_enabled(engine, created.id, False, actor="test").enabled
    with pytest.raises(targets.TargetNotFoundError, match="does not exist"):
        targets.get_target(engine, 999)
    assert [view.name for view in targets.list_targets(engine)] == ["bus", "other"]


def test_seeding_from_the_project_settings_creates_missing_targets_and_keeps_edits(engine: Engine,
                                                                                   monkeypatch) -> None:
    monkeypatch.setenv("DEMOBANK_ALERT_THRESHOLD", "2500")
    specs = targets.specs_from_settings(PROJECT / "airflow_settings.yaml")
    assert {s.name: s.kind for s in specs} == {"demobank-events-bus": "eventbridge",
                                               "connect-transaction-alerts": "airflow_dag"}
    alerts = next(s for s in specs if s.kind == "airflow_dag")
    assert alerts.match == {"amount": {">=": "2500"}}
    assert targets.import_targets(engine, specs) == {"demobank-events-bus": "created",
                                                     "connect-transaction-alerts": "created"}
    bus = next(view for view in targets.list_targets(engine) if view.kind == "eventbridge")
    targets.set_enabled(engine, bus.id, False, actor="test")
    assert targets.import_targets(engine, specs)["demobank-events-bus"] == "kept"
    assert not targets.get_target(engine, bus.id).enabled
    assert targets.import_targets(engine, specs, overwrite=True)["demobank-events-bus"] == "updated"
    assert targets.get_target(engine, bus.id).enabled


def test_a_bad_settings_file_names_the_entry_and_field(tmp_path: Path) -> None:
    path = tmp_path / "settings.yaml"
    path.write_text("demobank:\n  event_targets:\n    - name: a\n      config: {bus_name: 'bad name'}\n"
                    "    - name: b\n      kind: airflow_dag\n")
    with pytest.raises(targets.TargetError) as caught:
        targets.specs_from_settings(path)
    assert "demobank.event_targets[0]" in str(caught.value) and "config.bus_name" in str(caught.value)
    assert "demobank.event_targets[1]" in str(caught.value) and "config.dag_id" in str(caught.value)


def test_the_cli_imports_and_lists(engine: Engine, sqlite_url: str, monkeypatch, capsys) -> None:  # noqa: F811
    monkeypatch.setenv("DEMOBANK_DB_URL", sqlite_url)
    assert targets.main(["import", str(PROJECT / "airflow_settings.yaml")]) == 0
    assert targets.main(["list"]) == 0
    output = capsys.readouterr().out
    assert "'demobank-events-bus': created" in output and "connect-transaction-alerts\tairflow_dag\tenabled" in output


# -- targets in the outbox --------------------------------------------------------------------------------------


def deliveries(engine: Engine) -> dict[int, int]:
    with Session(engine) as session:
        return dict(session.execute(select(EventDelivery.target_id, func.count()).group_by(EventDelivery.target_id)
                                    ).all())


def test_the_match_filter_decides_which_events_a_target_receives(engine: Engine) -> None:
    everything = targets.create_target(engine, spec(name="everything"), actor="test")
    large = targets.create_target(engine, spec(name="large", event_types=["transaction.created"],
                                               match={"amount": {">=": "1000"}}), actor="test")
    with session_scope(engine) as session:
        publish_many(session, [{"type": "transaction.created", "data": transaction(amount)}
                               for amount in ("999.99", "1000", "25000.50")], publisher=PUBLISHER)
    assert deliveries(engine) == {everything.id: 3, large.id: 2}


def test_a_test_event_goes_to_one_target_only_and_a_disabled_target_refuses_it(engine: Engine) -> None:
    first = targets.create_target(engine, spec(name="first"), actor="test")
    second = targets.create_target(engine, spec(name="second", event_types=["customer.created"]), actor="test")
    event_id = targets.ping(engine, second.id, sent_by="test", publisher=PUBLISHER, actor="test")
    with Session(engine) as session:
        assert session.scalars(select(EventDelivery.target_id).where(EventDelivery.event_id == event_id)).all() == [
            second.id]
        assert session.scalar(select(OutboxEvent.type).where(OutboxEvent.id == event_id)) == "demobank.ping"
    targets.set_enabled(engine, first.id, False, actor="test")
    with pytest.raises(targets.TargetConflictError, match="is disabled: enable it"):
        targets.ping(engine, first.id, sent_by="test", publisher=PUBLISHER, actor="test")
    with session_scope(engine) as session:
        publish(session, "demobank.ping", {"message": "to every enabled target whose filter selects it"},
                publisher=PUBLISHER)
    assert deliveries(engine) == {second.id: 1}  # first is disabled; second's filter takes customer.created only
