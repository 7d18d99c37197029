"""The Logic App examples through a live `make run`: each runs the way its trigger says and the sandbox records
exactly the messages expected; clearing a run sends nothing twice; a bad input is refused at trigger time naming it;
a definition broken while the platform runs is an import error of its own file and the others keep running.

* customer_onboarding (manual, typed inputs): over the REST API;
* transaction_alert (event trigger with a threshold): a transaction.created through POST /demobank/api/v1/events;
* daily_digest (schedule): its run for 2026-01-05, as the scheduler would start it, over the REST API.
"""

from __future__ import annotations

import json
import random
import sqlite3
import textwrap
import time
import uuid
from typing import Any

import pytest
import requests

from demobank.events.catalog import examples
from demobank.sandbox.settings import DEFAULT_CORE_BANKING_TOKEN
from tests.e2e.api import Api
from tests.e2e.conftest import LivePlatform

pytestmark = pytest.mark.e2e

ONBOARDING = "logic_app__customer_onboarding"
ALERT = "logic_app__transaction_alert"
DIGEST = "logic_app__daily_digest"


def suite_db(platform: LivePlatform) -> sqlite3.Connection:
    return sqlite3.connect(platform.home / "demobank.db", timeout=30)


def outbox(platform: LivePlatform, event_id: str) -> list[dict[str, Any]]:
    with suite_db(platform) as db:
        rows = db.execute("SELECT envelope FROM outbox_events WHERE id = ?", (event_id,)).fetchall()
    return [json.loads(envelope) for (envelope,) in rows]


def inputs(**changes: str) -> dict[str, str]:
    return {"customer_id": f"CUST-E2E{random.randint(0, 99999):05d}", "first_name": "Ada",
            "email": f"e2e-{uuid.uuid4().hex[:12]}@example.com", "phone": f"+447700900{random.randint(0, 999):03d}",
            **changes}


def test_onboarding_runs_with_its_inputs_sends_each_message_once_and_refuses_a_bad_input(
        api: Api, live_platform: LivePlatform) -> None:
    api.wait_for_dag(ONBOARDING)
    bad_phone = api.trigger(ONBOARDING, inputs(phone="12345"))
    assert bad_phone.status_code == 400 and "Invalid input for param phone" in bad_phone.text, bad_phone.text
    missing = api.trigger(ONBOARDING, {key: value for key, value in inputs().items() if key != "customer_id"})
    assert missing.status_code == 400 and "param customer_id" in missing.text, missing.text
    bad_segment = api.trigger(ONBOARDING, inputs(segment="vip"))
    assert bad_segment.status_code == 400 and "param segment" in bad_segment.text, bad_segment.text

    given = inputs(segment="premier")
    response = api.trigger(ONBOARDING, given)
    assert response.status_code == 200, response.text
    run_id = response.json()["dag_run_id"]
    run = api.wait_for_run(ONBOARDING, run_id)
    assert run["state"] == "success", api.task_states(ONBOARDING, run_id)

    [sms] = api.sandbox("sms", to=given["phone"])
    assert sms["body"] == "Demo Bank: welcome, Ada! Reply YES to confirm this is your number."
    [mail] = api.sandbox("email", to=given["email"])
    assert mail["subject"] == "Welcome to Demo Bank, Ada"
    [content] = mail["request"]["content"]
    assert f"Your customer number is {given['customer_id']}." in content["value"]
    announced = api.xcom(ONBOARDING, run_id, "announce")
    [event] = outbox(live_platform, announced["event_id"])
    assert event["type"] == "customer.created" and event["publisher"] == f"dag:{ONBOARDING}"
    assert event["data"]["customer_id"] == given["customer_id"] and event["data"]["segment"] == "premier"
    assert event["data"]["customer_type"] == "individual" and event["data"]["kyc_status"] == "pending"
    assert api.xcom(ONBOARDING, run_id, "verify_phone") == {"recipients": 1, "message_ids": [sms["sid"]]}

    # Clearing the run re-runs every step: the ledger and the outbox's idempotency key keep all three from
    # happening twice.
    cleared = api.post(f"/dags/{ONBOARDING}/clearTaskInstances",
                       {"dag_run_id": run_id, "only_failed": False, "dry_run": False, "reset_dag_runs": True})
    assert cleared.status_code == 200, cleared.text

    def rerun_done(run: dict[str, Any], tis: list[dict[str, Any]]) -> bool:
        return all(ti["try_number"] >= 2 and ti["state"] in ("success", "failed", "upstream_failed") for ti in tis)

    run = api.wait_for_run(ONBOARDING, run_id, done=rerun_done)
    assert run["state"] == "success", api.task_states(ONBOARDING, run_id)
    assert [m["sid"] for m in api.sandbox("sms", to=given["phone"])] == [sms["sid"]]
    assert [m["message_id"] for m in api.sandbox("email", to=given["email"])] == [mail["message_id"]]
    assert api.xcom(ONBOARDING, run_id, "announce") == announced
    assert len(outbox(live_platform, announced["event_id"])) == 1


def demo_customer(platform: LivePlatform, offset: int) -> tuple[str, str, str]:
    with suite_db(platform) as db:
        return db.execute("SELECT customer_id, phone, email FROM demo_customers ORDER BY customer_id "
                          "LIMIT 1 OFFSET ?", (offset,)).fetchone()


