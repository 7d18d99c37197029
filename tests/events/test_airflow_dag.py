"""``airflow_dag`` targets: one DAG run per event, deterministic run ids, bad events dead-lettered with the reason,
Airflow refusing as a target error; and the transaction alert's conf built from a ``transaction.created`` event."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from demobank.connect.alerts import alert_conf_from_event
from demobank.db.engine import get_engine, session_scope
from demobank.db.models import EventDelivery
from demobank.events import targets
from demobank.events.airflow_dag import AirflowDagPublisher, NoRunNeeded, conf_builder_for, run_id_for, trigger_in_task
from demobank.events.catalog import examples
from demobank.events.dispatcher import Target, dispatch_until_empty
from demobank.events.eventbridge import Delivered, Failed
from demobank.events.outbox import publish_many
from demobank.events.tasks import TargetsUnreachableError, dispatch_pending
from tests.db.conftest import _isolated_engines, sqlite_url  # noqa: F401 - fixtures

PUBLISHER = "dag:test_airflow_dag"  # who this module's events are published by

CONTACTS = {"CUST-00042": ("+14155550142", "jane.doe@example.com"), "CUST-BADPHONE": ("+1 415 000 0000", "b@x.example")}


def envelope(amount: str = "2500.00", **data: Any) -> dict[str, Any]:
    return {"id": f"0190-{amount}", "type": "transaction.created",
            "data": {**examples("transaction.created")[0], "amount": amount, **data}}


class RecordingTrigger:
    """Stands in for Airflow's execution API: remembers run ids; a second trigger of one id finds the run."""

    def __init__(self, fail_with: Exception | None = None) -> None:
        self.runs: dict[str, tuple[str, dict[str, Any]]] = {}
        self.fail_with = fail_with

    def __call__(self, dag_id: str, run_id: str, conf: dict[str, Any]) -> bool:
        if self.fail_with is not None:
            raise self.fail_with
        if run_id in self.runs:
            return False
        self.runs[run_id] = (dag_id, conf)
        return True


def alert_publisher(trigger: RecordingTrigger) -> AirflowDagPublisher:
    return AirflowDagPublisher("connect_transaction_alert", trigger=trigger,
                               conf_builder=lambda env: alert_conf_from_event(env, CONTACTS.get))


def test_the_alert_conf_comes_from_the_event_and_carries_no_contact_details() -> None:
    conf = alert_conf_from_event(envelope("1234.50"), CONTACTS.get)
    merchant = examples("transaction.created")[0]["merchant"]["name"]
    assert conf == {"customer_id": "CUST-00042", "amount": 1234.5, "currency": "EUR", "merchant": merchant}


