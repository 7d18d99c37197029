"""The CloudEvents envelope: ids, time format, JSON form, size, and the conversion of data to JSON."""

from __future__ import annotations

import json
import math
import re
import uuid
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from enum import Enum

import pytest
from pydantic import ValidationError

from demobank.events.envelope import (
    DATA_CONTENT_TYPE,
    SOURCE,
    SPEC_VERSION,
    CloudEvent,
    NotJsonError,
    event_id_time,
    format_time,
    json_safe,
    new_event,
    new_event_id,
)

SCHEMA = "https://schemas.demobank.com/events/transaction.created/v1.schema.json"


def test_event_ids_are_uuid7_unique_and_increasing() -> None:
    before = datetime.now(UTC) - timedelta(milliseconds=1)
    ids = [new_event_id() for _ in range(20_000)]
    after = datetime.now(UTC) + timedelta(milliseconds=1)

    assert len(set(ids)) == len(ids)
    assert ids == sorted(ids)
    for event_id in (ids[0], ids[-1]):
        parsed = uuid.UUID(event_id)
        assert (parsed.version, parsed.variant) == (7, uuid.RFC_4122)
        assert str(parsed) == event_id  # canonical lower-case form
    assert before <= event_id_time(ids[0]) <= event_id_time(ids[-1]) <= after + timedelta(milliseconds=10)
    assert event_id_time(str(uuid.uuid4())) is None


def test_event_ids_stay_increasing_within_one_millisecond_and_when_the_clock_steps_back(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import demobank.events.envelope as envelope

    now_ns = [envelope._time.time_ns() + 10**9]  # ahead of every id made so far
    monkeypatch.setattr(envelope._time, "time_ns", lambda: now_ns[0])
    frozen = [new_event_id() for _ in range(5000)]  # more than the 12-bit counter holds in one millisecond
    now_ns[0] -= 5 * 10**9  # the clock steps back 5 s
    stepped_back = [new_event_id() for _ in range(10)]

    ids = frozen + stepped_back
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)
    assert event_id_time(frozen[-1]) > event_id_time(frozen[0])  # borrowed the next millisecond(s)


def test_new_event_json_form() -> None:
    time = datetime(2026, 11, 26, 10, 41, 7, 123456, tzinfo=timezone(timedelta(hours=1)))
    event = new_event(
        "transaction.created",
        {"transaction_id": "TXN-20261126A0001", "merchant": {"name": "Café Zoë"}},
        subject="TXN-20261126A0001",
        dataschema=SCHEMA,
        time=time,
    )

    document = json.loads(event.to_json())
    assert list(document) == [
        "specversion", "id", "source", "type", "time", "subject", "datacontenttype", "dataschema", "data",
    ]  # fmt: skip
    assert document["specversion"] == SPEC_VERSION == "1.0"
    assert document["source"] == SOURCE == "com.demobank"
    assert document["datacontenttype"] == DATA_CONTENT_TYPE == "application/json"
    assert document["time"] == "2026-11-26T09:41:07.123Z"  # UTC, milliseconds, Z
    assert event.time == datetime(2026, 11, 26, 9, 41, 7, 123000, tzinfo=UTC)
    assert document["dataschema"] == SCHEMA
    assert document["data"]["merchant"]["name"] == "Café Zoë"
    assert " " not in event.to_json().replace("Café Zoë", "")  # compact
    assert "Café Zoë" in event.to_json()  # UTF-8 kept, not \\u-escaped
    assert event.size_bytes == len(event.to_json().encode("utf-8")) == len(event.to_bytes())
    assert event.size_bytes > len(event.to_json())  # é and ë are two bytes each


def test_unset_optional_attributes_are_left_out() -> None:
    document = json.loads(new_event("demobank.ping", {"message": "ping"}).to_json())

    assert "subject" not in document
    assert "dataschema" not in document
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", document["time"])
    assert abs(datetime.fromisoformat(document["time"]) - datetime.now(UTC)) < timedelta(seconds=5)


