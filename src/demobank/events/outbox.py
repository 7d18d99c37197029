"""Publishing events: validated against the catalog and written to the outbox in the caller's transaction.

:func:`publish` is the transactional outbox's write side. In the caller's session it

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

:func:`publish_many` does the same for up to 500 events, all or nothing, and reports every problem of every
event (``events[3].data.amount: …``). :func:`publish_now` opens its own transaction (for tasks and tools).

Idempotency: with ``idempotency_key`` the event id is derived from the type and the key (a UUID version 5), and
publishing the same type, key, subject and data again returns the stored id without writing anything, so a task
retry does not publish twice. The same key with different data is refused (:class:`EventConflictError`). Two
transactions publishing the same key at the same moment: the second fails on the unique id when it writes.
"""

from __future__ import annotations

import json
import logging
import os
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
    json_safe,
    new_event_id,
)
from demobank.events.filters import data_matches, filter_matches
from demobank.exceptions import ConfigurationError

log = logging.getLogger(__name__)

MAX_BATCH_SIZE = 500
"""The most events :func:`publish_many` accepts in one call."""

MAX_EVENT_BYTES_ENV = "DEMOBANK_EVENT_MAX_BYTES"
"""Environment variable: the largest envelope (UTF-8 bytes of its JSON) that may be published."""

DEFAULT_MAX_EVENT_BYTES = 256 * 1024
"""The default size limit: 256 KiB, EventBridge's limit for one entry."""

TARGET_MAX_BYTES_KEY = "max_event_bytes"
"""Key of a target's ``config`` holding that target's size limit (in the target's own measure)."""

EVENTBRIDGE_TIME_BYTES = 14
"""Bytes EventBridge counts for an entry's ``Time`` (see ``demobank.events.eventbridge.entry_size``)."""

IDEMPOTENCY_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://schemas.demobank.com/events/")
"""UUID namespace of the event ids derived from idempotency keys."""

MAX_IDEMPOTENCY_KEY_LENGTH = 500

_EVENT_KEYS = frozenset({"type", "data", "subject", "version", "time", "idempotency_key"})


class EventConflictError(EventValidationError):
    """An idempotency key was already used for a different event (another subject or other data)."""


# -- settings -----------------------------------------------------------------------------------------------


def max_event_bytes() -> int:
    """The size limit of an envelope in bytes: ``DEMOBANK_EVENT_MAX_BYTES`` or 256 KiB.

    :raises ConfigurationError: when the variable is not a positive integer.
    """
    raw = os.environ.get(MAX_EVENT_BYTES_ENV, "").strip()
    if not raw:
        return DEFAULT_MAX_EVENT_BYTES
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value <= 0:
        raise ConfigurationError(
            f"{MAX_EVENT_BYTES_ENV}={raw!r} is not a positive whole number of bytes: set it to e.g. "
            f"{DEFAULT_MAX_EVENT_BYTES} (256 KiB, EventBridge's entry limit) or unset it."
        )
    return value


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


def idempotent_event_id(event_type: str, idempotency_key: str) -> str:
    """The event id derived from an idempotency key (UUID version 5 of the type and the key)."""
    return str(uuid.uuid5(IDEMPOTENCY_NAMESPACE, f"{event_type}\n{idempotency_key}"))


@dataclass(frozen=True)
class _Prepared:
    envelope: CloudEvent
    text: str
    size_bytes: int
    idempotent: bool


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
            event_id = idempotent_event_id(event_type, idempotency_key)
    if problems:
        return None, problems

    try:
        envelope = CloudEvent(
            id=event_id or new_event_id(),
            type=event_type,
            time=time if time is not None else datetime.now(UTC),
            subject=subject,
            dataschema=event_schema.uri,
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
    return _Prepared(envelope, text, size, idempotency_key is not None), []


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
    version: int | None = None,
    time: datetime | None = None,
    idempotency_key: str | None = None,
    catalog: Catalog | None = None,
) -> CloudEvent:
    """Validate an event and build its envelope without writing anything (checks as :func:`publish`, except the
    per-target size limits, which need the database).

    :raises EventValidationError: as :func:`publish`.
    """
    prepared, problems = _prepare(
        catalog or get_catalog(),
        event_type,
        data,
        subject,
        version=version,
        time=time,
        idempotency_key=idempotency_key,
        limit=max_event_bytes(),
    )
    if prepared is None:
        raise _refusal(f"event {_short(event_type)}", problems)
    return prepared.envelope


# -- writing ------------------------------------------------------------------------------------------------


def _stored_matches(row_type: str, row_subject: str | None, row_envelope: str, prepared: _Prepared) -> bool:
    stored = json.loads(row_envelope)
    return (
        row_type == prepared.envelope.type
        and row_subject == prepared.envelope.subject
        and stored.get("data") == prepared.envelope.data
    )


