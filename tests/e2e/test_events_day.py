"""A business day's events through a live `make run`: the Data Factory's load of 2026-01-03 publishes 39,920
`transaction.created` events through the outbox; all of them reach the bus target and arrive in the audit queue
behind its rule (`demobank-events-audit`, which `make run`'s audit recorder keeps drained into a file, read here
by event id) within 5 minutes of the load's end: none lost, none twice."""

from __future__ import annotations

import sqlite3
import time
from collections import Counter
from datetime import datetime

import pytest

from demobank.standins.audit_recorder import RecordReader
from tests.e2e.api import Api
from tests.e2e.conftest import LivePlatform
from tests.e2e.data_factory import DAG, SYNC, trigger, wait_until_idle

pytestmark = pytest.mark.e2e

DAY = "2026-01-03"
DAY_EVENTS = 39_920
"""The core banking seed's valid transactions of 2026-01-03 (a Saturday; 0.2% of its rows are malformed)."""
ARRIVAL_WINDOW = 300.0
"""The Done-when bound of issue 10: every event in the audit queue within 5 minutes of the load's end."""
BUS = "demobank-events-bus"


def _when(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def test_a_business_days_events_all_reach_the_audit_queue_within_five_minutes_of_the_load(
        api: Api, live_platform: LivePlatform, record_property: pytest.RecordProperty) -> None:
    api.wait_for_dag(DAG)
    wait_until_idle(api, DAG, SYNC)
    run = api.wait_for_run(DAG, trigger(api, DAG, {"date": DAY}))
    assert run["state"] == "success", run
    load_end = _when(run["end_date"])

    with sqlite3.connect(live_platform.home / "demobank.db", timeout=60) as db:
        wanted = {row[0] for row in db.execute(
            "SELECT id FROM outbox_events WHERE publisher = 'dag:data_factory_transactions' "
            "AND type = 'transaction.created' AND idempotency_key LIKE ?", (f"TXN-{DAY.replace('-', '')}%",))}
    assert len(wanted) == DAY_EVENTS

    reader = RecordReader(live_platform.audit_record)
    arrived: Counter[str] = Counter()
    last_arrival = load_end
    deadline = time.monotonic() + max(0.0, ARRIVAL_WINDOW - (datetime.now(load_end.tzinfo) - load_end).total_seconds())
    while True:
        for line in reader.read_new():
            if line["event_id"] in wanted:
                arrived[line["event_id"]] += 1
                last_arrival = max(last_arrival, _when(line["received_at"]))
        if len(arrived) == len(wanted) or time.monotonic() > deadline:
            break
        time.sleep(1)

    seconds = (last_arrival - load_end).total_seconds()
    record_property("seconds_from_load_end_to_last_arrival", round(seconds, 1))
    missing = wanted - set(arrived)
    assert not missing, (f"{len(missing)} of {DAY_EVENTS} events were not in the audit queue "
                         f"{ARRIVAL_WINDOW:.0f} s after the load ended, e.g. {sorted(missing)[:5]}")
    twice = [event_id for event_id, count in arrived.items() if count > 1]
    assert not twice, f"{len(twice)} events arrived more than once, e.g. {twice[:5]}"
    assert seconds <= ARRIVAL_WINDOW, seconds
    with sqlite3.connect(live_platform.home / "demobank.db", timeout=60) as db:
        statuses = dict(db.execute(
            "SELECT d.status, count(*) FROM event_deliveries d JOIN event_targets t ON t.id = d.target_id "
            "JOIN outbox_events o ON o.id = d.event_id WHERE t.name = ? AND o.publisher = "
            "'dag:data_factory_transactions' AND o.idempotency_key LIKE ? GROUP BY d.status",
            (BUS, f"TXN-{DAY.replace('-', '')}%")).fetchall())
    assert statuses == {"delivered": DAY_EVENTS}