def test_round_trip_through_json() -> None:
    event = new_event("demobank.ping", {"message": "ping", "nested": {"list": [1, 2.5, None, True]}}, subject="s")

    again = CloudEvent.from_json(event.to_json())

    assert again == event
    assert again.to_json() == event.to_json()


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("type", "Transaction.Created"),
        ("type", "transaction"),
        ("id", "not-a-uuid"),
        ("specversion", "0.3"),
        ("datacontenttype", "text/plain"),
        ("dataschema", "not a uri"),
        ("subject", ""),
        ("time", datetime(2026, 11, 26, 9, 0)),  # naive
        ("unknown_attribute", "x"),
    ],
)
def test_envelope_refuses_malformed_attributes(field: str, value: object) -> None:
    attributes: dict[str, object] = {
        "id": new_event_id(),
        "type": "transaction.created",
        "time": datetime.now(UTC),
        "data": {},
    }
    attributes[field] = value

    with pytest.raises((ValidationError, ValueError), match=field if field != "time" else "time zone"):
        CloudEvent(**attributes)


def test_envelope_is_immutable() -> None:
    event = new_event("demobank.ping", {"message": "ping"})

    with pytest.raises(ValidationError):
        event.type = "other.type"  # type: ignore[misc]


class Channel(Enum):
    CARD = "card_present"


def test_json_safe_converts_what_producers_have() -> None:
    data = {
        "amount": Decimal("42.50"),
        "big": Decimal("1E+3"),
        "booked_at": datetime(2026, 11, 26, 10, 41, 7, tzinfo=timezone(timedelta(hours=1))),
        "precise": datetime(2026, 11, 26, 9, 0, 0, 123456, tzinfo=UTC),
        "value_date": date(2026, 11, 26),
        "ref": uuid.UUID("12345678-1234-5678-1234-567812345678"),
        "channel": Channel.CARD,
        "pair": (1, "two"),
        "plain": [None, True, 3, 4.5, "x"],
    }

    assert json_safe(data) == {
        "amount": "42.50",
        "big": "1000",
        "booked_at": "2026-11-26T09:41:07Z",
        "precise": "2026-11-26T09:00:00.123456Z",
        "value_date": "2026-11-26",
        "ref": "12345678-1234-5678-1234-567812345678",
        "channel": "card_present",
        "pair": [1, "two"],
        "plain": [None, True, 3, 4.5, "x"],
    }


@pytest.mark.parametrize(
    ("data", "path", "reason"),
    [
        ({"merchant": {"opened_at": datetime(2026, 1, 1)}}, "data.merchant.opened_at", "no time zone"),
        ({"amount": math.nan}, "data.amount", "finite"),
        ({"amount": Decimal("Infinity")}, "data.amount", "finite"),
        ({"tags": [1, {2, 3}]}, "data.tags[1]", "set is not a JSON value"),
        ({"raw": b"bytes"}, "data.raw", "bytes is not a JSON value"),
        ({"map": {1: "a"}}, "data.map", "key 1 of type int"),
        ({"odd key": object()}, 'data["odd key"]', "object is not a JSON value"),
    ],
)
def test_json_safe_refuses_non_json_naming_the_field(data: dict, path: str, reason: str) -> None:
    with pytest.raises(NotJsonError, match=re.escape(reason)) as caught:
        json_safe(data)

    assert caught.value.path == path
    assert str(caught.value).startswith(f"{path}: ")


def test_new_event_refuses_data_that_is_not_an_object() -> None:
    with pytest.raises(NotJsonError, match="must be a JSON object"):
        new_event("demobank.ping", ["ping"])  # type: ignore[arg-type]


def test_format_time_refuses_naive_datetimes() -> None:
    with pytest.raises(ValueError, match="no time zone"):
        format_time(datetime(2026, 11, 26))
    assert format_time(datetime(2026, 11, 26, tzinfo=UTC)) == "2026-11-26T00:00:00.000Z"
