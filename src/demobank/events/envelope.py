"""The CloudEvents 1.0 envelope of every Demo Bank event (JSON format, structured mode).

An event as it is stored in the outbox and sent to every target::

    {"specversion": "1.0", "id": "0193a1c4-5e2f-7c31-9a4e-3f0b6d1c2a77", "source": "com.demobank",
     "type": "transaction.created", "time": "2026-11-26T09:41:07.123Z", "subject": "TXN-20261126A0001",
     "datacontenttype": "application/json",
     "dataschema": "https://schemas.demobank.com/events/transaction.created/v1.schema.json",
     "data": {"transaction_id": "TXN-20261126A0001", "amount": "42.50", ...}}

Decisions:

* ``id`` is a UUID version 7 (RFC 9562) in its canonical lower-case form: unique without coordination, and its
  first 48 bits are the creation time in milliseconds, so ids sort by creation time (within a process they are
  strictly increasing: a counter breaks ties within a millisecond). Dispatch order does not rely on it (the
  outbox has a sequence column); it makes ids and logs easy to read in order.
* ``time`` is UTC with millisecond precision, written ``YYYY-MM-DDTHH:MM:SS.mmmZ`` (RFC 3339).
* Optional attributes that are not set (``subject``, ``dataschema``) are left out of the JSON, as the CloudEvents
  JSON format prescribes, rather than written as ``null``.
* ``publisher`` (a CloudEvents extension attribute) says who published the event: ``user:<Airflow user name>`` for
  the API and a user's test event, ``dag:<dag_id>`` for a pipeline task. The outbox sets it from who called, never
  from the event's content, and scopes idempotency keys by it (see :func:`demobank.events.outbox.publish`).
  Envelopes stored before it existed have none.
* ``data`` is a JSON object. :func:`json_safe` turns the Python values a producer naturally has into JSON
  (``Decimal`` → decimal string, aware ``datetime`` → RFC 3339 UTC string, ``date`` → ISO date, ``UUID`` → string,
  enums → their value) and refuses the rest (naive datetimes, NaN, sets, objects) naming the field.

This module knows no catalog and no database: :mod:`demobank.events.outbox` validates ``data`` against the
catalog (:mod:`demobank.events.catalog`) before it builds an envelope.
"""

from __future__ import annotations

import json
import math
import os
import re
import threading
import time as _time
import uuid
from collections.abc import Mapping
from datetime import UTC, date, datetime
from decimal import Decimal
from enum import Enum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_serializer, field_validator

SPEC_VERSION = "1.0"
"""The CloudEvents specification version of every envelope."""

SOURCE = "com.demobank"
"""The ``source`` of every event the suite publishes."""

DATA_CONTENT_TYPE = "application/json"
"""The ``datacontenttype`` of every event: ``data`` is a JSON object."""

EVENT_TYPE_PATTERN = r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$"
"""An event type: lower-case dot-separated words, at least two, e.g. ``transaction.created``."""

EVENT_ID_PATTERN = r"^[0-9a-f]{8}-[0-9a-f]{4}-[1-8][0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$"
"""An event id: a canonical lower-case UUID (version 7 when the suite made it, 5 for an idempotency key)."""

MAX_SUBJECT_LENGTH = 250
"""The longest ``subject`` (the outbox column's size)."""

PUBLISHER_KINDS = ("user", "dag")
"""Who may publish: a signed-in Airflow user (``user:``) or a pipeline task (``dag:``)."""

MAX_PUBLISHER_NAME_LENGTH = 250
"""The longest user name or DAG id in a ``publisher`` (Airflow's DAG id limit)."""

_PUBLISHER_NAME_CHARACTERS = "A-Za-z0-9_.@+-"

PUBLISHER_PATTERN = rf"^({'|'.join(PUBLISHER_KINDS)}):[{_PUBLISHER_NAME_CHARACTERS}]{{1,{MAX_PUBLISHER_NAME_LENGTH}}}$"
"""A ``publisher`` attribute: ``user:<name>`` or ``dag:<dag_id>``, the name made of ASCII letters, digits and
``_ . @ + -`` (no separator of the idempotency scope, see :func:`demobank.events.outbox.idempotent_event_id`)."""