def test_a_large_online_payment_posted_to_the_events_api_runs_the_alert_logic_app(
        api: Api, live_platform: LivePlatform) -> None:
    api.wait_for_dag(ALERT)
    customer_id, phone, email = demo_customer(live_platform, 17)
    transaction_id = f"TXN-E2ELA{uuid.uuid4().hex[:12].upper()}"
    data = {**examples("transaction.created")[0], "transaction_id": transaction_id, "customer_id": customer_id,
            "amount": "12000.00", "currency": "EUR", "direction": "debit", "channel": "card_not_present"}
    posted = api.plugin("POST", "/events", {"events": [{"type": "transaction.created", "data": data}]})
    assert posted.status_code == 201, posted.text
    [event_id] = posted.json()["ids"]
    run_id = f"event__{event_id}"

    deadline = time.monotonic() + 240
    while api.session.get(f"{api.base}/api/v2/dags/{ALERT}/dagRuns/{run_id}", timeout=30).status_code == 404:
        assert time.monotonic() < deadline, f"the event target never started {ALERT} run {run_id}"
        time.sleep(2)
    run = api.wait_for_run(ALERT, run_id)
    assert run["state"] == "success", api.task_states(ALERT, run_id)
    assert api.task_states(ALERT, run_id) == dict.fromkeys(["score", "amount", "sms", "email", "risky", "flag"],
                                                           "success")
    ours = "Demo Bank: an online card payment of €12,000.00 was made on your account."
    assert [m["body"] for m in api.sandbox("sms", to=phone) if m["body"].startswith(ours)] == [
        f"{ours} Not you? Call us on +31 20 000 0000."]
    assert [m["subject"] for m in api.sandbox("email", to=email) if "online card payment" in m["subject"]] == [
        "An online card payment of €12,000.00"]
    assert api.xcom(ALERT, run_id, "score") == 0.65  # 0.5 for the amount, 0.15 card not present
    flagged = api.xcom(ALERT, run_id, "flag")
    [flag] = outbox(live_platform, flagged["event_id"])
    assert flag["type"] == "transaction.flagged" and flag["subject"] == transaction_id
    assert (flag["data"]["risk_score"], flag["data"]["reason"], flag["data"]["customer_id"]) == (
        65, "large_amount", customer_id)


def test_the_daily_digest_of_a_day_emails_the_customers_the_core_banking_api_lists(api: Api) -> None:
    api.wait_for_dag(DIGEST)
    listed = requests.get(f"{api.base}/sandbox/core-banking/customers",
                          params={"updated_since": "2026-01-04T06:00:00Z", "page_size": 10},
                          headers={"Authorization": f"Bearer {DEFAULT_CORE_BANKING_TOKEN}"}, timeout=30)
    assert listed.status_code == 200, listed.text
    expected = listed.json()["customers"]
    assert len(expected) == 10

    response = api.post(f"/dags/{DIGEST}/dagRuns", {"dag_run_id": f"e2e__{uuid.uuid4().hex}",
                                                     "logical_date": "2026-01-05T06:00:00Z", "conf": {}})
    assert response.status_code == 200, response.text
    run_id = response.json()["dag_run_id"]
    run = api.wait_for_run(DIGEST, run_id)
    assert run["state"] == "success", api.task_states(DIGEST, run_id)
    mapped = [ti for ti in api.task_instances(DIGEST, run_id) if ti["task_id"] == "notify_each"]
    assert sorted(ti["map_index"] for ti in mapped) == list(range(10))
    for customer in expected:
        [mail] = [m for m in api.sandbox("email", to=customer["email"])
                  if m["subject"] == "Your Demo Bank details were updated"]
        [content] = mail["request"]["content"]
        assert f"Hello {customer['full_name']}" in content["value"].replace("&#x27;", "'")


def wait_until(check: Any, what: str, timeout: float = 180) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(3)
    pytest.fail(f"{what}: not after {timeout:g} s")


def test_a_definition_broken_while_the_platform_runs_is_an_import_error_of_its_file_only(
        api: Api, live_platform: LivePlatform) -> None:
    extra = live_platform.logic_apps / "e2e_extra.yaml"
    valid = textwrap.dedent("""\
        name: e2e_extra
        description: A workflow this test adds, breaks and mends.
        owner: e2e
        trigger: {type: manual}
        steps:
          - {id: amount, type: function, function: format_amount, arguments: {amount: "12.5", currency: EUR}}
        """)
    extra.write_text(valid)
    try:
        api.wait_for_dag("logic_app__e2e_extra")
        extra.write_text(valid.replace("currency: EUR}}", "currency: EUR}, retries: lots}"))

        def error_of_the_file() -> list[dict[str, Any]]:
            return [e for e in api.get("/importErrors")["import_errors"] if e["filename"].endswith("e2e_extra.yaml")]

        [error] = wait_until(error_of_the_file, "the broken definition's import error")
        assert "e2e_extra.yaml:6:" in error["stack_trace"], error["stack_trace"]
        assert "steps[0].retries: Input should be a valid integer" in error["stack_trace"], error["stack_trace"]
        assert not [e for e in api.get("/importErrors")["import_errors"] if "e2e_extra" not in e["filename"]]
        for dag_id in (ONBOARDING, ALERT, DIGEST):
            dag = api.get(f"/dags/{dag_id}")
            assert dag["is_stale"] is False and dag["has_import_errors"] is False, dag
        # (Its DAG keeps its last good version until Airflow's stale threshold: 180 s in make run.)

        extra.write_text(valid)  # mended: its error goes at the bundle's next refresh, and its DAG stays
        wait_until(lambda: not error_of_the_file(), "the mended definition's import error gone")
        wait_until(lambda: api.get("/dags/logic_app__e2e_extra")["is_stale"] is False, "the mended workflow's DAG")
    finally:
        extra.unlink(missing_ok=True)
