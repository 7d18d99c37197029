"""The event targets' audit trail (``demobank.events.audit``) through the target store, on a migrated SQLite file:
what each change records, that it is written in the change's own transaction, and how it is read."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from demobank.db.engine import get_engine
from demobank.db.models import EventTarget, TargetAuditEntry
from demobank.events import audit, targets
from tests.db.conftest import _isolated_engines, sqlite_url  # noqa: F401 - fixtures (the first autouse)


@pytest.fixture
def engine(sqlite_url: str) -> Iterator[Engine]:  # noqa: F811
    from demobank.db.migrate import upgrade

    upgrade(sqlite_url)
    yield get_engine(sqlite_url)


def bus(name: str = "finance-bus", **changes: Any) -> targets.TargetSpec:
    return targets.TargetSpec.model_validate({"name": name, "event_types": ["transaction.*"],
                                              "config": {"bus_name": "finance-events"}, **changes})


def trail(engine: Engine, target_id: int | None = None) -> list[tuple[str, str, dict[str, Any]]]:
    return [(entry["actor"], entry["action"], entry["details"]) for entry in audit.entries(engine, target_id=target_id)]


def test_each_change_is_recorded_with_its_actor_and_what_changed(engine: Engine) -> None:
    started = datetime.now(UTC)
    created = targets.create_target(engine, bus(), actor="alice")
    targets.update_target(engine, created.id, bus(description="Finance", match={"amount": {">=": "1000"}},
                                                  config={"bus_name": "finance-events", "aws_conn_id": "aws_finance"}),
                          actor="bob")
    targets.update_target(engine, created.id, bus(description="Finance", match={"amount": {">=": "1000"}},
                                                  config={"bus_name": "finance-events", "aws_conn_id": "aws_finance"}),
                          actor="bob")  # nothing changes: nothing recorded
    targets.set_enabled(engine, created.id, False, actor="carol")
    targets.set_enabled(engine, created.id, True, actor="carol")
    event_id = targets.ping(engine, created.id, sent_by="test", publisher="user:dave", actor="dave")

    assert trail(engine, created.id) == [
        ("dave", "pinged", {"event_id": event_id}),
        ("carol", "enabled", {"enabled": {"before": False, "after": True}}),
        ("carol", "disabled", {"enabled": {"before": True, "after": False}}),
        ("bob", "changed", {"changes": {
            "description": {"before": None, "after": "Finance"},
            "match": {"before": None, "after": {"amount": {">=": "1000"}}},
            "config.aws_conn_id": {"before": "aws_default", "after": "aws_finance"}}}),
        ("alice", "created", {"kind": "eventbridge", "description": None, "event_types": ["transaction.*"],
                              "match": None, "enabled": True,
                              "config": {"aws_conn_id": "aws_default", "bus_name": "finance-events"}}),
    ]
    newest = audit.entries(engine, target_id=created.id)[0]
    assert newest["target_name"] == "finance-bus" and newest["target_id"] == created.id
    assert started <= newest["at"] <= datetime.now(UTC)


def test_a_rename_keeps_the_name_at_the_time(engine: Engine) -> None:
    created = targets.create_target(engine, bus(), actor="alice")
    targets.update_target(engine, created.id, bus("treasury-bus"), actor="alice")
    entries = audit.entries(engine, target_id=created.id)
    assert [(entry["action"], entry["target_name"]) for entry in entries] == [("changed", "treasury-bus"),
                                                                             ("created", "finance-bus")]
    assert entries[0]["details"] == {"changes": {"name": {"before": "finance-bus", "after": "treasury-bus"}}}


def test_the_entry_is_written_in_the_changes_transaction(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    """If the entry cannot be written, the change is not made either; a refused change records nothing."""
    created = targets.create_target(engine, bus(), actor="alice")
    with pytest.raises(targets.TargetConflictError):
        targets.create_target(engine, bus(), actor="mallory")  # the name is taken
    other = targets.create_target(engine, bus("other"), actor="alice")
    with pytest.raises(targets.TargetConflictError):
        targets.update_target(engine, other.id, bus(), actor="mallory")

    def broken(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("audit trail unavailable")

    monkeypatch.setattr(audit, "record", broken)
    with pytest.raises(RuntimeError):
        targets.set_enabled(engine, created.id, False, actor="mallory")
    with pytest.raises(RuntimeError):
        targets.update_target(engine, created.id, bus(event_types=["*"]), actor="mallory")
    with pytest.raises(RuntimeError):
        targets.create_target(engine, bus("third"), actor="mallory")
    with pytest.raises(RuntimeError):
        targets.ping(engine, created.id, sent_by="test", publisher="user:mallory", actor="mallory")
    monkeypatch.undo()

    view = targets.get_target(engine, created.id)
    assert (view.enabled, view.event_types, view.deliveries["pending"]) == (True, ["transaction.*"], 0)
    assert [target.name for target in targets.list_targets(engine)] == ["finance-bus", "other"]
    assert {actor for actor, _, _ in trail(engine)} == {"alice"}


def test_the_settings_import_is_recorded_as_such(engine: Engine) -> None:
    assert targets.import_targets(engine, [bus()]) == {"finance-bus": "created"}
    (target,) = targets.list_targets(engine)
    targets.update_target(engine, target.id, bus(event_types=["*"]), actor="alice")
    assert targets.import_targets(engine, [bus()]) == {"finance-bus": "kept"}
    assert targets.import_targets(engine, [bus()], overwrite=True) == {"finance-bus": "updated"}
    assert targets.import_targets(engine, [bus()], overwrite=True) == {"finance-bus": "unchanged"}
    assert [(actor, action) for actor, action, _ in trail(engine)] == [
        ("settings import", "changed"), ("alice", "changed"), ("settings import", "created")]
    assert trail(engine)[0][2] == {"changes": {"event_types": {"before": ["*"], "after": ["transaction.*"]}}}


def test_the_command_line_import_records_settings_import(engine: Engine, tmp_path: Any,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    settings = tmp_path / "settings.yaml"
    settings.write_text("demobank:\n  event_targets:\n    - name: audit-bus\n      config: {bus_name: audit}\n")
    monkeypatch.setenv("DEMOBANK_DB_URL", str(engine.url))
    assert targets.main(["import", str(settings)]) == 0
    assert [(entry["actor"], entry["action"], entry["target_name"]) for entry in audit.entries(engine)] == [
        ("settings import", "created", "audit-bus")]


def test_entries_newest_first_per_target_and_limited(engine: Engine) -> None:
    first = targets.create_target(engine, bus("first"), actor="alice")
    second = targets.create_target(engine, bus("second"), actor="bob")
    for _ in range(3):
        targets.set_enabled(engine, first.id, False, actor="alice")
    assert [entry["target_name"] for entry in audit.entries(engine)] == ["first", "first", "first", "second",
                                                                         "first"]
    assert [entry["action"] for entry in audit.entries(engine, target_id=second.id)] == ["created"]
    assert len(audit.entries(engine, limit=2)) == 2
    for limit in (0, audit.MAX_LIMIT + 1):
        with pytest.raises(ValueError, match="limit"):
            audit.entries(engine, limit=limit)


def test_record_refuses_what_it_cannot_store_meaningfully(engine: Engine) -> None:
    with Session(engine) as session:
        for actor in ("", "   ", None):
            with pytest.raises(ValueError, match="needs the actor"):
                audit.record(session, actor=actor, action="created", target_id=1, target_name="x",  # type: ignore[arg-type]
                             details={})
        with pytest.raises(ValueError, match="at most 250"):
            audit.record(session, actor="x" * 251, action="created", target_id=1, target_name="x", details={})
        with pytest.raises(ValueError, match="unknown audit action 'deleted': use one of created, changed"):
            audit.record(session, actor="alice", action="deleted", target_id=1, target_name="x", details={})
        with pytest.raises(TypeError, match="JSON values"):
            audit.record(session, actor="alice", action="created", target_id=1, target_name="x",
                         details={"what": object()})
        # The actions that the targets' health records, and datetimes as ISO 8601 text.
        moment = datetime(2026, 12, 2, 9, 30, tzinfo=UTC)
        for action in ("requeued", "paused", "resumed"):
            audit.record(session, actor="dispatcher", action=action, target_id=None, target_name="gone",
                         details={"at": moment})
        session.commit()
        assert session.scalar(select(func.count()).select_from(TargetAuditEntry)) == 3
        assert session.scalar(select(func.count()).select_from(EventTarget)) == 0
    assert audit.entries(engine)[0]["details"] == {"at": "2026-12-02T09:30:00+00:00"}


def test_changes_compares_config_per_key() -> None:
    assert audit.changes({"a": 1, "config": {"x": 1, "y": 2}}, {"a": 1, "config": {"y": 3, "z": 4}}) == {
        "config.x": {"before": 1, "after": None}, "config.y": {"before": 2, "after": 3},
        "config.z": {"before": None, "after": 4}}
    assert audit.changes({"match": {"a": 1}}, {"match": {"a": 2}}) == {
        "match": {"before": {"a": 1}, "after": {"a": 2}}}
    assert audit.changes({"a": 1}, {"a": 1}) == {}
