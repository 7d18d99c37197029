"""Phone numbers and e-mail addresses stay out of Airflow's metadata DB and task logs on the event-driven path:
a large transaction published through the API starts a transaction alert that reaches the customer by SMS and
e-mail, and then a scan of everything Airflow stored (every table of its metadata DB: dag_run conf, XCom,
rendered fields, the audit log) and every log file of the platform finds neither the customer's number nor their
address in clear."""

from __future__ import annotations

import sqlite3
import time
import uuid
from pathlib import Path

import pytest

from demobank.events.catalog import examples
from tests.e2e.api import Api
from tests.e2e.conftest import LivePlatform

pytestmark = pytest.mark.e2e

ALERT = "connect_transaction_alert"


def metadata_dump(platform: LivePlatform) -> str:
    """Every row of every table of Airflow's metadata DB, as SQL text."""
    with sqlite3.connect(f"file:{platform.home / 'airflow.db'}?mode=ro", uri=True, timeout=30) as db:
        return "\n".join(db.iterdump())


def files_containing(root: Path, needles: tuple[str, ...]) -> list[str]:
    found = []
    for path in root.rglob("*"):
        if path.is_file() and path.suffix in (".log", ".json", ".txt", ""):
            text = path.read_text(encoding="utf-8", errors="replace")
            found += [f"{path.relative_to(root)}: {needle}" for needle in needles if needle in text]
    return found


def test_an_event_driven_alert_leaves_no_contact_in_clear_in_airflow(api: Api, live_platform: LivePlatform) -> None:
    with sqlite3.connect(live_platform.home / "demobank.db", timeout=30) as db:
        # A customer no other test and no payment reminder sends to (nothing due this week).
        customer_id, phone, email = db.execute(
            "SELECT customer_id, phone, email FROM demo_customers WHERE payment_due_date IS NULL "
            "ORDER BY customer_id DESC LIMIT 1 OFFSET 1").fetchone()
    data = {**examples("transaction.created")[0], "transaction_id": f"TXN-PRIV{uuid.uuid4().hex[:10].upper()}",
            "customer_id": customer_id, "amount": "4321.09", "currency": "USD"}
    response = api.plugin("POST", "/events", {"events": [{"type": "transaction.created", "data": data}]})
    assert response.status_code == 201, response.text
    run_id = f"event__{response.json()['ids'][0]}"
    api.wait_for_dag(ALERT)
    deadline = time.monotonic() + 240
    while api.session.get(f"{api.base}/api/v2/dags/{ALERT}/dagRuns/{run_id}", timeout=30).status_code != 200:
        assert time.monotonic() < deadline, f"no {ALERT} run {run_id} started by the event"
        time.sleep(2)
    run = api.wait_for_run(ALERT, run_id)
    assert run["state"] == "success", api.task_states(ALERT, run_id)
    # The alert did reach the customer: the tasks looked the contacts up.
    assert [sms for sms in api.sandbox("sms", to=phone) if "USD 4,321.09" in sms["body"]]
    assert [mail for mail in api.sandbox("email", to=email) if "USD 4,321.09" in str(mail)]

    assert run["conf"] == {"customer_id": customer_id, "amount": 4321.09, "currency": "USD",
                           "merchant": data["merchant"]["name"]}
    assert api.xcom(ALERT, run_id, "validate_alert")["customer_id"] == customer_id
    dump = metadata_dump(live_platform)
    assert phone not in dump and email not in dump, "a contact in clear in Airflow's metadata DB"
    assert f"{phone[:2]}{'*' * (len(phone) - 6)}{phone[-4:]}" in dump  # the rendered fields show it masked
    assert f"{email[0]}***@{email.partition('@')[2]}" in dump
    leaks = files_containing(live_platform.home / "logs", (phone, email))
    leaks += [f"make run output: {n}" for n in (phone, email) if n in live_platform.output()]
    assert not leaks, f"contacts in clear in the logs: {leaks}"
