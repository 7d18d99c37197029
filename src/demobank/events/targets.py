"""Event targets: what they are (validated specs), where they come from, and how they are managed.

A target is a destination plus a filter: ``event_types`` and, optionally, ``match`` conditions on the event's data
(see :mod:`demobank.events.filters`). Kinds:

* ``eventbridge``: an AWS EventBridge bus (``aws_conn_id``, ``bus_name``, ``region_name``, ``max_event_bytes``).
* ``airflow_dag``: starts a DAG run per event (``dag_id``): how a large ``transaction.created`` starts
  ``connect_transaction_alert`` (see :mod:`demobank.events.airflow_dag`).

Targets are managed through the plugin's Targets tab and ``/demobank/api/v1/targets`` (both call the functions
here), and seeded from the ``demobank.event_targets`` list of ``airflow_settings.yaml``
(``python -m demobank.events.targets import airflow_settings.yaml``: creates the targets missing by name and keeps
existing ones as edited; ``--overwrite`` resets them to the file).

Every change names its actor (the signed-in user, or ``settings import``) and is recorded in the targets' audit trail
(:mod:`demobank.events.audit`) in the same transaction.

A disabled target receives no deliveries for events published while it is disabled (replay them after enabling it);
deliveries queued before it was disabled wait until it is enabled again.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator
from sqlalchemy import Engine, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from demobank.db.models import EventDelivery, EventDeliveryStatus, EventTarget, TargetKind
from demobank.events import audit
from demobank.events.backlog import Backlog, backlog_of
from demobank.events.filters import check_type_filter_size, validate_match, validate_type_filter
from demobank.events.target_health import TargetHealth, clear_streak, health_of
from demobank.exceptions import DemoBankError
from demobank.limits import limited

DEFAULT_BUS_NAME = "demobank-events"
"""The bus of an EventBridge target whose config names none."""

DEFAULT_AWS_CONN_ID = "aws_default"
"""The AWS connection of an EventBridge target whose config names none."""

EVENTBRIDGE_MAX_ENTRY_BYTES = 256 * 1024
"""EventBridge's limit for one entry (and one PutEvents request)."""

PING_EVENT_TYPE = "demobank.ping"

_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9 _.-]{0,99}$"


class TargetError(DemoBankError):
    """A target operation was refused; the message says why and what to do."""


class TargetNotFoundError(TargetError, LookupError):
    """No target has this id or name."""


class TargetConflictError(TargetError):
    """The operation conflicts with the target's state or another target (e.g. a name already in use)."""


# -- kinds' settings ---------------------------------------------------------------------------------------------


class EventBridgeSettings(BaseModel):
    """``config`` of an ``eventbridge`` target."""

    model_config = ConfigDict(extra="forbid")

    aws_conn_id: Annotated[str, Field(min_length=1, max_length=250)] = DEFAULT_AWS_CONN_ID
    bus_name: Annotated[str, Field(min_length=1, max_length=256, pattern=r"^[/.\-_A-Za-z0-9]+$")] = DEFAULT_BUS_NAME
    region_name: Annotated[str | None, Field(pattern=r"^[a-z]{2}(-[a-z]+)+-\d+$")] = None
    max_event_bytes: Annotated[int | None, Field(gt=0, le=EVENTBRIDGE_MAX_ENTRY_BYTES)] = None


class AirflowDagSettings(BaseModel):
    """``config`` of an ``airflow_dag`` target: the DAG each event starts a run of."""

    model_config = ConfigDict(extra="forbid")

    dag_id: Annotated[str, Field(min_length=1, max_length=250, pattern=r"^[A-Za-z0-9_.-]+$")]


SETTINGS_BY_KIND: dict[str, type[BaseModel]] = {
    TargetKind.EVENTBRIDGE.value: EventBridgeSettings,
    TargetKind.AIRFLOW_DAG.value: AirflowDagSettings,
}


def settings_of(kind: str, config: Mapping[str, Any] | None) -> BaseModel:
    """A target's config, validated and with defaults filled in, as its kind's settings model."""
    model = SETTINGS_BY_KIND.get(kind)
    if model is None:
        raise TargetError(f"unknown target kind {kind!r}: use one of {', '.join(SETTINGS_BY_KIND)}")
    return model.model_validate(dict(config or {}))


# -- specs -------------------------------------------------------------------------------------------------------


