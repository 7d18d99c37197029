"""Publishing events: validated against the catalog and written to the outbox in the caller's transaction.

:func:`publish` is the transactional outbox's write side. Every call names its ``publisher``: ``dag:<dag_id>`` for
a pipeline task, ``user:<Airflow user name>`` for the API and a user's test event (:func:`dag_publisher`,
:func:`user_publisher`). It is recorded in the envelope (extension attribute ``publisher``) and in the row, and it
scopes idempotency keys (below). In the caller's session it

1. validates the data against the catalog (:mod:`demobank.events.catalog`): an unknown type, an unknown schema
   version or a payload that does not match is refused with :class:`~demobank.events.catalog.EventValidationError`
   naming every bad field;
2. builds the CloudEvents envelope (:mod:`demobank.events.envelope`), ``dataschema`` = the schema version used,
   ``subject`` = the given one or the schema's subject field (e.g. the transaction id);
3. refuses an envelope larger than ``DEMOBANK_EVENT_MAX_BYTES`` (default 256 KiB), or larger than the
   ``max_event_bytes`` of a target it would go to (for an EventBridge target counted as EventBridge counts a
   ``PutEvents`` entry whose ``Detail`` is the envelope), with the size and the limit in the message;
4. inserts the ``outbox_events`` row and one ``pending`` ``event_deliveries`` row per *enabled* target whose
   ``event_types`` filter matches (``"*"``, the exact type, or a prefix such as ``"transaction.*"``).

Nothing is committed here: the event exists if and only if the caller's transaction commits, together with the
business change it announces. Every check happens before the first write, so a refused event (or batch) writes
nothing, and the caller's transaction stays usable.

:func:`publish_many` does the same for up to 500 events whose envelopes are at most ``DEMOBANK_EVENT_BATCH_MAX_BYTES``
(default 4 MiB) together, all or nothing, and reports every problem of every event (``events[3].data.amount: …``).
With ``through_api=True`` (the API's route) it also refuses every type that the catalog closes to API publishing
(``x-demobank-api-publishing``). :func:`publish_now` opens its own transaction (for tasks and tools).

Idempotency: an ``idempotency_key`` belongs to its publisher and event type. The event id is derived from the
three (a UUID version 5), the key is stored beside the publisher, and ``(publisher, type, idempotency_key)`` is
unique. Publishing the same publisher, type, key, subject and data again returns the stored id without writing
anything, so a task retry does not publish twice; the same key with different data is refused
(:class:`EventConflictError`). Another publisher's use of the same key is another event: no API user can take,
or block, a key of the Data Factory. Two transactions publishing the same key at the same moment: the second fails
on the unique constraint when it writes.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError
from sqlalchemy import Engine, insert, select
from sqlalchemy.orm import Session

from demobank.db.models import EventDelivery, EventDeliveryStatus, EventTarget, OutboxEvent, TargetKind
from demobank.events.catalog import Catalog, EventValidationError, Problem, UnknownEventTypeError, get_catalog
from demobank.events.envelope import (
    MAX_SUBJECT_LENGTH,
    SOURCE,
    CloudEvent,
    NotJsonError,
    check_publisher,
    dag_publisher,
    json_safe,
    new_event_id,
    user_publisher,
)
from demobank.events.filters import data_matches, filter_matches
from demobank.exceptions import ConfigurationError
from demobank.limits import BATCH_MAX_BYTES, EVENT_MAX_BYTES

log = logging.getLogger(__name__)

MAX_BATCH_SIZE = 500
"""The most events :func:`publish_many` accepts in one call."""

MAX_EVENT_BYTES_ENV = EVENT_MAX_BYTES.env
"""Environment variable: the largest envelope (UTF-8 bytes of its JSON) that may be published."""

DEFAULT_MAX_EVENT_BYTES = EVENT_MAX_BYTES.default
"""The default size limit: 256 KiB, EventBridge's limit for one entry."""

