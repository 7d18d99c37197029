"""The first Connect workflows through a live `make run`: runs triggered over the REST API, messages checked in the
vendor sandbox.

* connect_transaction_alert sends one SMS and one e-mail rendered from include/templates, and clearing the run
  sends nothing again; a bad conf is refused at trigger time (400) or fails validate_alert, and sends nothing.
* connect_payment_reminders texts every demo customer with a payment due, once.
"""

from __future__ import annotations

import random
import sqlite3
import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from tests.e2e.api import Api
from tests.e2e.conftest import LivePlatform

pytestmark = pytest.mark.e2e

ALERT = "connect_transaction_alert"
REMINDERS = "connect_payment_reminders"


def unique_recipient() -> tuple[str, str]:
    """A phone number (Ofcom's drama range, never a demo customer's) and an e-mail address for one test."""
    return f"+447700900{random.randint(0, 999):03d}", f"e2e-{uuid.uuid4().hex[:12]}@example.com"


def alert_conf(phone: str, email: str, **changes: Any) -> dict[str, Any]:
    return {"customer_id": "CUST-E2E-01", "phone": phone, "email": email, "amount": 1234.5, "currency": "EUR",
            "merchant": "Blue Bottle Coffee & Co", **changes}


def test_transaction_alert_sends_one_sms_and_one_email_and_never_twice(api: Api) -> None:
    api.wait_for_dag(ALERT)
    phone, email = unique_recipient()

    response = api.trigger(ALERT, alert_conf(phone, email))
    assert response.status_code == 200, response.text
    run_id = response.json()["dag_run_id"]
    run = api.wait_for_run(ALERT, run_id)
    assert run["state"] == "success", api.task_states(ALERT, run_id)

    [sms] = api.sandbox("sms", to=phone)
    assert sms["body"] == ("Demo Bank: EUR 1,234.50 at Blue Bottle Coffee & Co on your account. Not you? Call the "
                           "number on the back of your card.")
    assert sms["num_segments"] == 1
    [mail] = api.sandbox("email", to=email)
    assert mail["recipients"] == [email]
    assert mail["subject"] == "Demo Bank: EUR 1,234.50 at Blue Bottle Coffee & Co"
    [content] = mail["request"]["content"]
    assert content["type"] == "text/html"
    assert "EUR 1,234.50" in content["value"] and "Blue Bottle Coffee &amp; Co" in content["value"]
    assert "{{" not in content["value"] and "{%" not in content["value"]
    assert api.xcom(ALERT, run_id, "send_sms") == [sms["sid"]]

    # Clearing the whole run re-runs every task: the delivery ledger must keep both messages from going out again.
    cleared = api.post(f"/dags/{ALERT}/clearTaskInstances",
                       {"dag_run_id": run_id, "only_failed": False, "dry_run": False, "reset_dag_runs": True})
    assert cleared.status_code == 200, cleared.text
    assert {ti["task_id"] for ti in cleared.json()["task_instances"]} == {"validate_alert", "send_sms", "send_email"}

    def rerun_done(run: dict[str, Any], tis: list[dict[str, Any]]) -> bool:
        return all(ti["try_number"] >= 2 and ti["state"] in ("success", "failed", "upstream_failed") for ti in tis)

    run = api.wait_for_run(ALERT, run_id, done=rerun_done)
    assert run["state"] == "success", api.task_states(ALERT, run_id)
    assert {ti["task_id"]: ti["try_number"] for ti in api.task_instances(ALERT, run_id)} == {
        "validate_alert": 2, "send_sms": 2, "send_email": 2,
    }
    assert [m["sid"] for m in api.sandbox("sms", to=phone)] == [sms["sid"]]
    assert [m["message_id"] for m in api.sandbox("email", to=email)] == [mail["message_id"]]
    assert api.xcom(ALERT, run_id, "send_sms") == [sms["sid"]]  # the same message, found in the ledger