_TYPE_RE = re.compile(EVENT_TYPE_PATTERN)
_PUBLISHER_RE = re.compile(PUBLISHER_PATTERN)

_uuid7_lock = threading.Lock()
_uuid7_last = (0, 0)  # (unix milliseconds, 12-bit counter) of the last id made by this process


def _reset_uuid7_state_after_fork() -> None:
    global _uuid7_lock
    _uuid7_lock = threading.Lock()


os.register_at_fork(after_in_child=_reset_uuid7_state_after_fork)


def new_event_id() -> str:
    """Return a new event id: a UUID version 7 (time-ordered), canonical lower-case form.

    Layout (RFC 9562, section 5.7, with the 12-bit ``rand_a`` used as a counter, section 6.2 method 1): 48 bits of
    Unix time in milliseconds, version 7, a 12-bit counter that starts at a random value below 2048 in each new
    millisecond and is incremented for every further id within it, the variant, 62 random bits. Ids made by one
    process are strictly increasing, even when the clock steps back (the last timestamp is reused).
    """
    global _uuid7_last
    with _uuid7_lock:
        now_ms = _time.time_ns() // 1_000_000
        last_ms, counter = _uuid7_last
        if now_ms > last_ms:
            counter = int.from_bytes(os.urandom(2), "big") & 0x7FF
        else:
            now_ms, counter = last_ms, counter + 1
            if counter > 0xFFF:  # 4096 ids in one millisecond: borrow the next millisecond.
                now_ms, counter = last_ms + 1, int.from_bytes(os.urandom(2), "big") & 0x7FF
        _uuid7_last = (now_ms, counter)
    rand_b = int.from_bytes(os.urandom(8), "big") & ((1 << 62) - 1)
    value = (now_ms & ((1 << 48) - 1)) << 80 | 0x7 << 76 | counter << 64 | 0b10 << 62 | rand_b
    return str(uuid.UUID(int=value))


def event_id_time(event_id: str) -> datetime | None:
    """Return the creation time encoded in a version-7 event id, ``None`` for another UUID version."""
    parsed = uuid.UUID(event_id)
    if parsed.version != 7:
        return None
    return datetime.fromtimestamp((parsed.int >> 80) / 1000, tz=UTC)


def format_time(value: datetime) -> str:
    """Format an aware datetime as the envelope writes it: RFC 3339, UTC, milliseconds, ``Z``.

    :raises ValueError: for a naive datetime.
    """
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(
            f"naive datetime {value.isoformat()} has no time zone: pass an aware datetime, e.g. datetime.now(UTC)"
        )
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def utc_millis(value: datetime) -> datetime:
    """Return an aware datetime converted to UTC and truncated to milliseconds (the envelope's precision)."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(
            f"naive datetime {value.isoformat()} has no time zone: pass an aware datetime, e.g. datetime.now(UTC)"
        )
    value = value.astimezone(UTC)
    return value.replace(microsecond=value.microsecond // 1000 * 1000)


class NotJsonError(ValueError):
    """A value in an event's data that JSON cannot represent.

    :ivar path: where, e.g. ``data.merchant.opened_at``.
    :ivar value: the value.
    :ivar reason: what is wrong and what to do.
    """

    def __init__(self, path: str, value: Any, reason: str) -> None:
        self.path = path
        self.value = value
        self.reason = reason
        super().__init__(f"{path}: {reason}")


def _child(path: str, key: str) -> str:
    return f"{path}.{key}" if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key) else f"{path}[{json.dumps(key)}]"


def json_safe(value: Any, path: str = "data") -> Any:
    """Return ``value`` as plain JSON values (dict, list, str, int, float, bool, None).

    Conversions: ``Decimal`` → its decimal string in fixed-point notation (``Decimal("42.50")`` → ``"42.50"``: the
    catalog's money fields are strings); aware ``datetime`` → RFC 3339 UTC string (``2026-11-26T09:41:07Z``,
    lossless); ``date`` → ``YYYY-MM-DD``; ``UUID`` → string; an ``Enum`` → its value; tuples → lists.

    :param value: the data (or a part of it).
    :param path: where ``value`` is, for error messages.
    :raises NotJsonError: for a naive datetime, a NaN or infinite number, a non-string dict key, or a value of
        another type (sets, bytes, objects), naming the field.
    """
    if value is None or isinstance(value, bool | str | int):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise NotJsonError(path, value, f"{value} is not a JSON number: send a finite number")
        return value
    if isinstance(value, Mapping):
        result: dict[str, Any] = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise NotJsonError(path, key, f"has a key {key!r} of type {type(key).__name__}: JSON keys are strings")
            result[key] = json_safe(item, _child(path, key))
        return result
    if isinstance(value, list | tuple):
        return [json_safe(item, f"{path}[{index}]") for index, item in enumerate(value)]
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise NotJsonError(path, value, f"Decimal {value} is not a number: send a finite amount")
        return format(value, "f")
    if isinstance(value, datetime):
        if value.tzinfo is None or value.utcoffset() is None:
            raise NotJsonError(
                path, value, f"datetime {value.isoformat()} has no time zone: pass an aware datetime (UTC)"
            )
        return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, Enum):
        return json_safe(value.value, path)
    raise NotJsonError(
        path, value, f"a {type(value).__name__} is not a JSON value: send a string, number, boolean, object or list"
    )


def dumps(value: Any) -> str:
    """Compact JSON text (no spaces, UTF-8 characters kept, NaN refused): the form stored and sent."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)