class TargetSpec(BaseModel):
    """A target as users write it (API body, Targets tab form, ``airflow_settings.yaml``).

    ``event_types`` and ``match`` are bounded (see :mod:`demobank.events.filters` and :mod:`demobank.limits`).
    """

    model_config = ConfigDict(extra="forbid")

    name: Annotated[str, Field(pattern=_NAME_PATTERN, description="Unique; letters, digits, space, _ . -")]
    kind: Literal["eventbridge", "airflow_dag"] = "eventbridge"
    description: Annotated[str | None, Field(max_length=500)] = None
    event_types: list[str] = Field(default_factory=lambda: ["*"])
    match: dict[str, Any] | None = None
    enabled: bool = True
    config: dict[str, Any] = Field(default_factory=dict, validate_default=True)

    @field_validator("event_types", mode="before")
    @classmethod
    def _bounded_types(cls, patterns: Any) -> Any:
        check_type_filter_size(patterns)  # before pydantic checks each item: a huge list costs one message
        return patterns

    @field_validator("event_types")
    @classmethod
    def _known_types(cls, patterns: list[str]) -> list[str]:
        from demobank.events.catalog import event_types

        return validate_type_filter(patterns, event_types())

    @field_validator("match")
    @classmethod
    def _valid_match(cls, match: dict[str, Any] | None) -> dict[str, Any] | None:
        return validate_match(match)

    @field_validator("config")
    @classmethod
    def _valid_config(cls, config: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        kind = info.data.get("kind")
        if kind is None:  # the kind itself is invalid: reported on its own
            return config
        try:
            # Stored as given plus defaults, so that what the page shows is what the dispatcher uses.
            return settings_of(kind, config).model_dump(exclude_none=True)
        except ValidationError as error:
            raise ValueError("; ".join(f"config.{'.'.join(map(str, item['loc']))}: {item['msg']}"
                                       for item in error.errors())) from None


class TargetView(BaseModel):
    """A target as the API and the tab show it, with its deliveries per status and its latest error."""

    id: int
    name: str
    kind: str
    description: str | None
    event_types: list[str]
    match: dict[str, Any] | None
    enabled: bool
    config: dict[str, Any]
    created_at: datetime
    updated_at: datetime
    deliveries: dict[str, int]
    last_error: str | None = None
    health: TargetHealth | None = None
    """Failure streak, backoff, pause and dead letters (see :mod:`demobank.events.target_health`)."""
    backlog: Backlog | None = None
    """Pending deliveries, delivery rate of the last 5 minutes, age of the oldest pending event (see
    :mod:`demobank.events.backlog`)."""


def validation_problems(error: ValidationError, what: str = "target") -> list[dict[str, str]]:
    """Each problem of a pydantic error as ``{"path", "message"}`` (``config.bus_name``, ``String should match …``)."""
    problems = []
    for item in error.errors():
        path = ".".join(str(part) for part in item["loc"]) or what
        message = item["msg"].removeprefix("Value error, ")
        # The config's own problems carry their full paths already (config.bus_name: ...; config.region_name: ...).
        if path == "config" and message.startswith("config."):
            for part in message.split("; config."):
                inner, _, text = part.removeprefix("config.").partition(": ")
                problems.append({"path": f"config.{inner}", "message": text})
            continue
        problems.append({"path": path, "message": message})
    return problems


def describe_validation_error(error: ValidationError, what: str = "target") -> str:
    """One sentence per problem of a pydantic error: ``config.bus_name: String should match …``; at most
    ``DEMOBANK_API_MAX_PROBLEMS`` (100) of them, then how many more there are."""
    shown, more = limited(validation_problems(error, what))
    text = f"invalid {what}: " + "; ".join(f"{problem['path']}: {problem['message']}" for problem in shown)
    return text + (f"; and {more} more" if more else "")


# -- storage -----------------------------------------------------------------------------------------------------


def _counts(session: Session, target_ids: Sequence[int]) -> dict[int, dict[str, int]]:
    counts = {target_id: dict.fromkeys((status.value for status in EventDeliveryStatus), 0)
              for target_id in target_ids}
    if not target_ids:
        return counts
    for target_id, status, count in session.execute(
            select(EventDelivery.target_id, EventDelivery.status, func.count())
            .where(EventDelivery.target_id.in_(target_ids))
            .group_by(EventDelivery.target_id, EventDelivery.status)):
        counts[target_id][status] = count
    return counts


def _last_errors(session: Session, target_ids: Sequence[int]) -> dict[int, str]:
    """The most recent error of each target's deliveries that are not delivered (pending or dead)."""
    errors: dict[int, str] = {}
    if not target_ids:
        return errors
    rows = session.execute(
        select(EventDelivery.target_id, EventDelivery.last_error)
        .where(EventDelivery.target_id.in_(target_ids), EventDelivery.last_error.is_not(None),
               EventDelivery.status != EventDeliveryStatus.DELIVERED.value)
        .order_by(EventDelivery.target_id, EventDelivery.updated_at.desc())
    )
    for target_id, message in rows:
        errors.setdefault(target_id, message)
    return errors


def _view(row: EventTarget, counts: dict[str, int], last_error: str | None,
          health: TargetHealth | None = None, backlog: Backlog | None = None) -> TargetView:
    return TargetView(id=row.id, name=row.name, kind=row.kind, description=row.description,
                      event_types=list(row.event_types or []), match=row.match, enabled=row.enabled,
                      config=dict(row.config or {}), created_at=row.created_at, updated_at=row.updated_at,
                      deliveries=counts, last_error=last_error, health=health, backlog=backlog)


def list_targets(engine: Engine, *, now: datetime | None = None) -> list[TargetView]:
    """Every target, by id, with its delivery counts, latest error, health and backlog.

    :param now: the time of the backlog's figures (default: now).
    """
    with Session(engine) as session:
        rows = list(session.scalars(select(EventTarget).order_by(EventTarget.id)))
        ids = [row.id for row in rows]
        counts, errors, health = _counts(session, ids), _last_errors(session, ids), health_of(session, ids)
        backlog = backlog_of(session, ids, now=now)
        return [_view(row, counts[row.id], errors.get(row.id), health[row.id], backlog[row.id]) for row in rows]


def _get(session: Session, target_id: int) -> EventTarget:
    row = session.get(EventTarget, target_id)
    if row is None:
        raise TargetNotFoundError(f"event target {target_id} does not exist: list the targets to find its id")
    return row


def get_target(engine: Engine, target_id: int, *, now: datetime | None = None) -> TargetView:
    """One target with its delivery counts, latest error, health and backlog (as of ``now``, default now)."""
    with Session(engine) as session:
        row = _get(session, target_id)
        return _view(row, _counts(session, [row.id])[row.id], _last_errors(session, [row.id]).get(row.id),
                     health_of(session, [row.id])[row.id], backlog_of(session, [row.id], now=now)[row.id])


def _name_taken(name: str) -> TargetConflictError:
    return TargetConflictError(f"an event target named {name!r} already exists: choose another name or edit that one")


_DEFINITION_FIELDS = ("name", "kind", "description", "event_types", "match", "enabled", "config")


def _definition(row: EventTarget) -> dict[str, Any]:
    """A stored target's definition, as a spec has it (for the audit trail's before/after)."""
    return {field: getattr(row, field) for field in _DEFINITION_FIELDS}


def create_target(engine: Engine, spec: TargetSpec, *, actor: str) -> TargetView:
    """Add a target; it receives the events published from now on (replay for earlier ones).

    :param actor: who adds it (recorded in the audit trail).
    """
    with Session(engine) as session:
        if session.scalar(select(EventTarget.id).where(EventTarget.name == spec.name)) is not None:
            raise _name_taken(spec.name)
        row = EventTarget(**spec.model_dump())
        session.add(row)
        try:
            session.flush()
            target_id = row.id
            audit.record(session, actor=actor, action="created", target_id=target_id, target_name=spec.name,
                         details=spec.model_dump(exclude={"name"}))
            session.commit()
        except IntegrityError as error:
            raise _name_taken(spec.name) from error
    return get_target(engine, target_id)


def update_target(engine: Engine, target_id: int, spec: TargetSpec, *, actor: str) -> TargetView:
    """Replace a target's definition (its deliveries stay; pending ones go to the new destination).

    :param actor: who changes it; the audit trail records the changed fields, before and after (a save that changes
        nothing records nothing).
    """
    with Session(engine) as session:
        row = _get(session, target_id)
        other = session.scalar(select(EventTarget.id).where(EventTarget.name == spec.name, EventTarget.id != target_id))
        if other is not None:
            raise _name_taken(spec.name)
        before = _definition(row)
        for key, value in spec.model_dump().items():
            setattr(row, key, value)
        changed = audit.changes(before, spec.model_dump())
        if changed:
            audit.record(session, actor=actor, action="changed", target_id=target_id, target_name=spec.name,
                         details={"changes": changed})
        session.commit()
    return get_target(engine, target_id)


def set_enabled(engine: Engine, target_id: int, enabled: bool, *, actor: str) -> TargetView:
    """Enable or disable a target (a disabled one gets no new deliveries; queued ones wait). Enabling also resumes
    a paused target and forgets its failure streak.

    :param actor: who does it (recorded as ``enabled`` or ``disabled``, with the state before, and whether enabling
        resumed a paused target).
    """
    with Session(engine) as session:
        row = _get(session, target_id)
        details: dict[str, Any] = {"enabled": {"before": row.enabled, "after": enabled}}
        row.enabled = enabled
        if enabled and clear_streak(session, target_id):
            details["resumed"] = True
        audit.record(session, actor=actor, action="enabled" if enabled else "disabled", target_id=target_id,
                     target_name=row.name, details=details)
        session.commit()
    return get_target(engine, target_id)


def import_targets(engine: Engine, specs: Sequence[TargetSpec], *, overwrite: bool = False,
                   actor: str = audit.SETTINGS_IMPORT_ACTOR) -> dict[str, str]:
    """Seed targets by name: create the missing ones; existing ones are kept as they are (edits made in the Targets
    page survive a restart) unless ``overwrite``. What it creates or changes is recorded in the audit trail as
    ``actor`` (``settings import``).

    :return: ``{name: "created" | "updated" | "unchanged" | "kept"}``.
    """
    outcome: dict[str, str] = {}
    with Session(engine) as session, session.begin():
        for spec in specs:
            values = spec.model_dump()
            row = session.scalar(select(EventTarget).where(EventTarget.name == spec.name))
            if row is None:
                row = EventTarget(**values)
                session.add(row)
                session.flush()
                audit.record(session, actor=actor, action="created", target_id=row.id, target_name=spec.name,
                             details=spec.model_dump(exclude={"name"}))
                outcome[spec.name] = "created"
            elif not overwrite:
                outcome[spec.name] = "kept"
            elif changed := audit.changes(_definition(row), values):
                for key, value in values.items():
                    setattr(row, key, value)
                audit.record(session, actor=actor, action="changed", target_id=row.id, target_name=spec.name,
                             details={"changes": changed})
                outcome[spec.name] = "updated"
            else:
                outcome[spec.name] = "unchanged"
    return outcome


def ping(engine: Engine, target_id: int, sent_by: str, *, publisher: str, actor: str) -> str:
    """Queue a ``demobank.ping`` test event for this one target; return its event id.

    :param sent_by: where it was sent from, for the event's ``sent_by`` (e.g. ``targets page``).
    :param publisher: who sends it, ``user:<name>`` (see :func:`demobank.events.outbox.user_publisher`).
    :param actor: who sends it, for the audit trail (recorded as ``pinged`` with the event's id).
    :raises TargetConflictError: the target is disabled (enable it first: a disabled target is not dispatched).
    """
    from demobank.events.outbox import publish

    with Session(engine) as session, session.begin():
        row = _get(session, target_id)
        if not row.enabled:
            raise TargetConflictError(f"event target {row.name!r} is disabled: enable it, then send the test event")
        event_id = publish(session, PING_EVENT_TYPE,
                           {"message": f"ping to target {row.name}", "sent_by": sent_by[:100]},
                           publisher=publisher, only_target_id=target_id)
        audit.record(session, actor=actor, action="pinged", target_id=target_id, target_name=row.name,
                     details={"event_id": event_id})
        return event_id


def deliveries_of(engine: Engine, target_id: int, status: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
    """The latest deliveries of a target (newest event first), for the tab and the API."""
    from demobank.db.models import OutboxEvent

    with Session(engine) as session:
        _get(session, target_id)
        query = (select(EventDelivery, OutboxEvent.type, OutboxEvent.subject, OutboxEvent.time, OutboxEvent.publisher)
                 .join(OutboxEvent, OutboxEvent.id == EventDelivery.event_id)
                 .where(EventDelivery.target_id == target_id)
                 .order_by(OutboxEvent.sequence.desc()).limit(limit))
        if status is not None:
            query = query.where(EventDelivery.status == status)
        return [{"event_id": delivery.event_id, "type": event_type, "subject": subject, "time": time,
                 "publisher": publisher,
                 "status": delivery.status, "attempts": delivery.attempts, "last_error": delivery.last_error,
                 "next_attempt_at": delivery.next_attempt_at, "delivered_at": delivery.delivered_at,
                 "external_id": delivery.external_id}
                for delivery, event_type, subject, time, publisher in session.execute(query)]


# -- seeding from airflow_settings.yaml --------------------------------------------------------------------------


def specs_from_settings(path: Path | str) -> list[TargetSpec]:
    """The ``demobank.event_targets`` list of a settings file (``${NAME:-default}`` expanded), validated."""
    import yaml

    from demobank.settings_import import SettingsFileError, expand_env

    document = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    try:
        entries = expand_env(((document.get("demobank") or {}).get("event_targets")) or [],
                             where=f"{path}: demobank.event_targets")
    except SettingsFileError as error:
        raise TargetError(str(error)) from error
    if not isinstance(entries, list):
        raise TargetError(f"{path}: demobank.event_targets must be a list of targets")
    specs, problems = [], []
    for index, entry in enumerate(entries):
        try:
            specs.append(TargetSpec.model_validate(entry))
        except ValidationError as error:
            problems.append(describe_validation_error(error, f"demobank.event_targets[{index}]"))
    if problems:
        raise TargetError(f"{path}: " + " | ".join(problems))
    names = [spec.name for spec in specs]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise TargetError(f"{path}: demobank.event_targets names {', '.join(duplicates)} more than once")
    return specs


def _import_command(args: argparse.Namespace) -> int:
    from demobank.db.engine import get_engine

    specs = specs_from_settings(args.settings_file)
    for name, what in import_targets(get_engine(), specs, overwrite=args.overwrite).items():
        print(f"event target {name!r}: {what}")
    return 0


def _list_command(args: argparse.Namespace) -> int:
    from demobank.db.engine import get_engine

    print("id\tname\tkind\tstate\thealth\tevent types\tdeliveries")
    for view in list_targets(get_engine()):
        state = "enabled" if view.enabled else "disabled"
        health = view.health or TargetHealth(state="ok")
        condition = health.state
        if health.state == "failing":
            probe = f"{health.next_attempt_at:%H:%M:%S} UTC" if health.next_attempt_at else "now"
            condition += f" ({health.failure_count} in a row, next probe {probe})"
        if health.new_dead_letters:
            condition += f", {health.new_dead_letters} new dead letter(s)"
        print(f"{view.id}\t{view.name}\t{view.kind}\t{state}\t{condition}\t{','.join(view.event_types)}\t"
              f"{view.deliveries}")
        if health.state == "paused":
            print(f"\t{health.paused_reason}")
    return 0


def add_commands(commands: argparse._SubParsersAction) -> None:
    """Add ``import`` and ``list`` to a parser's subcommands (``demobank targets …`` and ``python -m``); each sets
    ``handler`` (args → exit code)."""
    importing = commands.add_parser("import", help="create the targets of a settings file that do not exist yet")
    importing.add_argument("settings_file")
    importing.add_argument("--overwrite", action="store_true", help="also reset existing targets to the file's")
    importing.set_defaults(handler=_import_command)
    commands.add_parser("list", help="print every target with its state, health and deliveries").set_defaults(
        handler=_list_command)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m demobank.events.targets import airflow_settings.yaml`` | ``list`` (also ``demobank targets …``)."""
    parser = argparse.ArgumentParser(prog="python -m demobank.events.targets", description=__doc__.split("\n")[0])
    add_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    try:
        return args.handler(args)
    except (TargetError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())


__all__ = [
    "DEFAULT_AWS_CONN_ID", "DEFAULT_BUS_NAME", "AirflowDagSettings", "EventBridgeSettings", "TargetConflictError",
    "TargetError", "TargetNotFoundError", "TargetSpec", "TargetView", "create_target",
    "deliveries_of", "get_target", "import_targets", "list_targets", "ping", "set_enabled", "settings_of",
    "specs_from_settings", "update_target",
]
