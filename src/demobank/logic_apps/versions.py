"""Deployed versions of the Logic App definitions, in the suite's database (``logic_app_versions``).

``demobank workflows deploy NAME`` validates a definition file and then calls :func:`deploy`: it records the file's
text as the workflow's next version (numbers count from 1 per workflow), with its SHA-256, the author and the time
(UTC). Deploying a text whose hash is the latest version's records nothing (the latest version is returned). Earlier
versions stay readable (:func:`history`, :func:`get_version`); :func:`latest_versions` gives every workflow's latest
version in one query (what the DAG loader reads while parsing).

Two deploys of one workflow at once never take the same number: the unique ``(name, number)`` refuses the second
insert, which then reads the latest version again and retries once (on SQLite, ``BEGIN IMMEDIATE`` already serialises
them).

**Event triggers.** A workflow with an event trigger is started by the dispatcher through an event target of kind
``airflow_dag``: deploy keeps that target in step with the deployed version. The target is named
:func:`target_name` (``logic-app-<name with - for _>``), receives ``[trigger.event_type]`` with ``trigger.match`` as
its data filter, and starts the workflow's DAG (``config: {dag_id: logic_app__<name>}``). A new version creates or
updates it (enabled); a new version whose trigger is not an event disables it. The changes go through
:mod:`demobank.events.targets` (:func:`~demobank.events.targets.create_target`, ``update_target``, ``set_enabled``)
with the author as actor, so the targets' audit trail records them. Those functions own their transactions, so the
target is synced right after the version is committed, not in its transaction: if that sync fails, the version stays
recorded and deploying the same file again (which records no new version) repairs the target. A deploy that records
nothing new also repairs a target that is missing or out of step, but leaves an operator's disabling of an event
trigger's target alone. A target of that name that is not this workflow's ``airflow_dag`` target is never touched:
deploying an event trigger then is refused before anything is recorded.

Deploy runs as the command line (a trusted operator): the UI's check that a user may trigger the target's DAG is not
made here. Nothing here imports Airflow.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from demobank.db.models import EventTarget, LogicAppVersion, TargetKind, utcnow
from demobank.exceptions import DemoBankError
from demobank.logic_apps.definition import EventTrigger, Workflow, parse_definition

TARGET_PREFIX = "logic-app-"
MAX_AUTHOR_LENGTH = 250


class VersionError(DemoBankError):
    """A deploy or a version lookup was refused; the message says why and what to do."""


class VersionNotFoundError(VersionError, LookupError):
    """The workflow has no such version (or none at all)."""


@dataclass(frozen=True)
class Version:
    """One deployed version of a workflow: ``text`` is the definition file's text as it was deployed."""

    name: str
    number: int
    content_hash: str
    author: str
    deployed_at: datetime
    text: str


@dataclass(frozen=True)
class TriggerSync:
    """What deploy did to the workflow's event target: ``created``, ``updated``, ``unchanged``, ``disabled`` or
    ``none`` (no target, and none needed)."""

    target_name: str
    action: str
    target_id: int | None = None


def content_hash(text: str) -> str:
    """The SHA-256 (hex) of a definition's text, as UTF-8 bytes (exactly: any change, even of a comment, counts)."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def target_name(workflow_name: str) -> str:
    """The name of a workflow's event target: ``logic-app-<name with _ replaced by ->``."""
    return TARGET_PREFIX + workflow_name.replace("_", "-")


def _version(row: LogicAppVersion) -> Version:
    return Version(name=row.name, number=row.number, content_hash=row.content_hash, author=row.author,
                   deployed_at=row.deployed_at, text=row.definition)


def _latest_row(session: Session, name: str) -> LogicAppVersion | None:
    return session.scalar(select(LogicAppVersion).where(LogicAppVersion.name == name)
                          .order_by(LogicAppVersion.number.desc()).limit(1))


def latest(engine: Engine, name: str) -> Version | None:
    """The workflow's latest deployed version, ``None`` if it was never deployed."""
    with Session(engine) as session:
        row = _latest_row(session, name)
        return _version(row) if row is not None else None


