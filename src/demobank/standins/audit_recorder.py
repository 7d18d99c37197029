"""The audit queue's consumer in ``make run``: keeps ``demobank-events-audit`` drained into a JSON-lines file.

Why it exists: moto's SQS costs time proportional to the queue's length on every message it adds, receives or
deletes (each ``SendMessage`` recomputes the queue's message counts over every message), so a queue that only
fills (40,000 events of a business day) slows the bus's rule, and so every ``PutEvents``, quadratically: measured
at 20 events/s with 1,500-3,800 messages waiting (BENCHMARKS.md, ``events_publish``). A real SQS queue has no such
cost, and in production the audit queue has consumers. Locally this recorder is that consumer: it receives
every message, appends it to the record file, and only then deletes it from the queue, so the queue stays short
and nothing is lost (a message whose delete did not happen is received again after its visibility timeout and
received again; the recorder writes a MessageId once, but after a restart it may write one twice: the record is
at least once, like SQS itself; readers count by event id).

One line per message::

    {"received_at": "2026-12-03T17:01:02.345678+00:00", "message_id": "<SQS MessageId>",
     "event_id": "<the CloudEvents envelope id>", "type": "transaction.created", "body": {<the EventBridge event>}}

Read it with ``tail -f .airflow/demobank-events-audit.jsonl`` or :func:`read_record`. ``make run`` starts it
unless ``DEMOBANK_AUDIT_RECORDER=off`` (then the queue keeps what arrives, for boto3 or the AWS CLI to read, and
large loads slow the bus as above). Development only: the suite's production code does not know it exists.

Run: ``python -m demobank.standins.audit_recorder --output FILE`` (``DEMOBANK_MOTO_URL`` names moto).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from demobank.standins import AUDIT_QUEUE_NAME

log = logging.getLogger(__name__)

RECEIVE_WAIT_SECONDS = 1
"""Long polling: an idle recorder asks moto once a second."""
VISIBILITY_TIMEOUT = 60
"""A message received but not deleted (the recorder died in between) is received again after this."""
REMEMBERED_IDS = 200_000
"""The most recent MessageIds the recorder knows it wrote (a received-twice message is written once)."""
RECEIVERS = 4
"""Receive calls in flight: moto answers each in a thread of its own, and the recorder must keep up with the
bus's rule sending (one receive and one delete per 10 messages against one ``PutEvents`` per 10 events)."""


def record_line(message: dict[str, Any], received_at: datetime) -> str:
    """The record's line for one SQS message (``MessageId``, ``Body``)."""
    body: Any = message.get("Body", "")
    try:
        body = json.loads(body)
    except ValueError:
        pass  # not JSON: kept as the text it is
    detail = body.get("detail") if isinstance(body, dict) else None
    envelope = detail if isinstance(detail, dict) else {}
    return json.dumps({"received_at": received_at.isoformat(), "message_id": message.get("MessageId"),
                       "event_id": envelope.get("id"), "type": envelope.get("type"), "body": body},
                      separators=(",", ":"))


def read_record(path: Path | str) -> Iterator[dict[str, Any]]:
    """Every complete line of a record file, oldest first (a line being written is skipped)."""
    yield from RecordReader(path).read_new()