TARGET_MAX_BYTES_KEY = "max_event_bytes"
"""Key of a target's ``config`` holding that target's size limit (in the target's own measure)."""

EVENTBRIDGE_TIME_BYTES = 14
"""Bytes EventBridge counts for an entry's ``Time`` (see ``demobank.events.eventbridge.entry_size``)."""

IDEMPOTENCY_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://schemas.demobank.com/events/")
"""UUID namespace of the event ids derived from idempotency keys."""

MAX_IDEMPOTENCY_KEY_LENGTH = 500

_EVENT_KEYS = frozenset({"type", "data", "subject", "version", "time", "idempotency_key"})

_PUBLISHER_HINT = ("no publisher in the event: the publisher is whoever publishes it (the signed-in user through the "
                   "API, the task's DAG in a pipeline)")


class EventConflictError(EventValidationError):
    """An idempotency key was already used for a different event (another subject or other data)."""


# -- settings -----------------------------------------------------------------------------------------------


def max_event_bytes() -> int:
    """The size limit of an envelope in bytes: ``DEMOBANK_EVENT_MAX_BYTES`` or 256 KiB.

    :raises ConfigurationError: when the variable is not a positive integer.
    """
    return EVENT_MAX_BYTES.value()


@dataclass(frozen=True)
class _Target:
    id: int
    name: str
    kind: str
    patterns: tuple[str, ...]
    max_bytes: int | None
    match: Mapping[str, Any] | None = None

    def wants(self, envelope: CloudEvent) -> bool:
        """Whether this target's filter (event types, then data conditions) selects the event."""
        return filter_matches(self.patterns, envelope.type) and data_matches(self.match, envelope.data)

    def size_of(self, envelope: CloudEvent, envelope_bytes: int) -> int:
        """The event's size as this target counts it against :attr:`max_bytes`."""
        if self.kind == TargetKind.EVENTBRIDGE:
            # A PutEvents entry: Time (14) + Source + DetailType (= the type) + Detail (= the envelope).
            return EVENTBRIDGE_TIME_BYTES + len(SOURCE.encode()) + len(envelope.type.encode()) + envelope_bytes
        return envelope_bytes


def _enabled_targets(session: Session, only_target_id: int | None = None) -> list[_Target]:
    """The enabled targets, or only the one given (its filter then selects every event: an explicit send)."""
    query = (
        select(EventTarget.id, EventTarget.name, EventTarget.kind, EventTarget.event_types, EventTarget.config,
               EventTarget.match)
        .where(EventTarget.enabled.is_(True))
        .order_by(EventTarget.id)
    )
    if only_target_id is not None:
        query = query.where(EventTarget.id == only_target_id)
    rows = session.execute(query).all()
    if only_target_id is not None and not rows:
        raise ConfigurationError(f"event target {only_target_id} does not exist or is disabled: nothing was written")
    targets = []
    for target_id, name, kind, patterns, config, match in rows:
        if only_target_id is not None:
            patterns, match = ["*"], None
        if not isinstance(patterns, list) or not all(isinstance(pattern, str) for pattern in patterns):
            raise ConfigurationError(
                f"event target {name!r} (id {target_id}) has a malformed event_types filter {patterns!r}: set it "
                'to a list of patterns such as ["*"] or ["transaction.*"] (or disable the target)'
            )
        limit = (config or {}).get(TARGET_MAX_BYTES_KEY) if isinstance(config, Mapping) else None
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit <= 0):
            raise ConfigurationError(
                f"event target {name!r} (id {target_id}) has {TARGET_MAX_BYTES_KEY}={limit!r} in its config: set "
                "a positive number of bytes or remove it"
            )
        targets.append(_Target(target_id, name, kind, tuple(patterns), limit, match or None))
    return targets


# -- preparing events ---------------------------------------------------------------------------------------