class CloudEvent(BaseModel):
    """A CloudEvents 1.0 envelope in the JSON format, as the suite publishes it.

    Immutable. Build one with :func:`new_event`; read a stored one with :meth:`from_json`.

    :ivar specversion: always ``"1.0"``.
    :ivar id: the event id (see :func:`new_event_id`); unique per ``source``.
    :ivar source: always ``"com.demobank"``.
    :ivar type: the event type, e.g. ``transaction.created`` (a catalog entry).
    :ivar time: when the occurrence happened, UTC, millisecond precision.
    :ivar subject: what the event is about within the source, e.g. the transaction id (optional).
    :ivar datacontenttype: always ``"application/json"``.
    :ivar dataschema: the URI of the catalog schema (version) that ``data`` conforms to (optional).
    :ivar publisher: who published it, ``user:<name>`` or ``dag:<dag_id>`` (extension attribute; ``None`` only in
        envelopes stored before publishers were recorded).
    :ivar data: the payload, a JSON object.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    specversion: Literal["1.0"] = SPEC_VERSION
    id: str = Field(pattern=EVENT_ID_PATTERN)
    source: str = Field(default=SOURCE, min_length=1)
    type: str = Field(pattern=EVENT_TYPE_PATTERN, max_length=200)
    time: datetime
    subject: str | None = Field(default=None, min_length=1, max_length=MAX_SUBJECT_LENGTH)
    datacontenttype: Literal["application/json"] = DATA_CONTENT_TYPE
    dataschema: str | None = Field(default=None, pattern=r"^[a-zA-Z][a-zA-Z0-9+.-]*:\S+$")
    publisher: str | None = Field(default=None, pattern=PUBLISHER_PATTERN)
    data: dict[str, Any]

    @field_validator("time")
    @classmethod
    def _utc_millis(cls, value: datetime) -> datetime:
        return utc_millis(value)

    @field_serializer("time")
    def _rfc3339(self, value: datetime) -> str:
        return format_time(value)

    def to_dict(self) -> dict[str, Any]:
        """The envelope as a JSON object, unset optional attributes left out, attributes in the spec's order."""
        return {
            key: value
            for key, value in (
                ("specversion", self.specversion),
                ("id", self.id),
                ("source", self.source),
                ("type", self.type),
                ("time", format_time(self.time)),
                ("subject", self.subject),
                ("datacontenttype", self.datacontenttype),
                ("dataschema", self.dataschema),
                ("publisher", self.publisher),
                ("data", self.data),
            )
            if value is not None
        }

    def to_json(self) -> str:
        """The envelope as compact JSON text (what the outbox stores and targets receive).

        :raises ValueError: when ``data`` holds a value JSON cannot represent (use :func:`json_safe` first).
        """
        return dumps(self.to_dict())

    def to_bytes(self) -> bytes:
        """:meth:`to_json` encoded as UTF-8."""
        return self.to_json().encode("utf-8")

    @property
    def size_bytes(self) -> int:
        """The size of the envelope's JSON text in UTF-8 bytes (what size limits count)."""
        return len(self.to_bytes())

    @classmethod
    def from_json(cls, text: str | bytes) -> CloudEvent:
        """Read an envelope from its JSON text.

        :raises pydantic.ValidationError: (a :class:`ValueError`) when the text is not a valid envelope.
        """
        return cls.model_validate_json(text)


