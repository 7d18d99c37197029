"""The EventBridge publisher against moto's real server (bus → rule → SQS audit queue), through the provider's hook.

Partial failures are made by thin wrappers around the real moto client: the entries they let through are really
published, so the audit queue shows what was sent twice or not at all.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections import Counter
from datetime import UTC, datetime
from typing import Any

import pytest
from airflow.providers.amazon.aws.hooks.eventbridge import EventBridgeHook
from botocore.exceptions import ClientError

from demobank.events.eventbridge import (
    DEFAULT_MAX_BYTES,
    EVENT_SOURCE,
    Delivered,
    EventBridgePublisher,
    Failed,
    RetryPolicy,
    entry_for,
    entry_size,
    plan_batches,
)
from demobank.standins import EVENT_BUS_NAME
from tests.events.conftest_moto import (  # noqa: F401 - the *_fixture functions register the fixtures
    MotoAws,
    audit_queue_fixture,
    aws_connection_json,
    aws_default_fixture,
    free_port,
    moto_aws_fixture,
)

FAST = RetryPolicy(attempts=3, initial=0.01, maximum=0.05, jitter=0.01)


def make_envelope(n: int = 0, *, data: dict[str, Any] | None = None, event_type: str = "transaction.created",
                  time: str = "2026-01-07T10:00:00Z") -> dict[str, Any]:
    return {
        "specversion": "1.0",
        "id": f"evt-{uuid.uuid4()}",
        "source": "com.demobank",
        "type": event_type,
        "time": time,
        "subject": f"accounts/ACC-{n:04d}",
        "datacontenttype": "application/json",
        "dataschema": f"https://schemas.demobank.example/{event_type}/1.json",
        "data": data if data is not None else {"transaction_id": f"T-{n}", "amount": "12.50", "currency": "EUR"},
    }


def hook() -> EventBridgeHook:
    return EventBridgeHook(aws_conn_id="aws_default", region_name="us-east-1")


def count_put_events(client: Any) -> list[list[dict[str, Any]]]:
    """Record the entries of every PutEvents call the (real) client makes."""
    calls: list[list[dict[str, Any]]] = []

    def record(params: dict[str, Any], **_: Any) -> None:
        calls.append(list(params["Entries"]))

    client.meta.events.register("provide-client-params.events.PutEvents", record)
    return calls


def ids_of(entries: list[dict[str, Any]]) -> list[str]:
    return [json.loads(entry["Detail"])["id"] for entry in entries]


class WrappedClient:
    """The real moto client, with put_events answering chosen envelope ids with an error for their first
    ``times`` sends (per entry); everything else goes to moto for real."""

    def __init__(self, client: Any, fail: dict[str, tuple[str, int]] | None = None) -> None:
        self.client = client
        self.fail = {key: [code, times] for key, (code, times) in (fail or {}).items()}
        self.calls: list[list[str]] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.client, name)

    def put_events(self, Entries: list[dict[str, Any]]) -> dict[str, Any]:
        ids = ids_of(Entries)
        self.calls.append(ids)
        results: dict[int, dict[str, str]] = {}
        through: list[int] = []
        for position, envelope_id in enumerate(ids):
            rule = self.fail.get(envelope_id)
            if rule and rule[1] > 0:
                rule[1] -= 1
                results[position] = {"ErrorCode": rule[0], "ErrorMessage": f"{rule[0]} (injected)"}
            else:
                through.append(position)
        if through:
            real = self.client.put_events(Entries=[Entries[p] for p in through])
            for position, item in zip(through, real["Entries"], strict=True):
                results[position] = item
        entries = [results[p] for p in range(len(Entries))]
        return {"FailedEntryCount": sum(1 for e in entries if "ErrorCode" in e), "Entries": entries}


def sent_count(calls: list[list[str]]) -> Counter[str]:
    return Counter(envelope_id for call in calls for envelope_id in call)


def client_error(code: str, status: int, message: str = "injected") -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": message},
                        "ResponseMetadata": {"HTTPStatusCode": status}}, "PutEvents")


# -- entries and batches (no server) ----------------------------------------------------------------------


def test_entry_for_maps_the_envelope_and_entry_size_counts_utf8_bytes():
    envelope = make_envelope(data={"note": "café ✓"})
    entry = entry_for(envelope, EVENT_BUS_NAME)

    assert entry["Source"] == EVENT_SOURCE == "com.demobank"
    assert entry["DetailType"] == "transaction.created"
    assert json.loads(entry["Detail"]) == envelope
    assert entry["EventBusName"] == EVENT_BUS_NAME
    assert entry["Time"] == datetime(2026, 1, 7, 10, 0, tzinfo=UTC)
    assert entry["Resources"] == []
    detail_bytes = len(entry["Detail"].encode("utf-8"))
    assert detail_bytes > len(entry["Detail"])  # the non-ASCII characters count in bytes
    assert entry_size(entry) == 14 + len("com.demobank") + len("transaction.created") + detail_bytes
    assert entry_size({**entry, "Time": None, "Resources": ["arn:aws:x:é"]}) == entry_size(entry) - 14 + 12


@pytest.mark.parametrize(("change", "problem"), [
    ({"type": ""}, "no 'type'"),
    ({"time": "yesterday"}, "not an RFC 3339"),
    ({"time": "2026-01-07T10:00:00"}, "no UTC offset"),
    ({"data": {"amount": float("nan")}}, "JSON"),
])
def test_entry_for_refuses_a_malformed_envelope(change, problem):
    with pytest.raises(ValueError, match=problem):
        entry_for({**make_envelope(), **change}, EVENT_BUS_NAME)


def test_plan_batches_respects_count_and_size_and_reports_oversize_entries():
    small = [entry_for(make_envelope(n), EVENT_BUS_NAME) for n in range(25)]
    assert [len(batch) for batch in plan_batches(small)] == [10, 10, 5]
    assert [i for batch in plan_batches(small) for i in batch] == list(range(25))  # in order, each once

    size = entry_size(small[0])
    plan = plan_batches(small[:7], max_bytes=3 * size)
    assert [len(batch) for batch in plan] == [3, 3, 1]

    big = entry_for(make_envelope(data={"blob": "x" * 5000}), EVENT_BUS_NAME)
    plan = plan_batches([small[0], big, small[1]], max_bytes=4096)
    assert plan == [[0, 2]]
    assert plan.oversize == {1: entry_size(big)}

    with pytest.raises(ValueError, match="between 1 and 10"):
        plan_batches(small, max_entries=11)


# -- publishing to moto -----------------------------------------------------------------------------------


def test_25_envelopes_go_in_3_requests_and_reach_the_audit_queue_once_each(audit_queue: MotoAws, aws_default, caplog):
    secret = f"SECRET-PAYLOAD-{uuid.uuid4()}"
    envelopes = [make_envelope(n, data={"memo": secret, "n": n}) for n in range(25)]
    eventbridge = hook()
    calls = count_put_events(eventbridge.conn)
    publisher = EventBridgePublisher(eventbridge, EVENT_BUS_NAME, retry=FAST)

    with caplog.at_level(logging.DEBUG, logger="demobank.events.eventbridge"):
        result = publisher.publish(envelopes)

    assert result.failed == {}, result.as_dict()
    assert list(result) == [e["id"] for e in envelopes]
    assert result.requests == 3
    assert [len(call) for call in calls] == [10, 10, 5]
    bodies = audit_queue.receive_audit_messages(expected=25)
    assert len(bodies) == 25
    by_envelope_id = {body["detail"]["id"]: body for body in bodies}
    assert len(by_envelope_id) == 25
    for envelope in envelopes:
        body = by_envelope_id[envelope["id"]]
        assert body["detail"] == envelope
        assert body["source"] == "com.demobank"
        assert body["detail-type"] == envelope["type"]
        assert body["id"] == result[envelope["id"]].event_id  # EventBridge's id is the one reported
    assert len({body["id"] for body in bodies}) == 25
    assert "25 delivered" in caplog.text
    assert secret not in caplog.text


def test_large_envelopes_are_batched_by_size(audit_queue: MotoAws, aws_default):
    envelopes = [make_envelope(n, data={"blob": "x" * 100_000}) for n in range(7)]
    eventbridge = hook()
    calls = count_put_events(eventbridge.conn)

    result = EventBridgePublisher(eventbridge, EVENT_BUS_NAME, retry=FAST).publish(envelopes)

    assert result.failed == {}
    assert [len(call) for call in calls] == [2, 2, 2, 1]  # three ~100 KB entries would exceed 256 KB
    for call in calls:
        assert sum(entry_size(entry) for entry in call) <= DEFAULT_MAX_BYTES
    bodies = audit_queue.receive_audit_messages(expected=7)
    assert sorted(b["detail"]["id"] for b in bodies) == sorted(e["id"] for e in envelopes)


def test_an_oversize_envelope_fails_with_its_size_and_the_others_are_delivered(audit_queue: MotoAws, aws_default):
    envelopes = [make_envelope(n) for n in range(4)]
    huge = make_envelope(99, data={"blob": "y" * 300_000})
    envelopes.insert(2, huge)
    size = entry_size(entry_for(huge, EVENT_BUS_NAME))
    eventbridge = hook()
    calls = count_put_events(eventbridge.conn)

    result = EventBridgePublisher(eventbridge, EVENT_BUS_NAME, retry=FAST).publish(envelopes)

    outcome = result[huge["id"]]
    assert isinstance(outcome, Failed)
    assert (outcome.code, outcome.transient, outcome.attempts) == ("EntryTooLarge", False, 0)
    assert str(size) in outcome.message and str(DEFAULT_MAX_BYTES) in outcome.message
    assert set(result.delivered) == {e["id"] for e in envelopes if e is not huge}
    assert huge["id"] not in {i for call in calls for i in ids_of(call)}
    bodies = audit_queue.receive_audit_messages(expected=4)
    assert sorted(b["detail"]["id"] for b in bodies) == sorted(result.delivered)


def test_a_configured_size_limit_is_honoured(audit_queue: MotoAws, aws_default):
    envelopes = [make_envelope(n, data={"blob": "z" * 1500}) for n in range(6)]
    eventbridge = hook()
    calls = count_put_events(eventbridge.conn)

    result = EventBridgePublisher(eventbridge, EVENT_BUS_NAME, max_bytes=4096, retry=FAST).publish(envelopes)

    assert result.failed == {}
    assert [len(call) for call in calls] == [2, 2, 2]
    assert all(sum(entry_size(e) for e in call) <= 4096 for call in calls)
    assert len(audit_queue.receive_audit_messages(expected=6)) == 6


def test_partial_failure_resends_only_the_failed_entries(audit_queue: MotoAws):
    envelopes = [make_envelope(n) for n in range(12)]
    flaky_ids = [envelopes[1]["id"], envelopes[7]["id"], envelopes[11]["id"]]
    client = WrappedClient(audit_queue.events, {i: ("ThrottlingException", 1) for i in flaky_ids})
    waits: list[float] = []

    result = EventBridgePublisher(client, EVENT_BUS_NAME, retry=FAST, sleep=waits.append).publish(envelopes)

    assert result.failed == {}, result.as_dict()
    ids = [e["id"] for e in envelopes]
    assert client.calls == [ids[:10], [ids[1], ids[7]], ids[10:], [ids[11]]]  # each batch, then its failed entries
    sent = sent_count(client.calls)
    assert {i: n for i, n in sent.items() if n > 1} == dict.fromkeys(flaky_ids, 2)  # nothing else sent twice
    assert all(isinstance(result[i], Delivered) and result[i].attempts == 2 for i in flaky_ids)
    assert len(waits) == 2 and all(w > 0 for w in waits)  # one backoff per batch that had failures
    bodies = audit_queue.receive_audit_messages(expected=12)
    assert Counter(b["detail"]["id"] for b in bodies) == Counter(e["id"] for e in envelopes)


def test_transient_entry_errors_give_up_after_the_policy_attempts(audit_queue: MotoAws):
    envelopes = [make_envelope(n) for n in range(3)]
    stuck = envelopes[0]["id"]
    client = WrappedClient(audit_queue.events, {stuck: ("InternalFailure", 99)})

    result = EventBridgePublisher(client, EVENT_BUS_NAME, retry=FAST, sleep=lambda _: None).publish(envelopes)

    outcome = result[stuck]
    assert isinstance(outcome, Failed)
    assert (outcome.code, outcome.transient, outcome.attempts) == ("InternalFailure", True, FAST.attempts)
    assert "3 attempt(s)" in outcome.message
    assert sent_count(client.calls) == Counter({stuck: 3, envelopes[1]["id"]: 1, envelopes[2]["id"]: 1})
    assert len(audit_queue.receive_audit_messages(expected=2)) == 2


def test_a_malformed_detail_rejected_by_eventbridge_is_not_retried(audit_queue: MotoAws):
    envelopes = [make_envelope(n) for n in range(4)]
    bad = envelopes[2]["id"]

    class CorruptingClient(WrappedClient):
        def put_events(self, Entries):
            self.calls.append(ids_of(Entries))
            entries = [{**e, "Detail": e["Detail"][:-1]} if ids_of([e]) == [bad] else e for e in Entries]
            return self.client.put_events(Entries=entries)  # moto judges the broken Detail itself

    client = CorruptingClient(audit_queue.events)
    result = EventBridgePublisher(client, EVENT_BUS_NAME, retry=FAST, sleep=lambda _: None).publish(envelopes)

    outcome = result[bad]
    assert isinstance(outcome, Failed)
    assert (outcome.code, outcome.transient, outcome.attempts) == ("MalformedDetail", False, 1)
    assert len(client.calls) == 1
    bodies = audit_queue.receive_audit_messages(expected=3)
    assert sorted(b["detail"]["id"] for b in bodies) == sorted(e["id"] for e in envelopes if e["id"] != bad)


@pytest.mark.parametrize(("code", "target_error"), [("ValidationException", False), ("AccessDeniedException", True)])
def test_permanent_entry_errors_are_reported_not_retried(audit_queue: MotoAws, code, target_error):
    envelopes = [make_envelope(n) for n in range(5)]
    refused = envelopes[3]["id"]
    client = WrappedClient(audit_queue.events, {refused: (code, 99)})
    waits: list[float] = []

    result = EventBridgePublisher(client, EVENT_BUS_NAME, retry=FAST, sleep=waits.append).publish(envelopes)

    outcome = result[refused]
    assert isinstance(outcome, Failed)
    assert (outcome.code, outcome.transient, outcome.target_error) == (code, False, target_error)
    assert code in outcome.message
    assert client.calls == [[e["id"] for e in envelopes]] and waits == []
    assert len(result.delivered) == 4
    assert len(audit_queue.receive_audit_messages(expected=4)) == 4


def test_a_throttled_request_is_sent_again_whole(audit_queue: MotoAws):
    envelopes = [make_envelope(n) for n in range(5)]

    class ThrottledOnce(WrappedClient):
        def put_events(self, Entries):
            self.calls.append(ids_of(Entries))
            if len(self.calls) == 1:
                raise client_error("ThrottlingException", 400, "Rate exceeded")
            return self.client.put_events(Entries=Entries)

    client = ThrottledOnce(audit_queue.events)
    result = EventBridgePublisher(client, EVENT_BUS_NAME, retry=FAST, sleep=lambda _: None).publish(envelopes)

    assert result.failed == {}
    assert len(client.calls) == 2 and client.calls[0] == client.calls[1]
    assert all(result[e["id"]].attempts == 2 for e in envelopes)
    bodies = audit_queue.receive_audit_messages(expected=5)
    assert Counter(b["detail"]["id"] for b in bodies) == Counter(e["id"] for e in envelopes)


def test_a_request_refused_whole_is_split_so_one_bad_entry_fails_alone(audit_queue: MotoAws):
    envelopes = [make_envelope(n) for n in range(5)]
    poison = envelopes[1]["id"]

    class RefusesPoison(WrappedClient):
        def put_events(self, Entries):
            self.calls.append(ids_of(Entries))
            if poison in self.calls[-1]:
                raise client_error("ValidationException", 400, "1 validation error detected")
            return self.client.put_events(Entries=Entries)

    client = RefusesPoison(audit_queue.events)
    result = EventBridgePublisher(client, EVENT_BUS_NAME, retry=FAST, sleep=lambda _: None).publish(envelopes)

    assert set(result.failed) == {poison}
    assert result[poison].code == "ValidationException" and not result[poison].transient
    assert len(client.calls) == 1 + 5
    bodies = audit_queue.receive_audit_messages(expected=4)
    assert Counter(b["detail"]["id"] for b in bodies) == Counter(e["id"] for e in envelopes if e["id"] != poison)


def test_a_missing_bus_fails_every_event_permanently_naming_the_bus(audit_queue: MotoAws, aws_default):
    envelopes = [make_envelope(n) for n in range(25)]
    eventbridge = hook()
    calls = count_put_events(eventbridge.conn)

    result = EventBridgePublisher(eventbridge, "no-such-bus", retry=FAST, sleep=lambda _: None).publish(envelopes)

    assert result.delivered == {}
    assert len(calls) == 1  # the other batches are not sent: they would hit the same error
    for envelope in envelopes:
        outcome = result[envelope["id"]]
        assert isinstance(outcome, Failed)
        assert (outcome.code, outcome.transient, outcome.target_error) == ("ResourceNotFoundException", False, True)
        assert "'no-such-bus'" in outcome.message and "'aws_default'" in outcome.message
        assert "create the bus" in outcome.message
    assert audit_queue.receive_audit_messages(expected=0, settle=0.5) == []


def test_an_unreachable_endpoint_gives_transient_failures_after_the_retries(monkeypatch):
    url = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("AIRFLOW_CONN_AWS_DEFAULT",
                       aws_connection_json(url, config_kwargs={"retries": {"total_max_attempts": 1}}))
    envelopes = [make_envelope(n) for n in range(12)]
    waits: list[float] = []

    result = EventBridgePublisher(hook(), EVENT_BUS_NAME, retry=FAST, sleep=waits.append).publish(envelopes)

    assert result.delivered == {}
    assert result.requests == 2 * FAST.attempts  # two batches, each tried `attempts` times
    assert len(waits) == 2 * (FAST.attempts - 1)
    for envelope in envelopes:
        outcome = result[envelope["id"]]
        assert isinstance(outcome, Failed)
        assert (outcome.code, outcome.transient, outcome.attempts) == ("EndpointConnectionError", True, 3)
        assert url in outcome.message


def test_bad_envelopes_fail_alone_and_programming_errors_raise_before_sending(audit_queue: MotoAws):
    good = [make_envelope(n) for n in range(3)]
    bad = {**make_envelope(9), "time": "not a time"}
    client = WrappedClient(audit_queue.events)

    result = EventBridgePublisher(client, EVENT_BUS_NAME, retry=FAST).publish([good[0], bad, *good[1:]])

    assert list(result) == [good[0]["id"], bad["id"], good[1]["id"], good[2]["id"]]
    assert result[bad["id"]].code == "InvalidEnvelope" and not result[bad["id"]].transient
    assert set(result.delivered) == {e["id"] for e in good}
    assert len(audit_queue.receive_audit_messages(expected=3)) == 3

    client.calls.clear()
    publisher = EventBridgePublisher(client, EVENT_BUS_NAME, retry=FAST)
    with pytest.raises(ValueError, match="more than once"):
        publisher.publish([good[0], good[0]])
    with pytest.raises(ValueError, match=r"envelopes\[1\] has no string 'id'"):
        publisher.publish([make_envelope(), {"type": "x"}])
    assert client.calls == []
    assert publisher.publish([]).requests == 0