def idempotent_event_id(publisher: str, event_type: str, idempotency_key: str) -> str:
    """The event id derived from an idempotency key: a UUID version 5 of the publisher, the type and the key.

    Neither a publisher nor a type can hold a line break, so the three, joined by line breaks, name exactly one
    scope and key. (Ids derived before publishers were recorded, from the type and key alone, start with a type,
    which has no ``:``; these always start with ``user:`` or ``dag:``: the two never meet.)
    """
    return str(uuid.uuid5(IDEMPOTENCY_NAMESPACE, f"{publisher}\n{event_type}\n{idempotency_key}"))


@dataclass(frozen=True)
class _Prepared:
    envelope: CloudEvent
    text: str
    size_bytes: int
    idempotency_key: str | None


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _prepare(
    catalog: Catalog,
    event_type: Any,
    data: Any,
    subject: Any = None,
    *,
    version: Any = None,
    time: Any = None,
    idempotency_key: Any = None,
    publisher: str,
    limit: int,
    prefix: str = "",
) -> tuple[_Prepared | None, list[Problem]]:
    """Validate one event and build its envelope; return it or the problems (paths prefixed with ``prefix``)."""
    problems: list[Problem] = []
    try:
        event_schema = catalog.get(event_type, version)
    except EventValidationError as exc:
        return None, [problem.prefixed(prefix) for problem in exc.problems]

    if not isinstance(data, Mapping):
        return None, [
            Problem(f"{prefix}data", f"{_short(data)} is not an object", "type object", event_schema.description)
        ]
    try:
        data = json_safe(data)
    except NotJsonError as exc:
        return None, [Problem(f"{prefix}{exc.path}", exc.reason, "JSON value")]
    problems.extend(event_schema.problems(data, f"{prefix}data"))

    if subject is None:
        subject = event_schema.subject_of(data)
    elif not isinstance(subject, str) or not subject.strip() or len(subject) > MAX_SUBJECT_LENGTH:
        problems.append(
            Problem(
                f"{prefix}subject",
                f"{_short(subject)} is not a non-empty text of at most {MAX_SUBJECT_LENGTH} characters",
                f"string, 1..{MAX_SUBJECT_LENGTH} characters",
                "what the event is about, e.g. the transaction id; leave it out to use the schema's subject field",
            )
        )
    if time is not None and (not isinstance(time, datetime) or time.tzinfo is None or time.utcoffset() is None):
        problems.append(
            Problem(
                f"{prefix}time",
                f"{_short(time)} is not a timezone-aware datetime",
                "aware datetime",
                "when the occurrence happened, e.g. datetime.now(UTC); leave it out for now",
            )
        )
    event_id = None
    if idempotency_key is not None:
        if (
            not isinstance(idempotency_key, str)
            or not idempotency_key
            or len(idempotency_key) > MAX_IDEMPOTENCY_KEY_LENGTH
        ):
            problems.append(
                Problem(
                    f"{prefix}idempotency_key",
                    f"{_short(idempotency_key)} is not a non-empty text of at most {MAX_IDEMPOTENCY_KEY_LENGTH} "
                    "characters",
                    "string",
                    "a key unique per business occurrence, e.g. the transaction id",
                )
            )
        else:
            event_id = idempotent_event_id(publisher, event_type, idempotency_key)
    if problems:
        return None, problems

    try:
        envelope = CloudEvent(
            id=event_id or new_event_id(),
            type=event_type,
            time=time if time is not None else datetime.now(UTC),
            subject=subject,
            dataschema=event_schema.uri,
            publisher=publisher,
            data=data,
        )
    except ValidationError as exc:  # Only reachable through a schema whose data breaks the envelope's own rules.
        return None, [
            Problem(f"{prefix}{'.'.join(map(str, error['loc']))}", error["msg"], "CloudEvents envelope")
            for error in exc.errors(include_url=False)
        ]
    text = envelope.to_json()
    size = len(text.encode("utf-8"))
    if size > limit:
        return None, [
            Problem(
                f"{prefix}envelope",
                f"the event is {size} bytes as a CloudEvents envelope, over the limit of {limit} bytes "
                f"({MAX_EVENT_BYTES_ENV})",
                f"max size {limit} bytes",
                "a smaller payload: put large content (documents, file contents) in storage and send its URI",
            )
        ]
    return _Prepared(envelope, text, size, idempotency_key), []