@pytest.mark.parametrize(("event", "reason"), [
    (envelope(customer_id="CUST-BADPHONE"), "phone = '\\+1\\*+0000' \\(masked"),
    (envelope(currency="XAU"), "currency"),
    ({**envelope(), "type": "customer.created"}, "started by transaction.created events"),
])
def test_an_event_that_cannot_make_an_alert_says_why(event: dict[str, Any], reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        alert_conf_from_event(event, CONTACTS.get)


def test_a_customer_not_enrolled_in_alerts_gets_no_run_and_no_dead_letter() -> None:
    with pytest.raises(NoRunNeeded, match="customer CUST-99999 is not enrolled in transaction alerts"):
        alert_conf_from_event(envelope(customer_id="CUST-99999"), CONTACTS.get)
    trigger = RecordingTrigger()
    result = alert_publisher(trigger).publish([{**envelope(customer_id="CUST-99999"), "id": "e-not-enrolled"}])
    assert result["e-not-enrolled"] == Delivered("no run: customer CUST-99999 is not enrolled in transaction alerts "
                                                 "(no phone and e-mail on record)")
    assert trigger.runs == {}


def test_the_alert_conf_builder_is_registered_by_connect_not_known_to_events() -> None:
    assert conf_builder_for("connect_transaction_alert") is alert_conf_from_event
    assert conf_builder_for("some_other_dag") is None
    assert AirflowDagPublisher("some_other_dag").conf_builder({"id": "e1", "type": "x"}) == {
        "event": {"id": "e1", "type": "x"}}


def test_one_run_per_event_and_a_redelivered_event_starts_nothing() -> None:
    trigger = RecordingTrigger()
    publisher = alert_publisher(trigger)
    first = publisher.publish([envelope("2500.00"), envelope("3000.00")])
    assert first.delivered == {"0190-2500.00": run_id_for("0190-2500.00"), "0190-3000.00": run_id_for("0190-3000.00")}
    again = publisher.publish([envelope("2500.00")])
    assert isinstance(again["0190-2500.00"], Delivered) and len(trigger.runs) == 2
    dag_id, conf = trigger.runs["event__0190-3000.00"]
    assert dag_id == "connect_transaction_alert" and conf["amount"] == 3000.0


def test_a_bad_event_fails_permanently_and_airflow_refusing_is_a_target_error() -> None:
    result = alert_publisher(RecordingTrigger()).publish([envelope(customer_id="CUST-BADPHONE")])
    failed = result["0190-2500.00"]
    assert isinstance(failed, Failed) and not failed.transient and "is not an E.164 number" in failed.message
    refused = alert_publisher(RecordingTrigger(RuntimeError("DAG connect_transaction_alert not found"))).publish(
        [envelope()])["0190-2500.00"]
    assert isinstance(refused, Failed) and refused.target_error and "not found" in refused.message


def test_outside_an_airflow_task_no_run_can_be_started() -> None:
    with pytest.raises(RuntimeError, match="only inside an Airflow task"):
        trigger_in_task("connect_transaction_alert", "event__x", {})


def test_other_dags_receive_the_whole_envelope() -> None:
    trigger = RecordingTrigger()
    AirflowDagPublisher("audit_dag", trigger=trigger).publish([envelope()])
    assert trigger.runs["event__0190-2500.00"] == ("audit_dag", {"event": envelope()})


# -- through the dispatcher ---------------------------------------------------------------------------------------


@pytest.fixture
def engine(sqlite_url: str) -> Engine:  # noqa: F811
    from demobank.db.migrate import upgrade

    upgrade(sqlite_url)
    return get_engine(sqlite_url)


def test_large_transactions_start_alerts_and_a_replay_starts_no_second_one(engine: Engine) -> None:
    alerts = targets.create_target(engine, targets.TargetSpec(
        name="alerts", kind="airflow_dag", event_types=["transaction.created"], match={"amount": {">=": "1000"}},
        config={"dag_id": "connect_transaction_alert"}), actor="test")
    with session_scope(engine) as session:
        ids = publish_many(session, [
            {"type": "transaction.created", "data": {**examples("transaction.created")[0], "amount": amount,
                                                     "customer_id": customer}}
            for amount, customer in (("999.99", "CUST-00042"), ("1000", "CUST-00042"), ("5000", "CUST-BADPHONE"),
                                     ("7000", "CUST-77777"))],
            publisher=PUBLISHER)
    trigger = RecordingTrigger()

    def factory(target: Target) -> AirflowDagPublisher:
        return alert_publisher(trigger)

    report = dispatch_until_empty(engine, "w", factory)
    assert (report.delivered, report.dead) == (2, 1)  # the one not enrolled in alerts is done without a run
    assert list(trigger.runs) == [run_id_for(ids[1])]
    with Session(engine) as session:
        dead = session.scalar(select(EventDelivery.last_error).where(EventDelivery.event_id == ids[2]))
        skipped = session.scalar(select(EventDelivery.external_id).where(EventDelivery.event_id == ids[3]))
    assert "CUST-BADPHONE" in dead and "alerts" in dead and "+1 415" not in dead
    assert skipped.startswith("no run: customer CUST-77777 is not enrolled")
    from datetime import UTC, datetime, timedelta

    from demobank.events.replay import replay
    now = datetime.now(UTC)
    # The replay keeps to the target's filter: the 999.99 transaction is not replayed to the alerts.
    assert replay(engine, alerts.id, "transaction.created", now - timedelta(hours=1), now + timedelta(hours=1)) == 3
    dispatch_until_empty(engine, "w", factory)
    assert list(trigger.runs) == [run_id_for(ids[1])], "a replayed event found its run: no second alert"


def test_dispatch_pending_serves_every_target_then_fails_naming_the_unreachable_one(engine: Engine) -> None:
    targets.create_target(engine, targets.TargetSpec(name="alerts", kind="airflow_dag",
                                                     config={"dag_id": "audit_dag"}), actor="test")
    with session_scope(engine) as session:
        publish_many(session, [{"type": "demobank.ping", "data": {"message": "hello"}}], publisher=PUBLISHER)
    with pytest.raises(TargetsUnreachableError, match=r"'alerts'.*only inside an Airflow task"):
        dispatch_pending("test", engine=engine)
    with Session(engine) as session:
        assert session.scalars(select(EventDelivery.status)).all() == ["pending"]