def new_event(
    type: str,  # the CloudEvents attribute's name
    data: Mapping[str, Any],
    subject: str | None = None,
    *,
    dataschema: str | None = None,
    time: datetime | None = None,
    event_id: str | None = None,
    publisher: str | None = None,
) -> CloudEvent:
    """Build an envelope (no catalog validation: see :func:`demobank.events.outbox.publish`).

    :param type: the event type, e.g. ``transaction.created``.
    :param data: the payload; converted with :func:`json_safe`.
    :param subject: what the event is about, e.g. the transaction id.
    :param dataschema: the URI of the schema version ``data`` conforms to.
    :param time: when the occurrence happened (aware); now when not given.
    :param event_id: the id; a new :func:`new_event_id` when not given.
    :param publisher: who publishes it (see :func:`check_publisher`).
    :raises NotJsonError: when ``data`` holds a value JSON cannot represent.
    :raises pydantic.ValidationError: (a :class:`ValueError`) for a malformed type, id, subject or schema URI.
    """
    if not isinstance(data, Mapping):
        raise NotJsonError("data", data, f"is a {data.__class__.__name__}: an event's data must be a JSON object")
    return CloudEvent(
        id=event_id or new_event_id(),
        type=type,
        time=time if time is not None else datetime.now(UTC),
        subject=subject,
        dataschema=dataschema,
        publisher=publisher,
        data=json_safe(data),
    )


def is_event_type(value: str) -> bool:
    """Whether ``value`` has the form of an event type (``word.word[.word…]``, lower case)."""
    return isinstance(value, str) and _TYPE_RE.fullmatch(value) is not None


def publisher_problem(value: Any) -> str | None:
    """What is wrong with a ``publisher`` value (``None`` when it is valid)."""
    if isinstance(value, str) and _PUBLISHER_RE.fullmatch(value) is not None:
        return None
    return (f"publisher {str(value)[:80]!r} is not {' or '.join(f'{kind}:<name>' for kind in PUBLISHER_KINDS)} with a "
            f"name of 1 to {MAX_PUBLISHER_NAME_LENGTH} ASCII letters, digits or _ . @ + - (e.g. "
            "'dag:data_factory_transactions', 'user:admin')")


def check_publisher(value: Any) -> str:
    """Return ``value`` if it is a valid ``publisher`` (``user:<name>`` or ``dag:<dag_id>``).

    :raises ValueError: saying what is wrong and what a publisher looks like.
    """
    problem = publisher_problem(value)
    if problem is not None:
        raise ValueError(problem)
    return value


def _publisher(kind: str, name: Any, what: str) -> str:
    value = f"{kind}:{name}" if isinstance(name, str) else None
    if publisher_problem(value) is not None:
        raise ValueError(
            f"{what} {str(name)[:80]!r} cannot be recorded as the publisher of an event: it must be 1 to "
            f"{MAX_PUBLISHER_NAME_LENGTH} ASCII letters, digits or _ . @ + -"
        )
    return value  # type: ignore[return-value]


def user_publisher(user_name: str) -> str:
    """The publisher of events a signed-in Airflow user publishes (API, test events): ``user:<name>``.

    :raises ValueError: for a name that a publisher cannot carry (see :data:`PUBLISHER_PATTERN`).
    """
    return _publisher("user", user_name, "user name")


def dag_publisher(dag_id: str) -> str:
    """The publisher of events a pipeline task publishes: ``dag:<dag_id>``.

    :raises ValueError: for a DAG id that a publisher cannot carry (see :data:`PUBLISHER_PATTERN`).
    """
    return _publisher("dag", dag_id, "DAG id")
