"""A target whose AWS connection has credentials EventBridge refuses: its deliveries wait with an error that names
the target and says what to fix, the run reports it, and every other target still receives its events.

Through the real path: the amazon provider's ``EventBridgeHook`` reading Airflow connections, botocore signing the
requests, and an endpoint that refuses the bad key the way AWS does (``UnrecognizedClientException``)."""

from __future__ import annotations

from collections import Counter

import pytest
from sqlalchemy import Engine

from demobank.db.engine import get_engine
from demobank.events import targets
from demobank.events.tasks import TargetsUnreachableError, dispatch_pending
from tests.db.conftest import _isolated_engines, sqlite_url  # noqa: F401 - fixtures
from tests.events.conftest_moto import (  # noqa: F401 - the *_fixture functions register the fixtures
    MotoAws,
    audit_queue_fixture,
    aws_connection_json,
    moto_aws_fixture,
)
from tests.events.faulty_eventbridge import running
from tests.events.test_dispatcher import deliveries, publish_events

BAD_KEY = "AKIAEXAMPLEREVOKED01"


@pytest.fixture
def engine(sqlite_url: str) -> Engine:  # noqa: F811
    from demobank.db.migrate import upgrade

    upgrade(sqlite_url)
    return get_engine(sqlite_url)


def test_bad_credentials_hold_up_only_their_own_target(engine: Engine, audit_queue: MotoAws, monkeypatch) -> None:
    with running(audit_queue.url) as endpoint:
        endpoint.rejected_access_keys.add(BAD_KEY)
        monkeypatch.setenv("AIRFLOW_CONN_AWS_DEFAULT", aws_connection_json(endpoint.url))
        bad_connection = aws_connection_json(endpoint.url).replace('"login": "testing"', f'"login": "{BAD_KEY}"')
        assert BAD_KEY in bad_connection
        monkeypatch.setenv("AIRFLOW_CONN_AWS_REVOKED", bad_connection)
        good = targets.create_target(engine, targets.TargetSpec(name="audit-bus"), actor="test")
        revoked = targets.create_target(engine, targets.TargetSpec(name="partner-bus",
                                                                   config={"aws_conn_id": "aws_revoked"}), actor="test")
        ids = publish_events(engine, 25)

        with pytest.raises(TargetsUnreachableError) as caught:
            dispatch_pending("test", engine=engine)

        message = str(caught.value)
        assert "1 target(s) could not be reached" in message and "25 delivered" in message
        assert "partner-bus" in message and "UnrecognizedClientException" in message
        assert "aws_revoked" in message and "access key" in message  # which connection, and what to fix
        assert endpoint.stats["rejected_credentials"] >= 1
    received = Counter(body["detail"]["id"] for body in audit_queue.receive_audit_messages(25))
    assert received == Counter(ids), "the good target received every event, once"
    delivered = deliveries(engine, good.id)
    assert Counter(row.status for row in delivered.values()) == Counter({"delivered": 25})
    waiting = deliveries(engine, revoked.id)
    assert set(waiting) == set(ids)
    assert all(row.status == "pending" and row.attempts <= 1 and "partner-bus" in row.last_error
               for row in waiting.values()), "bad credentials: the first batch tried once, the rest untried, none dead"
    view = targets.get_target(engine, revoked.id)
    assert view.deliveries == {"pending": 25, "delivered": 0, "dead": 0}
    assert "UnrecognizedClientException" in view.last_error