def _write(session: Session, items: list[tuple[str, _Prepared]], targets: Sequence[_Target]) -> list[str]:
    """Insert the events not stored yet and their pending deliveries; return every event's id, in order.

    :param items: (path prefix for messages, prepared event), in input order.
    :raises EventConflictError: when an idempotency key was used before for a different event.
    """
    ids = [prepared.envelope.id for _, prepared in items]
    keyed = sorted({prepared.envelope.id for _, prepared in items if prepared.idempotent})
    stored: dict[str, tuple[str, str | None, str]] = {}
    for chunk_start in range(0, len(keyed), MAX_BATCH_SIZE):
        chunk = keyed[chunk_start : chunk_start + MAX_BATCH_SIZE]
        for row_id, row_type, row_subject, row_envelope in session.execute(
            select(OutboxEvent.id, OutboxEvent.type, OutboxEvent.subject, OutboxEvent.envelope).where(
                OutboxEvent.id.in_(chunk)
            )
        ):
            stored[row_id] = (row_type, row_subject, row_envelope)

    new: dict[str, _Prepared] = {}
    conflicts: list[Problem] = []
    for prefix, prepared in items:
        event_id = prepared.envelope.id
        previous = stored.get(event_id)
        if previous is None and event_id in new:
            earlier = new[event_id]
            previous = (earlier.envelope.type, earlier.envelope.subject, earlier.text)
        if previous is None:
            new[event_id] = prepared
        elif not _stored_matches(*previous, prepared):
            conflicts.append(
                Problem(
                    f"{prefix}idempotency_key",
                    f"was already used for event {event_id} of type {previous[0]} with another subject or other data",
                    "one event per idempotency key",
                    "a new key for a new occurrence; the same data to publish the same event again",
                )
            )
    if conflicts:
        raise EventConflictError.from_problems(
            "event" if len(items) == 1 else f"batch of {len(items)} events", conflicts
        )
    if not new:
        log.info("outbox: %d event(s) already published (idempotency keys), nothing written", len(items))
        return ids

    session.execute(
        insert(OutboxEvent),
        [
            {
                "id": event_id,
                "type": prepared.envelope.type,
                "subject": prepared.envelope.subject,
                "time": prepared.envelope.time,
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
        "outbox: %d event(s) written (%d already published), %d pending deliveries to %d enabled target(s)",
        len(new),
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
    :param version: the schema version to validate against; the newest by default.
    :param time: when the occurrence happened (aware datetime); now by default.
    :param idempotency_key: makes the event id deterministic: publishing the same event again is a no-op.
    :param catalog: the catalog to use (tests); the process-wide one by default.
    :param only_target_id: deliver to this (enabled) target only, whatever its filter (test events).
    :return: the event id.
    :raises EventValidationError: (a :class:`ValueError`) unknown type or version, invalid data, event too large;
        nothing was written.
    :raises EventConflictError: the idempotency key was used for a different event; nothing was written.
    :raises ConfigurationError: a malformed size limit or target filter; nothing was written.
    """
    limit = max_event_bytes()
    prepared, problems = _prepare(
        catalog or get_catalog(),
        type,
        data,
        subject,
        version=version,
        time=time,
        idempotency_key=idempotency_key,
        limit=limit,
    )
    if prepared is None:
        raise _refusal(f"event {_short(type)}", problems)
    targets = _enabled_targets(session, only_target_id)
    problems = _target_size_problems(prepared, targets, "")
    if problems:
        raise EventValidationError.from_problems(f"event {type}", problems)
    return _write(session, [("", prepared)], targets)[0]


def publish_many(session: Session, events: Sequence[Mapping[str, Any]], *, catalog: Catalog | None = None) -> list[str]:
    """Publish up to 500 events in the caller's transaction, all or nothing.

    :param session: the caller's session (no commit here).
    :param events: each a mapping with ``type`` and ``data``, optionally ``subject``, ``version``, ``time``,
        ``idempotency_key`` (as the arguments of :func:`publish`).
    :param catalog: the catalog to use (tests); the process-wide one by default.
    :return: the event ids, in the order of ``events``.
    :raises EventValidationError: listing every problem of every event (``events[3].data.amount: …``); nothing
        was written. Also for an empty batch or more than 500 events.
    :raises EventConflictError: an idempotency key was used for a different event; nothing was written.
    """
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
            Problem(f"{prefix}{key}", "is not a field of an event", f"one of {', '.join(sorted(_EVENT_KEYS))}")
            for key in unknown
        )
        missing = [key for key in ("type", "data") if key not in event]
        problems.extend(Problem(f"{prefix}{key}", "is missing", "required") for key in missing)
        if unknown or missing:
            continue
        prepared, found = _prepare(
            resolved,
            event["type"],
            event["data"],
            event.get("subject"),
            version=event.get("version"),
            time=event.get("time"),
            idempotency_key=event.get("idempotency_key"),
            limit=limit,
            prefix=prefix,
        )
        problems.extend(found)
        if prepared is not None:
            items.append((prefix, prepared))
    targets = _enabled_targets(session)
    if not problems:
        for prefix, prepared in items:
            problems.extend(_target_size_problems(prepared, targets, prefix))
    if problems:
        bad = len({problem.path.split(".", 1)[0] for problem in problems})
        raise _refusal(f"batch of {len(events)} events ({bad} invalid)", problems)
    return _write(session, items, targets)


def publish_now(
    type: str,  # the CloudEvents attribute's name
    data: Mapping[str, Any],
    subject: str | None = None,
    engine: Engine | None = None,
    **options: Any,
) -> str:
    """Publish one event in a transaction of its own, committed before returning (for tasks and tools).

    :param engine: the suite's database; ``None`` uses :func:`demobank.db.engine.get_engine` (``demobank_db``).
    :param options: ``version``, ``time``, ``idempotency_key``, ``catalog`` as for :func:`publish`. In a task
        that may be retried, pass an ``idempotency_key`` so that a retry does not publish the event twice.
    :return: the event id.
    """
    from demobank.db.engine import session_scope

    with session_scope(engine) as session:
        return publish(session, type, data, subject, **options)