def latest_versions(engine: Engine) -> dict[str, Version]:
    """Every deployed workflow's latest version, by name, in one query. In SQLAlchemy Core over the table: the DAG
    loader calls it while Airflow parses, where configuring the ORM's mappers would cost more than the query."""
    table = LogicAppVersion.__table__
    newest = select(table.c.name, func.max(table.c.number).label("number")).group_by(table.c.name).subquery()
    query = select(table).join(newest, (table.c.name == newest.c.name) & (table.c.number == newest.c.number))
    with engine.connect() as connection:
        return {row.name: Version(name=row.name, number=row.number, content_hash=row.content_hash,
                                  author=row.author, deployed_at=row.deployed_at, text=row.definition)
                for row in connection.execute(query)}


def history(engine: Engine, name: str) -> list[Version]:
    """Every deployed version of the workflow, newest first (empty if it was never deployed)."""
    with Session(engine) as session:
        return [_version(row) for row in session.scalars(
            select(LogicAppVersion).where(LogicAppVersion.name == name).order_by(LogicAppVersion.number.desc()))]


def get_version(engine: Engine, name: str, number: int) -> Version:
    """Version ``number`` of the workflow.

    :raises VersionNotFoundError: (a :class:`LookupError`) it has no such version; the message names the ones it has.
    """
    with Session(engine) as session:
        row = session.scalar(select(LogicAppVersion).where(LogicAppVersion.name == name,
                                                           LogicAppVersion.number == number))
        if row is not None:
            return _version(row)
        numbers = list(session.scalars(select(LogicAppVersion.number).where(LogicAppVersion.name == name)
                                       .order_by(LogicAppVersion.number)))
    if not numbers:
        raise VersionNotFoundError(f"workflow {name!r} has no deployed version: deploy it with "
                                   f"`demobank workflows deploy {name}`")
    raise VersionNotFoundError(f"workflow {name!r} has no version {number} (versions 1 to {numbers[-1]}; see "
                               f"`demobank workflows versions {name}`)")


# -- deploying ----------------------------------------------------------------------------------------------------


def _record(engine: Engine, name: str, text: str, digest: str, author: str) -> tuple[Version, bool]:
    with Session(engine, expire_on_commit=False) as session, session.begin():
        row = _latest_row(session, name)
        if row is not None and row.content_hash == digest:
            return _version(row), False
        new = LogicAppVersion(name=name, number=(row.number if row is not None else 0) + 1, content_hash=digest,
                              definition=text, author=author, deployed_at=utcnow())
        session.add(new)
        session.flush()
        return _version(new), True


@dataclass(frozen=True)
class Deployment:
    """What :func:`deploy_workflow` did: the version (new, or the latest when ``created`` is false) and what happened
    to the event target."""

    version: Version
    created: bool
    trigger: TriggerSync


def deploy(engine: Engine, workflow: Workflow, text: str, *, author: str) -> tuple[Version, bool]:
    """:func:`deploy_workflow`, as ``(version, created)``."""
    done = deploy_workflow(engine, workflow, text, author=author)
    return done.version, done.created


def deploy_workflow(engine: Engine, workflow: Workflow, text: str, *, author: str) -> Deployment:
    """Record ``text`` (the definition of ``workflow``, already validated) as the workflow's next version, and keep
    its event target in step (see the module docstring).

    :param workflow: the definition read from ``text`` (its name must be the text's).
    :param author: who deploys it (also the actor of the target changes in the audit trail).
    :return: the version with ``created``, or the latest version with ``created`` false when it has the same content
        hash (nothing new recorded), and what was done to the event target.
    :raises ValueError: ``text`` defines another workflow, or the author is empty or too long.
    :raises VersionError: another deploy took the next number twice in a row (run it again), or a target of the
        workflow's target name exists that is not its ``airflow_dag`` target (nothing recorded).
    """
    if not author or not author.strip() or len(author) > MAX_AUTHOR_LENGTH:
        raise ValueError(f"a deploy needs its author (1 to {MAX_AUTHOR_LENGTH} characters); got {author!r}")
    defined = parse_definition(text).name
    if defined != workflow.name:
        raise ValueError(f"the text defines workflow {defined!r}, not {workflow.name!r}: deploy a workflow with its "
                         "own file's text")
    _check_target_is_ours(engine, workflow)
    digest = content_hash(text)
    try:
        version, created = _record(engine, workflow.name, text, digest, author)
    except IntegrityError:  # another deploy took this number meanwhile: read the latest again, once
        try:
            version, created = _record(engine, workflow.name, text, digest, author)
        except IntegrityError as error:
            raise VersionError(f"other deploys of {workflow.name!r} took the next version number twice while this "
                               "one ran: run the deploy again") from error
    return Deployment(version, created, sync_trigger(engine, workflow, actor=author, new_version=created))