_UNKNOWN_RULES = frozenset({"known event type", "known schema version"})


def _refusal(what: str, problems: Sequence[Problem]) -> EventValidationError:
    """The error for refused events: :class:`UnknownEventTypeError` when only the type or version is unknown."""
    if all(problem.rule in _UNKNOWN_RULES for problem in problems):
        return UnknownEventTypeError.from_problems(what, problems)
    return EventValidationError.from_problems(what, problems)


def _target_size_problems(prepared: _Prepared, targets: Sequence[_Target], prefix: str) -> list[Problem]:
    problems = []
    for target in targets:
        if target.max_bytes is None or not target.wants(prepared.envelope):
            continue
        size = target.size_of(prepared.envelope, prepared.size_bytes)
        if size > target.max_bytes:
            problems.append(
                Problem(
                    f"{prefix}envelope",
                    f"the event is {size} bytes as target {target.name!r} ({target.kind}) counts it, over that "
                    f"target's limit of {target.max_bytes} bytes",
                    f"max size {target.max_bytes} bytes for target {target.name}",
                    "a smaller payload, or a larger max_event_bytes in the target's config if the target allows it",
                )
            )
    return problems


def prepare_event(
    event_type: str,
    data: Mapping[str, Any],
    subject: str | None = None,
    *,
    publisher: str,
    version: int | None = None,
    time: datetime | None = None,
    idempotency_key: str | None = None,
    catalog: Catalog | None = None,
) -> CloudEvent:
    """Validate an event and build its envelope without writing anything (checks as :func:`publish`, except the
    per-target size limits, which need the database).

    :raises EventValidationError: as :func:`publish`.
    :raises ValueError: for a malformed ``publisher``.
    """
    prepared, problems = _prepare(
        catalog or get_catalog(),
        event_type,
        data,
        subject,
        version=version,
        time=time,
        idempotency_key=idempotency_key,
        publisher=check_publisher(publisher),
        limit=max_event_bytes(),
    )
    if prepared is None:
        raise _refusal(f"event {_short(event_type)}", problems)
    return prepared.envelope


# -- writing ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Stored:
    """An event already in the outbox under the same publisher, type and idempotency key."""

    id: str
    type: str
    subject: str | None
    data: Any

    def same_as(self, prepared: _Prepared) -> bool:
        return self.subject == prepared.envelope.subject and self.data == prepared.envelope.data


def _stored_events(session: Session, publisher: str,
                   items: list[tuple[str, _Prepared]]) -> dict[tuple[str, str], _Stored]:
    """The stored events of ``publisher`` with the types and idempotency keys of ``items``, by (type, key)."""
    keys_by_type: dict[str, set[str]] = {}
    for _, prepared in items:
        if prepared.idempotency_key is not None:
            keys_by_type.setdefault(prepared.envelope.type, set()).add(prepared.idempotency_key)
    stored: dict[tuple[str, str], _Stored] = {}
    for event_type, keys in keys_by_type.items():
        ordered = sorted(keys)
        for start in range(0, len(ordered), MAX_BATCH_SIZE):
            rows = session.execute(
                select(OutboxEvent.id, OutboxEvent.subject, OutboxEvent.envelope, OutboxEvent.idempotency_key).where(
                    OutboxEvent.publisher == publisher,
                    OutboxEvent.type == event_type,
                    OutboxEvent.idempotency_key.in_(ordered[start : start + MAX_BATCH_SIZE]),
                )
            )
            for row_id, row_subject, row_envelope, row_key in rows:
                stored[(event_type, row_key)] = _Stored(row_id, event_type, row_subject,
                                                        json.loads(row_envelope).get("data"))
    return stored


