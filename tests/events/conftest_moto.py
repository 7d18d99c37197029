"""moto's real server for the EventBridge tests, provisioned like ``make run`` does (bus → rule → SQS queue).

Not a conftest: a test module imports the fixture functions (``moto_aws_fixture``, ``audit_queue_fixture``,
``aws_default_fixture``; pytest registers them under their ``name``: ``moto_aws``, ``audit_queue``, ``aws_default``).

* ``moto_aws`` (module scope): the AWS stand-in of `make run` (:mod:`demobank.standins.moto_server`, moto's
  server with its queue-length costs patched out) started as a subprocess on a free port, with the bus
  ``demobank-events``, the queue ``demobank-events-audit`` and the rule between them
  (:func:`demobank.standins.provision_aws`).
* ``audit_queue``: the same, with the audit queue emptied before the test.
* ``aws_default``: ``AIRFLOW_CONN_AWS_DEFAULT`` pointing at the server (what the hook reads).
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import pytest

from demobank.standins import ProvisionedStandIns, provision_aws

REGION = "us-east-1"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def aws_connection_json(endpoint_url: str, **extra: Any) -> str:
    """An Airflow AWS connection (JSON form, for ``AIRFLOW_CONN_...``) that reaches ``endpoint_url``."""
    return json.dumps({"conn_type": "aws", "login": "testing", "password": "testing",
                       "extra": {"region_name": REGION, "endpoint_url": endpoint_url, **extra}})


@dataclass
class MotoAws:
    """A running, provisioned moto server and clients for it."""

    url: str
    standins: ProvisionedStandIns
    events: Any = field(repr=False)
    sqs: Any = field(repr=False)

    def drain_audit_queue(self) -> None:
        """Delete every message in the audit queue (moto allows one PurgeQueue a minute, so receive instead)."""
        while True:
            messages = self.sqs.receive_message(QueueUrl=self.standins.queue_url, MaxNumberOfMessages=10,
                                                WaitTimeSeconds=0, VisibilityTimeout=60).get("Messages", [])
            if not messages:
                return
            self.sqs.delete_message_batch(QueueUrl=self.standins.queue_url, Entries=[
                {"Id": str(n), "ReceiptHandle": m["ReceiptHandle"]} for n, m in enumerate(messages)])

    def receive_audit_messages(self, expected: int, timeout: float = 15.0, settle: float = 0.0) -> list[dict]:
        """Read (and delete) messages from the audit queue until ``expected`` arrived or ``timeout`` passed, then
        until the queue answers empty (and for ``settle`` seconds more), so that duplicates or extras are seen too.

        moto routes an accepted ``PutEvents`` to the rule's queue before it answers, so once the publisher has
        returned, every copy of its events is already in the queue: one empty answer after that proves none more.

        :return: the message bodies, parsed (EventBridge events: ``id``, ``source``, ``detail-type``, ``detail`` …).
        """
        bodies: list[dict] = []
        deadline = time.monotonic() + timeout
        settle_until: float | None = None
        while True:
            now = time.monotonic()
            if settle_until is None and (len(bodies) >= expected or now >= deadline):
                settle_until = now + settle
            answer = self.sqs.receive_message(QueueUrl=self.standins.queue_url, MaxNumberOfMessages=10,
                                              WaitTimeSeconds=0 if settle_until is not None else 1,
                                              VisibilityTimeout=60)
            messages = answer.get("Messages", [])
            for message in messages:
                bodies.append(json.loads(message["Body"]))
            if messages:
                self.sqs.delete_message_batch(QueueUrl=self.standins.queue_url, Entries=[
                    {"Id": str(n), "ReceiptHandle": m["ReceiptHandle"]} for n, m in enumerate(messages)])
            elif settle_until is not None:
                if time.monotonic() >= settle_until:
                    return bodies
                time.sleep(0.05)


def moto_server_command(plain: bool = False) -> list[str]:
    """The AWS stand-in `make run` starts (moto's server with its queue-length costs patched out:
    :mod:`demobank.standins.moto_server`), or moto's own ``moto_server`` (``plain``)."""
    if plain:
        candidate = Path(sys.executable).parent / "moto_server"
        return [str(candidate) if candidate.exists() else "moto_server"]
    return [sys.executable, "-m", "demobank.standins.moto_server"]


def _wait_for_port(port: int, process: subprocess.Popen, log_path: Path, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"moto_server exited with {process.returncode}:\n{log_path.read_text(errors='replace')}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    pytest.fail(f"moto_server did not listen on 127.0.0.1:{port} within {timeout:.0f} s:\n"
                f"{log_path.read_text(errors='replace')}")


@pytest.fixture(scope="module", name="moto_aws")
def moto_aws_fixture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoAws]:
    port = free_port()
    log_path = tmp_path_factory.mktemp("moto") / "moto_server.log"
    with log_path.open("wb") as log_file:
        process = subprocess.Popen([*moto_server_command(), "-H", "127.0.0.1", "-p", str(port)],
                                   stdout=log_file, stderr=subprocess.STDOUT)
    try:
        _wait_for_port(port, process, log_path)
        url = f"http://127.0.0.1:{port}"
        standins = provision_aws(url, region=REGION)
        session = boto3.session.Session(aws_access_key_id="testing", aws_secret_access_key="testing",
                                        region_name=REGION)
        yield MotoAws(url=url, standins=standins, events=session.client("events", endpoint_url=url),
                      sqs=session.client("sqs", endpoint_url=url))
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


@pytest.fixture(name="audit_queue")
def audit_queue_fixture(moto_aws: MotoAws) -> MotoAws:
    """The moto stack with the audit queue emptied, so a test sees only its own events."""
    moto_aws.drain_audit_queue()
    return moto_aws


@pytest.fixture(name="aws_default")
def aws_default_fixture(moto_aws: MotoAws, monkeypatch: pytest.MonkeyPatch) -> str:
    """``aws_default`` points at moto; returns the connection id."""
    monkeypatch.setenv("AIRFLOW_CONN_AWS_DEFAULT", aws_connection_json(moto_aws.url))
    return "aws_default"
