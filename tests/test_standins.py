"""The local AWS stand-in of `make run`: the patched moto server answers like moto's own, and the audit recorder
keeps the audit queue drained into its record, each message once, none lost (real servers, real boto3)."""

from __future__ import annotations

import json
import subprocess
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
import pytest

from demobank.standins import EVENT_BUS_NAME, EVENT_SOURCE, provision_aws
from demobank.standins.audit_recorder import AuditRecorder, RecordReader, read_record, record_line
from tests.conftest import free_port
from tests.events.conftest_moto import _wait_for_port, moto_server_command

REGION = "us-east-1"


class Moto:
    def __init__(self, url: str) -> None:
        self.url = url
        session = boto3.session.Session(aws_access_key_id="testing", aws_secret_access_key="testing",
                                        region_name=REGION)
        self.events = session.client("events", endpoint_url=url)
        self.sqs = session.client("sqs", endpoint_url=url)
        self.queue_url = provision_aws(url, region=REGION).queue_url


def _start(tmp_path: Path, plain: bool) -> Iterator[Moto]:
    port = free_port()
    log_path = tmp_path / f"moto-{'plain' if plain else 'standin'}.log"
    with log_path.open("wb") as log_file:
        process = subprocess.Popen([*moto_server_command(plain), "-H", "127.0.0.1", "-p", str(port)],
                                   stdout=log_file, stderr=subprocess.STDOUT)
    try:
        _wait_for_port(port, process, log_path)
        yield Moto(f"http://127.0.0.1:{port}")
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture(name="standin")
def standin_fixture(tmp_path: Path) -> Iterator[Moto]:
    yield from _start(tmp_path, plain=False)


@pytest.fixture(name="plain")
def plain_fixture(tmp_path: Path) -> Iterator[Moto]:
    yield from _start(tmp_path, plain=True)


def _entries(first: int, count: int) -> list[dict[str, Any]]:
    return [{"Source": EVENT_SOURCE, "DetailType": "transaction.created", "EventBusName": EVENT_BUS_NAME,
             "Detail": json.dumps({"id": f"evt-{n:05d}", "type": "transaction.created", "n": n})}
            for n in range(first, first + count)]


def _script(moto: Moto) -> dict[str, Any]:
    """The same calls against a server; what it answers, without ids, handles and times."""
    answers: dict[str, Any] = {}
    for first in range(0, 60, 10):
        assert moto.events.put_events(Entries=_entries(first, 10))["FailedEntryCount"] == 0

    def counts() -> dict[str, str]:
        return moto.sqs.get_queue_attributes(QueueUrl=moto.queue_url, AttributeNames=[
            "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible",
            "ApproximateNumberOfMessagesDelayed"])["Attributes"]

    answers["after send"] = counts()
    answers["all attributes"] = sorted(moto.sqs.get_queue_attributes(
        QueueUrl=moto.queue_url, AttributeNames=["All"])["Attributes"])
    received = moto.sqs.receive_message(QueueUrl=moto.queue_url, MaxNumberOfMessages=10, VisibilityTimeout=300,
                                        AttributeNames=["All"])["Messages"]
    answers["received"] = sorted(json.loads(m["Body"])["detail"]["n"] for m in received)
    answers["after receive"] = counts()
    handles = [m["ReceiptHandle"] for m in received]
    deleted = moto.sqs.delete_message_batch(QueueUrl=moto.queue_url, Entries=[
        {"Id": f"d{n}", "ReceiptHandle": handle} for n, handle in enumerate(handles[:4])])
    answers["delete 4"] = (sorted(e["Id"] for e in deleted.get("Successful", [])), deleted.get("Failed", []))
    again = moto.sqs.delete_message_batch(QueueUrl=moto.queue_url, Entries=[
        {"Id": "again", "ReceiptHandle": handles[0]},  # deleted before: a success
        {"Id": "next", "ReceiptHandle": handles[4]},
        {"Id": "bogus", "ReceiptHandle": "not-a-receipt-handle"},
    ])
    answers["delete mixed"] = (sorted(e["Id"] for e in again.get("Successful", [])),
                               again.get("Failed", []))
    answers["after delete"] = counts()
    rest = []
    while batch := moto.sqs.receive_message(QueueUrl=moto.queue_url, MaxNumberOfMessages=10,
                                            VisibilityTimeout=300).get("Messages", []):
        rest += [json.loads(m["Body"])["detail"]["n"] for m in batch]
    answers["the rest"] = sorted(rest)
    answers["after all received"] = counts()
    return answers


