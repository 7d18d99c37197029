"""Events through a live `make run`: the plugin's REST API → outbox → events_dispatch (started by the outbox Asset)
→ EventBridge (moto) → rule → SQS `demobank-events-audit` (drained into a file by `make run`'s audit recorder);
bad input refused whole; a broken target holds up no other; a large transaction starts one transaction alert, never
two."""

from __future__ import annotations

import sqlite3
import time
import uuid
from collections import Counter
from typing import Any

import pytest

from demobank.events.catalog import examples
from demobank.standins.audit_recorder import RecordReader
from tests.e2e.api import Api
from tests.e2e.conftest import LivePlatform

pytestmark = pytest.mark.e2e

DISPATCH = "events_dispatch"
ALERT = "connect_transaction_alert"
class AuditRecord:
    """What arrived in the audit queue behind the bus's rule: `make run`'s audit recorder keeps the queue drained
    into a file (demobank.standins.audit_recorder), read here as it grows."""

    def __init__(self, platform: LivePlatform) -> None:
        self.reader = RecordReader(platform.audit_record)
        self.received: list[dict[str, Any]] = []

    def collect(self, wanted: set[str], timeout: float = 240) -> Counter[str]:
        """Read until every wanted event id arrived; return how often each wanted id arrived."""
        deadline = time.monotonic() + timeout
        seen: Counter[str] = Counter()
        while True:
            for line in self.reader.read_new():
                if line["event_id"] in wanted:
                    self.received.append(line["body"])
                    seen[line["event_id"]] += 1
            if wanted <= set(seen) or time.monotonic() > deadline:
                return seen
            time.sleep(0.5)


def suite_db(platform: LivePlatform) -> sqlite3.Connection:
    return sqlite3.connect(platform.home / "demobank.db", timeout=30)


def outbox_count(platform: LivePlatform) -> int:
    with suite_db(platform) as db:
        return db.execute("SELECT count(*) FROM outbox_events").fetchone()[0]


def transaction(n: int, amount: str = "42.50", **changes: Any) -> dict[str, Any]:
    data = {**examples("transaction.created")[0], "amount": amount, "transaction_id": f"TXN-E2E{n:09d}", **changes}
    return {"type": "transaction.created", "data": data}


def pending_deliveries(platform: LivePlatform) -> int:
    with suite_db(platform) as db:
        return db.execute("SELECT count(*) FROM event_deliveries d JOIN event_targets t ON t.id = d.target_id "
                          "WHERE d.status = 'pending' AND t.name = 'demobank-events-bus'").fetchone()[0]


@pytest.fixture(scope="module")
def events_ready(api: Api, live_platform: LivePlatform) -> Api:
    """The dispatcher is active and has delivered what earlier tests published (the Data Factory's thousands)."""
    api.wait_for_dag(DISPATCH)
    api.wait_for_dag(ALERT)
    deadline = time.monotonic() + 240
    while pending_deliveries(live_platform) and time.monotonic() < deadline:
        time.sleep(2)
    return api


def test_one_thousand_events_posted_to_the_api_reach_the_audit_queue_once_each(
        events_ready: Api, live_platform: LivePlatform) -> None:
    api = events_ready
    queue = AuditRecord(live_platform)
    run = uuid.uuid4().hex[:6].upper()
    sent: dict[str, dict[str, Any]] = {}
    for batch in range(2):
        events = [transaction(batch * 500 + n, transaction_id=f"TXN-{run}{batch * 500 + n:06d}")
                  for n in range(500)]
        response = api.plugin("POST", "/events", {"events": events})
        assert response.status_code == 201, response.text
        answer = response.json()
        assert answer["count"] == 500 and len(set(answer["ids"])) == 500
        assert answer["dispatch"] == "started", "the outbox Asset event should start events_dispatch at once"
        sent.update({event_id: event for event_id, event in zip(answer["ids"], events, strict=True)})

    arrived = queue.collect(set(sent))

    assert set(arrived) == set(sent), f"{len(set(sent) - set(arrived))} of 1000 events never arrived"
    assert sum(arrived.values()) == 1000, f"duplicates: {[i for i, n in arrived.items() if n > 1][:10]}"
    for body in queue.received:
        envelope = body["detail"]
        if envelope["id"] not in sent:
            continue
        assert body["source"] == "com.demobank" and body["detail-type"] == "transaction.created"
        assert envelope["specversion"] == "1.0" and envelope["source"] == "com.demobank"
        assert envelope["type"] == "transaction.created" and envelope["datacontenttype"] == "application/json"
        assert envelope["data"] == sent[envelope["id"]]["data"]
        assert envelope["subject"] == envelope["data"]["transaction_id"] and envelope["time"]
    # The events may have gone out with a sweep that was starting anyway; the outbox Asset's run comes too.
    deadline = time.monotonic() + 120
    while True:
        runs = api.get(f"/dags/{DISPATCH}/dagRuns", limit=100, order_by="-run_after")["dag_runs"]
        if any(run["run_type"] == "asset_triggered" for run in runs) or time.monotonic() > deadline:
            break
        time.sleep(2)
    assert any(run["run_type"] == "asset_triggered" for run in runs), [run["run_type"] for run in runs]