def _write(session: Session, publisher: str, items: list[tuple[str, _Prepared]],
           targets: Sequence[_Target]) -> list[str]:
    """Insert the events not stored yet and their pending deliveries; return every event's id, in order.

    :param publisher: who publishes every item (it scopes their idempotency keys).
    :param items: (path prefix for messages, prepared event), in input order.
    :raises EventConflictError: when an idempotency key of this publisher was used before for a different event.
    """
    stored = _stored_events(session, publisher, items)
    ids: list[str] = []
    new: dict[str, _Prepared] = {}
    conflicts: list[Problem] = []
    for prefix, prepared in items:
        key = prepared.idempotency_key
        previous = stored.get((prepared.envelope.type, key)) if key is not None else None
        if key is not None and previous is None:
            earlier = new.get(prepared.envelope.id)
            if earlier is not None:
                previous = _Stored(earlier.envelope.id, earlier.envelope.type, earlier.envelope.subject,
                                   earlier.envelope.data)
        if previous is None:
            new[prepared.envelope.id] = prepared
            ids.append(prepared.envelope.id)
            continue
        ids.append(previous.id)
        if not previous.same_as(prepared):
            conflicts.append(
                Problem(
                    f"{prefix}idempotency_key",
                    f"{key!r} was already used by {publisher} for event {previous.id} of type {previous.type} with "
                    "another subject or other data",
                    "one event per publisher, type and idempotency key",
                    "a new key for a new occurrence; the same data to publish the same event again",
                )
            )
    if conflicts:
        raise EventConflictError.from_problems(
            "event" if len(items) == 1 else f"batch of {len(items)} events", conflicts
        )
    if not new:
        log.info("outbox: %d event(s) already published by %s (idempotency keys), nothing written", len(items),
                 publisher)
        return ids

    session.execute(
        insert(OutboxEvent),
        [
            {
                "id": event_id,
                "type": prepared.envelope.type,
                "subject": prepared.envelope.subject,
                "time": prepared.envelope.time,
                "publisher": publisher,
                "idempotency_key": prepared.idempotency_key,
                "envelope": prepared.text,
                "size_bytes": prepared.size_bytes,
            }
            for event_id, prepared in new.items()
        ],
    )
    now = datetime.now(UTC)
    deliveries = [
        {
            "event_id": event_id,
            "target_id": target.id,
            "status": EventDeliveryStatus.PENDING.value,
            "attempts": 0,
            "next_attempt_at": now,
        }
        for event_id, prepared in new.items()
        for target in targets
        if target.wants(prepared.envelope)
    ]
    if deliveries:
        session.execute(insert(EventDelivery), deliveries)
    log.info(
        "outbox: %d event(s) of %s written (%d already published), %d pending deliveries to %d enabled target(s)",
        len(new),
        publisher,
        len(items) - len(new),
        len(deliveries),
        len(targets),
    )
    return ids