class RecordReader:
    """Reads a record file as it grows: each :meth:`read_new` returns the complete lines added since the last."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self.offset = 0

    def read_new(self) -> list[dict[str, Any]]:
        with self.path.open("rb") as record:
            record.seek(self.offset)
            data = record.read()
        end = data.rfind(b"\n") + 1  # a line being written waits for the next call
        self.offset += end
        return [json.loads(line) for line in data[:end].splitlines() if line]


class AuditRecorder:
    """Receives from the audit queue and appends every message to ``output`` before deleting it."""

    def __init__(self, sqs: Any, queue_url: str, output: Path, *, receivers: int = RECEIVERS) -> None:
        if receivers < 1:
            raise ValueError(f"receivers must be at least 1, got {receivers}")
        self.sqs = sqs
        self.queue_url = queue_url
        self.output = output
        self.receivers = receivers
        self.recorded = 0
        self.duplicates = 0
        self.stopping = threading.Event()
        self._writing = threading.Lock()
        self._seen: OrderedDict[str, None] = OrderedDict()

    def drain_once(self) -> int:
        """One receive (up to 10 messages, long polling), recorded, then deleted; return how many."""
        answer = self.sqs.receive_message(QueueUrl=self.queue_url, MaxNumberOfMessages=10,
                                          WaitTimeSeconds=RECEIVE_WAIT_SECONDS, VisibilityTimeout=VISIBILITY_TIMEOUT)
        messages = answer.get("Messages", [])
        if not messages:
            return 0
        now = datetime.now(UTC)
        with self._writing:
            # SQS delivers at least once (and moto's receive is not atomic: two receivers can get one message):
            # a message already recorded, by its MessageId, is deleted again but not written twice.
            fresh = [message for message in messages if self._first_time(message.get("MessageId"))]
            if fresh:
                with self.output.open("a", encoding="utf-8") as record:
                    record.write("".join(record_line(message, now) + "\n" for message in fresh))
            self.recorded += len(fresh)
            self.duplicates += len(messages) - len(fresh)
        # Deleted only once written: a crash in between records the message twice, never loses it.
        self.sqs.delete_message_batch(QueueUrl=self.queue_url, Entries=[
            {"Id": str(n), "ReceiptHandle": message["ReceiptHandle"]} for n, message in enumerate(messages)])
        return len(messages)

    def _first_time(self, message_id: str | None) -> bool:
        if message_id is None:
            return True
        if message_id in self._seen:
            return False
        self._seen[message_id] = None
        if len(self._seen) > REMEMBERED_IDS:
            self._seen.popitem(last=False)
        return True

    def run(self) -> None:
        """Drain with :attr:`receivers` threads until :attr:`stopping` is set."""
        threads = [threading.Thread(target=self._receive, name=f"audit-receiver-{n}", daemon=True)
                   for n in range(self.receivers)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    def _receive(self) -> None:
        """One receiver's loop; an unreachable moto is retried with backoff (it may restart)."""
        delay = 0.5
        while not self.stopping.is_set():
            try:
                self.drain_once()
                delay = 0.5
            except Exception as error:  # noqa: BLE001 - moto restarting or busy: say so and try again
                log.warning("audit queue %s: %s: %s (retrying in %.1f s)", self.queue_url, type(error).__name__,
                            error, delay)
                self.stopping.wait(delay)
                delay = min(delay * 2, 10.0)


def _sqs_client(endpoint_url: str) -> Any:
    import boto3
    from botocore.config import Config

    return boto3.session.Session(
        aws_access_key_id=os.environ.get("AWS_ACCESS_KEY_ID", "testing"),
        aws_secret_access_key=os.environ.get("AWS_SECRET_ACCESS_KEY", "testing"),
        region_name="us-east-1",
    ).client("sqs", endpoint_url=endpoint_url, config=Config(retries={"max_attempts": 2, "mode": "standard"}))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", required=True, type=Path, help="the JSON-lines record file (appended to)")
    parser.add_argument("--endpoint-url", default=os.environ.get("DEMOBANK_MOTO_URL", "http://127.0.0.1:5000"),
                        help="moto's URL (default: DEMOBANK_MOTO_URL)")
    parser.add_argument("--queue", default=AUDIT_QUEUE_NAME, help="the queue to drain")
    parser.add_argument("--receivers", type=int, default=RECEIVERS, help="receive calls in flight")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.touch()
    sqs = _sqs_client(args.endpoint_url)
    queue_url = sqs.get_queue_url(QueueName=args.queue)["QueueUrl"]
    recorder = AuditRecorder(sqs, queue_url, args.output, receivers=args.receivers)

    def stop(_signum: int, _frame: object) -> None:
        recorder.stopping.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    log.info("recording %s into %s", queue_url, args.output)
    started = time.monotonic()
    recorder.run()
    log.info("stopped after %.0f s: %d messages recorded (%d received again and not written twice)",
             time.monotonic() - started, recorder.recorded, recorder.duplicates)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