def test_a_batch_with_bad_events_is_refused_whole_naming_each_problem(
        events_ready: Api, live_platform: LivePlatform) -> None:
    api = events_ready
    before = outbox_count(live_platform)

    unknown = api.plugin("POST", "/events", {"events": [transaction(1), {"type": "transaction.deleted", "data": {}}]})
    assert unknown.status_code == 422, unknown.text
    assert "events[1].type" in unknown.json()["detail"] and "transaction.deleted" in unknown.json()["detail"]

    invalid = api.plugin("POST", "/events", {"events": [transaction(2, amount="-5"), transaction(3, currency="eur")]})
    assert invalid.status_code == 422, invalid.text
    paths = {problem["path"] for problem in invalid.json()["problems"]}
    assert paths == {"events[0].data.amount", "events[1].data.currency"}

    too_many = api.plugin("POST", "/events", {"events": [transaction(n) for n in range(501)]})
    assert too_many.status_code == 422 and "at most 500" in too_many.text

    # Over the size limit: a target that takes customer.created events of at most 400 bytes.
    small = api.plugin("POST", "/targets", {"name": f"small-{uuid.uuid4().hex[:6]}",
                                            "event_types": ["customer.created"],
                                            "config": {"bus_name": "demobank-events", "max_event_bytes": 400}})
    assert small.status_code == 201, small.text
    try:
        customer = {**examples("customer.created")[0]}
        oversize = api.plugin("POST", "/events", {"events": [{"type": "customer.created", "data": customer}]})
        assert oversize.status_code == 422, oversize.text
        assert "over that target's limit of 400 bytes" in oversize.json()["detail"]
    finally:
        assert api.plugin("POST", f"/targets/{small.json()['id']}/disable").status_code == 200

    assert outbox_count(live_platform) == before, "a refused batch must write nothing"


def test_a_target_that_cannot_publish_holds_up_no_other_and_explains_itself(
        events_ready: Api, live_platform: LivePlatform) -> None:
    api = events_ready
    queue = AuditRecord(live_platform)
    broken = api.plugin("POST", "/targets", {"name": f"missing-bus-{uuid.uuid4().hex[:6]}",
                                             "event_types": ["transaction.flagged"],
                                             "config": {"bus_name": "no-such-bus"}})
    assert broken.status_code == 201, broken.text
    target = broken.json()
    try:
        flagged = {"type": "transaction.flagged", "data": examples("transaction.flagged")[0]}
        response = api.plugin("POST", "/events", {"events": [flagged]})
        assert response.status_code == 201, response.text
        [event_id] = response.json()["ids"]

        assert queue.collect({event_id}) == Counter({event_id: 1}), "the bus target must still receive it"
        deadline = time.monotonic() + 120
        view = target
        while time.monotonic() < deadline and not view.get("last_error"):
            time.sleep(2)
            view = api.plugin("GET", f"/targets/{target['id']}").json()
        assert view["deliveries"]["pending"] == 1 and view["deliveries"]["dead"] == 0, view
        assert "no-such-bus" in view["last_error"] and "ResourceNotFoundException" in view["last_error"]
    finally:
        assert api.plugin("POST", f"/targets/{target['id']}/disable").status_code == 200


def test_a_large_transaction_starts_one_alert_and_redelivery_starts_none(
        events_ready: Api, live_platform: LivePlatform) -> None:
    api = events_ready
    with suite_db(live_platform) as db:
        customer_id, phone = db.execute("SELECT customer_id, phone FROM demo_customers ORDER BY customer_id "
                                        "DESC LIMIT 1").fetchone()
    key = f"e2e-large-{uuid.uuid4().hex}"
    large = {**transaction(9, amount="2513.37", customer_id=customer_id, currency="USD"), "idempotency_key": key}
    small = transaction(10, amount="999.99", customer_id=customer_id, currency="USD")
    response = api.plugin("POST", "/events", {"events": [large, small]})
    assert response.status_code == 201, response.text
    large_id, small_id = response.json()["ids"]

    alerts = next(t for t in api.plugin("GET", "/targets").json() if t["name"] == "connect-transaction-alerts")
    deadline = time.monotonic() + 180
    while api.session.get(f"{api.base}/api/v2/dags/{ALERT}/dagRuns/event__{large_id}", timeout=30).status_code != 200:
        if time.monotonic() > deadline:
            deliveries = api.plugin("GET", f"/targets/{alerts['id']}/deliveries").json()
            pytest.fail(f"no {ALERT} run for event {large_id}; the alert target's deliveries: {deliveries[:3]}")
        time.sleep(2)
    run = api.wait_for_run(ALERT, f"event__{large_id}")
    assert run["state"] == "success", api.task_states(ALERT, f"event__{large_id}")
    assert run["conf"]["customer_id"] == customer_id and run["conf"]["amount"] == 2513.37
    assert "phone" not in run["conf"] and "email" not in run["conf"]  # looked up by the sending tasks
    messages = [sms for sms in api.sandbox("sms", to=phone) if "USD 2,513.37" in sms["body"]]
    assert len(messages) == 1, messages
    assert api.session.get(f"{api.base}/api/v2/dags/{ALERT}/dagRuns/event__{small_id}", timeout=30).status_code == 404

    # Publishing the same event again (same idempotency key) and replaying it to the alert target start nothing.
    again = api.plugin("POST", "/events", {"events": [large]})
    assert again.json()["ids"] == [large_id]
    replayed = api.plugin("POST", f"/targets/{alerts['id']}/replay", {
        "event_type": "transaction.created", "start": "2026-01-01T00:00:00Z", "end": "2100-01-01T00:00:00Z"})
    assert replayed.status_code == 202 and replayed.json()["queued"] >= 1, replayed.text
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        view = api.plugin("GET", f"/targets/{alerts['id']}").json()
        if view["deliveries"]["pending"] == 0:
            break
        time.sleep(2)
    assert view["deliveries"]["pending"] == 0, view
    assert len([sms for sms in api.sandbox("sms", to=phone) if "USD 2,513.37" in sms["body"]]) == 1
    runs = api.get(f"/dags/{ALERT}/dagRuns", limit=1000)["dag_runs"]
    assert [r["dag_run_id"] for r in runs if r["dag_run_id"] == f"event__{large_id}"] == [f"event__{large_id}"]