def test_the_stand_in_answers_what_moto_answers(standin: Moto, plain: Moto) -> None:
    ours, theirs = _script(standin), _script(plain)
    assert ours == theirs
    assert ours["after send"] == {"ApproximateNumberOfMessages": "60", "ApproximateNumberOfMessagesNotVisible": "0",
                                  "ApproximateNumberOfMessagesDelayed": "0"}
    assert ours["after delete"]["ApproximateNumberOfMessagesNotVisible"] == "5"
    assert ours["delete mixed"][0] == ["again", "next"]
    assert [e["Id"] for e in ours["delete mixed"][1]] == ["bogus"]
    assert ours["delete mixed"][1][0]["Code"] == "ReceiptHandleIsInvalid"
    assert len(ours["the rest"]) == 50


def test_with_thousands_of_messages_waiting_the_counts_are_exact_when_asked_for(standin: Moto) -> None:
    """The sends skip moto's counting scans; GetQueueAttributes still counts every message."""
    for first in range(0, 3_000, 10):
        standin.events.put_events(Entries=_entries(first, 10))
    attributes = standin.sqs.get_queue_attributes(QueueUrl=standin.queue_url,
                                                  AttributeNames=["ApproximateNumberOfMessages"])["Attributes"]
    assert attributes["ApproximateNumberOfMessages"] == "3000"


class _FailingFirstDeletes:
    """An SQS client whose first ``failures`` batch deletes fail after the call reached nobody (the recorder
    crashed between writing and deleting): the messages come back after their visibility timeout."""

    def __init__(self, sqs: Any, failures: int) -> None:
        self.sqs = sqs
        self.failures = failures

    def receive_message(self, **kwargs: Any) -> Any:
        return self.sqs.receive_message(**{**kwargs, "VisibilityTimeout": 1})

    def delete_message_batch(self, **kwargs: Any) -> Any:
        if self.failures:
            self.failures -= 1
            raise ConnectionError("the recorder died before deleting")
        return self.sqs.delete_message_batch(**kwargs)


def _run(recorder: AuditRecorder, until: Any, timeout: float = 120) -> None:
    thread = threading.Thread(target=recorder.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    while not until() and time.monotonic() < deadline:
        time.sleep(0.2)
    recorder.stopping.set()
    thread.join(timeout=30)


def test_the_recorder_keeps_the_queue_drained_and_records_every_message_once(standin: Moto, tmp_path: Path) -> None:
    output = tmp_path / "record.jsonl"
    recorder = AuditRecorder(_FailingFirstDeletes(standin.sqs, failures=3), standin.queue_url, output, receivers=4)
    for first in range(0, 2_000, 10):
        standin.events.put_events(Entries=_entries(first, 10))
    wanted = {f"evt-{n:05d}" for n in range(2_000)}

    def queue_empty_and_all_recorded() -> bool:
        attributes = standin.sqs.get_queue_attributes(QueueUrl=standin.queue_url, AttributeNames=[
            "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"])["Attributes"]
        return (recorder.recorded >= len(wanted) and attributes["ApproximateNumberOfMessages"] == "0"
                and attributes["ApproximateNumberOfMessagesNotVisible"] == "0")

    _run(recorder, queue_empty_and_all_recorded)

    lines = list(read_record(output))
    ids = [line["event_id"] for line in lines]
    assert set(ids) == wanted and len(ids) == len(wanted)  # none lost, none twice
    assert recorder.duplicates >= 1  # the messages whose delete failed came back and were not written again
    first = lines[0]
    assert first["type"] == "transaction.created" and first["body"]["source"] == EVENT_SOURCE
    assert first["body"]["detail"]["id"] == first["event_id"] and first["message_id"] and first["received_at"]
    assert queue_empty_and_all_recorded()


def test_the_record_reader_returns_complete_lines_only(tmp_path: Path) -> None:
    path = tmp_path / "record.jsonl"
    message = {"MessageId": "m-1", "Body": json.dumps({"detail": {"id": "e-1", "type": "t"}})}
    line = record_line(message, datetime(2026, 1, 3, tzinfo=UTC))
    path.write_text(line + "\n" + line[:20])
    reader = RecordReader(path)
    assert [entry["event_id"] for entry in reader.read_new()] == ["e-1"]
    with path.open("a") as record:
        record.write(line[20:] + "\n")
    assert [entry["message_id"] for entry in reader.read_new()] == ["m-1"]
    assert reader.read_new() == []
    not_json = json.loads(record_line({"MessageId": "m-2", "Body": "plain text"},
                                      datetime(2026, 1, 3, tzinfo=UTC)))
    assert not_json["body"] == "plain text" and not_json["event_id"] is None