def publish(
    session: Session,
    type: str,  # the CloudEvents attribute's name
    data: Mapping[str, Any],
    subject: str | None = None,
    *,
    publisher: str,
    version: int | None = None,
    time: datetime | None = None,
    idempotency_key: str | None = None,
    catalog: Catalog | None = None,
    only_target_id: int | None = None,
) -> str:
    """Publish one event in the caller's transaction (no commit: the caller's transaction decides).

    :param session: the caller's session; the rows are inserted in its current transaction.
    :param type: the event type, e.g. ``transaction.created`` (must be in the catalog).
    :param data: the payload; ``Decimal``, aware ``datetime``, ``date`` and ``UUID`` values are converted (see
        :func:`demobank.events.envelope.json_safe`), then validated against the catalog.
    :param subject: the envelope's subject; by default the schema's subject field (e.g. ``transaction_id``).
    :param publisher: who publishes: ``dag:<dag_id>`` (:func:`dag_publisher`) in a task, ``user:<name>``
        (:func:`user_publisher`) for a signed-in user. Recorded with the event; scopes ``idempotency_key``.
    :param version: the schema version to validate against; the newest by default.
    :param time: when the occurrence happened (aware datetime); now by default.
    :param idempotency_key: makes the event id deterministic within the publisher and type: publishing the same
        event again is a no-op.
    :param catalog: the catalog to use (tests); the process-wide one by default.
    :param only_target_id: deliver to this (enabled) target only, whatever its filter (test events).
    :return: the event id.
    :raises EventValidationError: (a :class:`ValueError`) unknown type or version, invalid data, event too large;
        nothing was written.
    :raises EventConflictError: the publisher used the idempotency key for a different event; nothing was written.
    :raises ValueError: a malformed ``publisher``; nothing was written.
    :raises ConfigurationError: a malformed size limit or target filter; nothing was written.
    """
    publisher = check_publisher(publisher)
    limit = max_event_bytes()
    prepared, problems = _prepare(
        catalog or get_catalog(),
        type,
        data,
        subject,
        version=version,
        time=time,
        idempotency_key=idempotency_key,
        publisher=publisher,
        limit=limit,
    )
    if prepared is None:
        raise _refusal(f"event {_short(type)}", problems)
    targets = _enabled_targets(session, only_target_id)
    problems = _target_size_problems(prepared, targets, "")
    if problems:
        raise EventValidationError.from_problems(f"event {type}", problems)
    return _write(session, publisher, [("", prepared)], targets)[0]