# -- the event trigger's target -----------------------------------------------------------------------------------


def _target_row(engine: Engine, name: str) -> EventTarget | None:
    with Session(engine, expire_on_commit=False) as session:
        return session.scalar(select(EventTarget).where(EventTarget.name == name))


def _is_ours(row: EventTarget, workflow: Workflow) -> bool:
    return row.kind == TargetKind.AIRFLOW_DAG.value and (row.config or {}).get("dag_id") == workflow.dag_id


def _check_target_is_ours(engine: Engine, workflow: Workflow) -> None:
    """Before anything is recorded: an event trigger's target can be made (its spec is valid) and its name is free
    or already this workflow's."""
    if not isinstance(workflow.trigger, EventTrigger):
        return
    _target_spec(workflow, workflow.trigger)
    name = target_name(workflow.name)
    row = _target_row(engine, name)
    if row is not None and not _is_ours(row, workflow):
        raise _taken(row, workflow, "nothing was recorded")


def _taken(row: EventTarget, workflow: Workflow, outcome: str) -> VersionError:
    return VersionError(f"event target {row.name!r} exists and is not the airflow_dag target of {workflow.dag_id} "
                        f"(kind {row.kind}, config {row.config}): {workflow.name!r} needs that name for its event "
                        f"trigger; rename or delete that target, then deploy again ({outcome})")


def sync_trigger(engine: Engine, workflow: Workflow, *, actor: str, new_version: bool = True) -> TriggerSync:
    """Create, update or disable the workflow's ``airflow_dag`` event target to match its trigger.

    :param new_version: whether ``workflow`` was just deployed as a new version (its event target is enabled);
        ``False`` (a deploy that recorded nothing) repairs the target but keeps it disabled if an operator disabled
        it.
    """
    from demobank.events.targets import create_target, set_enabled, update_target

    name = target_name(workflow.name)
    row = _target_row(engine, name)
    trigger = workflow.trigger
    if not isinstance(trigger, EventTrigger):
        if row is not None and _is_ours(row, workflow) and row.enabled:
            set_enabled(engine, row.id, False, actor=actor)
            return TriggerSync(name, "disabled", row.id)
        return TriggerSync(name, "none", row.id if row is not None else None)
    if row is not None and not _is_ours(row, workflow):
        raise _taken(row, workflow, "the version is recorded; its event target is not")
    enabled = True if new_version or row is None else row.enabled
    spec = _target_spec(workflow, trigger, enabled=enabled)
    if row is None:
        return TriggerSync(name, "created", create_target(engine, spec, actor=actor).id)
    if _spec_fields(row) == spec.model_dump():
        return TriggerSync(name, "unchanged", row.id)
    update_target(engine, row.id, spec, actor=actor)
    return TriggerSync(name, "updated", row.id)


def _target_spec(workflow: Workflow, trigger: EventTrigger, *, enabled: bool = True) -> Any:
    """The event target an event trigger needs (a :class:`~demobank.events.targets.TargetSpec`).

    :raises pydantic.ValidationError: (a :class:`ValueError`) the trigger's event type is not in the catalog, or its
        match is not a valid filter (``demobank workflows validate`` reports both).
    """
    from demobank.events.targets import TargetSpec

    return TargetSpec(name=target_name(workflow.name), kind=TargetKind.AIRFLOW_DAG.value,
                      description=f"The event trigger of Logic App {workflow.name} (kept in step by `demobank "
                                  "workflows deploy`)",
                      event_types=[trigger.event_type], match=trigger.match, enabled=enabled,
                      config={"dag_id": workflow.dag_id})


def _spec_fields(row: EventTarget) -> dict[str, Any]:
    return {"name": row.name, "kind": row.kind, "description": row.description,
            "event_types": list(row.event_types or []), "match": row.match, "enabled": row.enabled,
            "config": dict(row.config or {})}


__all__ = ["Deployment", "TriggerSync", "Version", "VersionError", "VersionNotFoundError", "content_hash", "deploy",
           "deploy_workflow", "get_version", "history", "latest", "latest_versions", "sync_trigger", "target_name"]