def test_a_conf_that_breaks_the_params_is_refused_at_trigger_time(api: Api) -> None:
    api.wait_for_dag(ALERT)
    _, email = unique_recipient()
    runs_before = api.get(f"/dags/{ALERT}/dagRuns", limit=1)["total_entries"]

    response = api.trigger(ALERT, alert_conf("555-0100", email))

    assert response.status_code == 400, response.text
    detail = response.json()["detail"]
    assert "Invalid input for param phone" in detail and "'555-0100' does not match" in detail
    assert "e.g. +14155550142" in detail  # the param's description says what to send
    assert api.get(f"/dags/{ALERT}/dagRuns", limit=1)["total_entries"] == runs_before
    assert api.sandbox("sms", to="555-0100") == []
    assert api.sandbox("email", to=email) == []


def test_a_conf_the_params_cannot_judge_fails_validate_alert_clearly_and_sends_nothing(api: Api) -> None:
    """Three decimals for USD pass the JSON schema of the params; validate_alert refuses them, without retrying."""
    api.wait_for_dag(ALERT)
    phone, email = unique_recipient()

    response = api.trigger(ALERT, alert_conf(phone, email, amount=12.345, currency="USD"))
    assert response.status_code == 200, response.text
    run_id = response.json()["dag_run_id"]
    run = api.wait_for_run(ALERT, run_id)

    assert run["state"] == "failed"
    tis = {ti["task_id"]: ti for ti in api.task_instances(ALERT, run_id)}
    assert (tis["validate_alert"]["state"], tis["validate_alert"]["try_number"]) == ("failed", 1)
    assert tis["send_sms"]["state"] == tis["send_email"]["state"] == "upstream_failed"
    log = api.task_log(ALERT, run_id, "validate_alert", 1, contains="invalid transaction alert conf")
    assert "amount = 12.345: has more decimal places than USD has (2)" in log
    assert "fix these fields and trigger the DAG again" in log
    assert phone not in log and email not in log  # the valid phone and e-mail are not logged either
    assert api.sandbox("sms", to=phone) == []
    assert api.sandbox("email", to=email) == []


def due_phones(platform: LivePlatform, on: date) -> list[str]:
    with sqlite3.connect(platform.home / "demobank.db") as db:
        rows = db.execute(
            "SELECT phone FROM demo_customers WHERE payment_due_date = ? AND amount_due > 0", (on.isoformat(),)
        ).fetchall()
    return sorted(phone for (phone,) in rows)


def test_payment_reminders_text_every_customer_due_once(api: Api, live_platform: LivePlatform) -> None:
    api.wait_for_dag(REMINDERS)

    response = api.trigger(REMINDERS, {})
    assert response.status_code == 200, response.text
    run_id = response.json()["dag_run_id"]
    run = api.wait_for_run(REMINDERS, run_id)
    assert run["state"] == "success", api.task_states(REMINDERS, run_id)

    # The run reminds the payments due the day after its own day (days_ahead=1).
    run_day = datetime.fromisoformat(run["data_interval_end"] or run["run_after"]).astimezone(UTC).date()
    expected = due_phones(live_platform, run_day + timedelta(days=1))
    assert len(expected) >= 10, "make run seeds every fifth demo customer with a payment due tomorrow"

    # Only this run's messages (the scheduler may run the DAG for today as well): the SIDs its tasks returned.
    mapped = [ti for ti in api.task_instances(REMINDERS, run_id) if ti["task_id"] == "send_reminders"]
    assert [ti["state"] for ti in mapped] == ["success"] * ((len(expected) + 99) // 100)
    sids = [sid for ti in mapped for sid in api.xcom(REMINDERS, run_id, "send_reminders", ti["map_index"])]
    by_sid = {m["sid"]: m for m in api.sandbox("sms")}
    assert len(sids) == len(set(sids)) == len(expected)
    assert sorted(by_sid[sid]["to"] for sid in sids) == expected
    due_on = f"is due on {(run_day + timedelta(days=1)).day} "
    assert all(by_sid[sid]["body"].startswith("Demo Bank: Hi ") and due_on in by_sid[sid]["body"] for sid in sids)