def _batch_size_problem(items: Sequence[tuple[str, _Prepared]], count: int) -> Problem | None:
    """The problem of a batch whose envelopes together are over ``DEMOBANK_EVENT_BATCH_MAX_BYTES``."""
    limit = BATCH_MAX_BYTES.value()
    total = sum(prepared.size_bytes for _, prepared in items)
    if total <= limit:
        return None
    average = max(1, total // max(1, len(items)))
    fits = max(1, limit // average)
    return Problem(
        "events",
        f"the batch's {count} events are {total} bytes together as CloudEvents envelopes, over the limit of "
        f"{BATCH_MAX_BYTES.describe(limit)} for one batch",
        f"max {limit} bytes per batch",
        f"split the batch: at about {average} bytes per event, batches of at most {fits} events fit",
    )


def publish_many(
    session: Session,
    events: Sequence[Mapping[str, Any]],
    *,
    publisher: str,
    catalog: Catalog | None = None,
    through_api: bool = False,
) -> list[str]:
    """Publish up to 500 events in the caller's transaction, all or nothing.

    :param session: the caller's session (no commit here).
    :param events: each a mapping with ``type`` and ``data``, optionally ``subject``, ``version``, ``time``,
        ``idempotency_key`` (as the arguments of :func:`publish`).
    :param publisher: who publishes every event of the batch (as for :func:`publish`).
    :param catalog: the catalog to use (tests); the process-wide one by default.
    :param through_api: the batch came through the API: a type the catalog closes to API publishing is refused.
    :return: the event ids, in the order of ``events``.
    :raises EventValidationError: listing every problem of every event (``events[3].data.amount: …``); nothing
        was written. Also for an empty batch, more than 500 events, or more than ``DEMOBANK_EVENT_BATCH_MAX_BYTES``.
    :raises EventConflictError: the publisher used an idempotency key for a different event; nothing was written.
    :raises ValueError: a malformed ``publisher``; nothing was written.
    """
    publisher = check_publisher(publisher)
    if isinstance(events, Mapping | str | bytes) or not isinstance(events, Sequence):
        raise EventValidationError.from_problems(
            "batch", [Problem("events", f"is a {type(events).__name__}, not a list of events", "list")]
        )
    if not events:
        return []
    if len(events) > MAX_BATCH_SIZE:
        raise EventValidationError.from_problems(
            f"batch of {len(events)} events",
            [
                Problem(
                    "events",
                    f"has {len(events)} events",
                    f"at most {MAX_BATCH_SIZE} per batch",
                    f"split the batch into batches of {MAX_BATCH_SIZE} or fewer",
                )
            ],
        )
    limit = max_event_bytes()
    resolved = catalog or get_catalog()
    problems: list[Problem] = []
    items: list[tuple[str, _Prepared]] = []
    for index, event in enumerate(events):
        prefix = f"events[{index}]."
        if not isinstance(event, Mapping):
            problems.append(
                Problem(
                    f"events[{index}]",
                    f"{_short(event)} is not an object",
                    "type object",
                    "an object with type and data",
                )
            )
            continue
        unknown = sorted(set(event) - _EVENT_KEYS, key=str)
        problems.extend(
            Problem(f"{prefix}{key}", "is not a field of an event", f"one of {', '.join(sorted(_EVENT_KEYS))}",
                    _PUBLISHER_HINT if key == "publisher" else "")
            for key in unknown
        )
        missing = [key for key in ("type", "data") if key not in event]
        problems.extend(Problem(f"{prefix}{key}", "is missing", "required") for key in missing)
        closed = resolved.api_publishing_problem(event.get("type"), f"{prefix}type") if through_api else None
        if closed is not None:
            problems.append(closed)
        if unknown or missing or closed:
            continue
        prepared, found = _prepare(
            resolved,
            event["type"],
            event["data"],
            event.get("subject"),
            version=event.get("version"),
            time=event.get("time"),
            idempotency_key=event.get("idempotency_key"),
            publisher=publisher,
            limit=limit,
            prefix=prefix,
        )
        problems.extend(found)
        if prepared is not None:
            items.append((prefix, prepared))
    too_large = _batch_size_problem(items, len(events))
    if too_large is not None:
        problems.insert(0, too_large)
    targets = _enabled_targets(session)
    if not problems:
        for prefix, prepared in items:
            problems.extend(_target_size_problems(prepared, targets, prefix))
    if problems:
        bad = len({problem.path.split(".", 1)[0] for problem in problems})
        raise _refusal(f"batch of {len(events)} events ({bad} invalid)", problems)
    return _write(session, publisher, items, targets)


def publish_now(
    type: str,  # the CloudEvents attribute's name
    data: Mapping[str, Any],
    subject: str | None = None,
    engine: Engine | None = None,
    *,
    publisher: str,
    **options: Any,
) -> str:
    """Publish one event in a transaction of its own, committed before returning (for tasks and tools).

    :param engine: the suite's database; ``None`` uses :func:`demobank.db.engine.get_engine` (``demobank_db``).
    :param publisher: who publishes (``dag:<dag_id>`` in a task, see :func:`publish`).
    :param options: ``version``, ``time``, ``idempotency_key``, ``catalog`` as for :func:`publish`. In a task
        that may be retried, pass an ``idempotency_key`` so that a retry does not publish the event twice.
    :return: the event id.
    """
    from demobank.db.engine import session_scope

    with session_scope(engine) as session:
        return publish(session, type, data, subject, publisher=publisher, **options)


__all__ = [
    "DEFAULT_MAX_EVENT_BYTES", "IDEMPOTENCY_NAMESPACE", "MAX_BATCH_SIZE", "MAX_EVENT_BYTES_ENV",
    "MAX_IDEMPOTENCY_KEY_LENGTH", "EventConflictError", "dag_publisher", "idempotent_event_id", "max_event_bytes",
    "prepare_event", "publish", "publish_many", "publish_now", "user_publisher",
]
