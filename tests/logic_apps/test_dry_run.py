"""dry-run: the steps run in order in this process with recorders, with every socket blocked: what would be sent,
branches, loops, failures and run_after statuses."""

from __future__ import annotations

import json
import socket
import textwrap
from collections.abc import Iterator
from typing import Any

import pytest

from demobank.events.catalog import examples
from demobank.logic_apps.definition import RunStatus, parse_definition
from demobank.logic_apps.dry_run import DryRunError, dry_run
from tests.logic_apps.test_definition import ONBOARDING


@pytest.fixture(autouse=True)
def no_network(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Any]]:
    """Any connection attempt fails the test (and is recorded, in case a step swallows the error)."""
    attempts: list[Any] = []

    def refuse(self: socket.socket, address: Any) -> None:
        attempts.append(address)
        raise AssertionError(f"a dry run opened a connection to {address}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", lambda *a, **k: refuse(None, a[0] if a else k))  # type: ignore[arg-type]
    yield attempts
    assert attempts == []


def _by_id(report: Any) -> dict[str, Any]:
    return {step.step_id: step for step in report.steps}


CUSTOMER = examples("customer.created")[0]
VALID_ONBOARDING = ONBOARDING.replace('data: {email: "{{ inputs.email }}"}', f"data: {json.dumps(CUSTOMER)}")


def test_onboarding_would_send_an_email_an_sms_and_publish_an_event() -> None:
    report = dry_run(parse_definition(VALID_ONBOARDING), {"email": "ada@example.com", "phone": "+15005550006"})
    would = report.would()
    assert [item.kind for item in would] == ["email", "sms", "event"]
    assert would[0].fields["to"] == ["ada@example.com"] and would[0].fields["subject"] == "Welcome to Demo Bank"
    assert would[1].fields == {"connection": "twilio_default", "to": ["+15005550006"],
                               "body": "Welcome, ada@example.com: reply YES to confirm this number"}
    assert would[2].fields == {"event_type": "customer.created", "data": CUSTOMER}
    assert all(step.status is RunStatus.SUCCEEDED for step in report.steps)


def test_bad_inputs_are_refused_before_any_step() -> None:
    workflow = parse_definition(ONBOARDING)
    with pytest.raises(DryRunError, match="input 'phone' is required"):
        dry_run(workflow, {"email": "ada@example.com"})
    with pytest.raises(DryRunError, match="input 'email': 'nobody' does not match"):
        dry_run(workflow, {"email": "nobody", "phone": "+1"})
    with pytest.raises(DryRunError, match="input 'segment': 'vip' is not one of"):
        dry_run(workflow, {"email": "a@b.c", "phone": "+1", "segment": "vip"})
    with pytest.raises(DryRunError, match="no input 'colour'"):
        dry_run(workflow, {"email": "a@b.c", "phone": "+1", "colour": "red"})


def test_an_event_its_schema_refuses_fails_that_step() -> None:
    """customer.created carries no e-mail address (the catalog keeps contacts out of events)."""
    report = _by_id(dry_run(parse_definition(ONBOARDING), {"email": "a@b.c", "phone": "+1"}))
    assert report["announce"].status is RunStatus.FAILED and "EventValidationError" in report["announce"].error
    assert report["announce"].would == []


ALERT = textwrap.dedent("""\
    name: alert
    description: d
    owner: o
    trigger: {type: event, event_type: transaction.created}
    steps:
      - {id: score, type: function, function: risk_score, arguments: {transaction: "{{ trigger.event.data }}"}}
      - {id: risky, type: condition, expression: "steps.score.output >= 0.5", if_true: [text], if_false: [note]}
      - {id: text, type: send_sms, to: "+15005550006", body: "Risk {{ steps.score.output }}"}
      - {id: note, type: publish_event, event_type: demobank.ping, data: {message: calm}, run_after: [risky]}
      - {id: after_failure, type: send_sms, to: "+1", body: "scoring failed", run_after: {score: [failed]}}
    """)


def _event(**changes: Any) -> dict[str, Any]:
    return {"id": "e-1", "type": "transaction.created", "data": {**examples("transaction.created")[0], **changes}}


def test_a_condition_runs_one_branch_and_skips_the_other() -> None:
    workflow = parse_definition(ALERT)
    risky = _by_id(dry_run(workflow, event=_event(amount="9000.00", channel="card_not_present",
                                                   merchant={"name": "Bets", "category_code": "7995"})))
    assert risky["risky"].output is True
    assert risky["text"].status is RunStatus.SUCCEEDED and risky["text"].would[0].fields["body"] == "Risk 0.95"
    assert risky["note"].status is RunStatus.SKIPPED and "is True" in risky["note"].reason
    assert risky["after_failure"].status is RunStatus.SKIPPED and "score succeeded" in risky["after_failure"].reason

    calm = _by_id(dry_run(workflow, event=_event()))
    assert calm["risky"].output is False
    assert calm["text"].status is RunStatus.SKIPPED and calm["note"].status is RunStatus.SUCCEEDED


def test_a_failed_function_runs_the_steps_that_wait_for_its_failure() -> None:
    report = _by_id(dry_run(parse_definition(ALERT), event={"id": "e", "data": {"transaction_id": "T"}}))
    assert report["score"].status is RunStatus.FAILED and "amount: Field required" in report["score"].error
    assert report["risky"].status is RunStatus.SKIPPED
    assert report["after_failure"].status is RunStatus.SUCCEEDED
    assert report["after_failure"].would[0].fields["body"] == "scoring failed"
    with pytest.raises(DryRunError, match="an event trigger runs with an event"):
        dry_run(parse_definition(ALERT))


DIGEST = textwrap.dedent("""\
    name: digest
    description: d
    owner: o
    trigger: {type: schedule, cron: "0 6 * * *"}
    steps:
      - {id: fetch, type: http_request, connection: core_banking_api, endpoint: "/customers?day={{ ds }}"}
      - id: mail_all
        type: for_each
        items: "{{ steps.fetch.output.customers }}"
        step: {type: send_email, to: "{{ item.email }}", subject: "Digest {{ ds }}", body: "Hello {{ item.name }}"}
    """)


def test_for_each_over_a_given_http_response_and_a_failed_loop_without_one() -> None:
    from datetime import UTC, datetime

    workflow = parse_definition(DIGEST)
    customers = {"customers": [{"email": "a@example.com", "name": "Ada"}, {"email": "b@example.com", "name": "Bo"}]}
    report = _by_id(dry_run(workflow, responses={"fetch": customers}, now=datetime(2026, 12, 3, tzinfo=UTC)))
    assert report["fetch"].would[0].fields["endpoint"] == "/customers?day=2026-12-03"
    assert [(w.fields["to"], w.fields["body"]) for w in report["mail_all"].would] == [
        (["a@example.com"], "Hello Ada"), (["b@example.com"], "Hello Bo")]
    assert report["mail_all"].output == [{"recipients": 1, "message_ids": []}] * 2
    without = _by_id(dry_run(workflow))
    assert without["fetch"].output is None and without["mail_all"].status is RunStatus.FAILED


# -- the shipped examples, through the command line -----------------------------------------------------------


@pytest.fixture
def examples_folder(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DEMOBANK_LOGIC_APPS_DIR", raising=False)


def test_the_examples_validate_against_the_project(examples_folder: None, capsys: pytest.CaptureFixture[str]) -> None:
    from demobank.cli import main

    assert main(["workflows", "validate"]) == 0
    assert "3 definition(s): 3 valid" in capsys.readouterr().out


def test_dry_run_of_the_onboarding_example_prints_its_messages(examples_folder: None,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    from demobank.cli import main

    assert main(["workflows", "dry-run", "customer_onboarding", "--input", "customer_id=CUST-12345", "--input",
                 "first_name=Ada", "--input", "email=ada@example.com", "--input", "phone=+15005550006"]) == 0
    out = capsys.readouterr().out
    assert '"subject": "Welcome to Demo Bank, Ada"' in out and '"to": ["a***@example.com"]' in out
    assert '"body": "Demo Bank: welcome, Ada! Reply YES to confirm this is your number."' in out
    assert '"event_type": "customer.created"' in out and '"customer_id": "CUST-12345"' in out
    assert "ada@example.com" not in out and "+15005550006" not in out  # recipients masked


def test_dry_run_of_the_alert_example_with_an_event(examples_folder: None, tmp_path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    from demobank.cli import main

    data = {**examples("transaction.created")[0], "amount": "12000.00", "channel": "card_not_present"}
    event = tmp_path / "event.json"
    event.write_text(json.dumps({"id": "e-1", "type": "transaction.created", "data": data}))
    assert main(["workflows", "dry-run", "transaction_alert", "--event", str(event)]) == 0
    out = capsys.readouterr().out
    assert "would send sms" in out and "an online card payment of €12,000.00" in out
    assert '"customer": "CUST-00042"' in out  # the contact is looked up when the step sends, not in a dry run
    assert '"event_type": "transaction.flagged"' in out and '"risk_score": 65' in out


def test_dry_run_of_the_digest_example_with_a_response(examples_folder: None, tmp_path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    from demobank.cli import main

    customers = [{"customer_id": f"CUST-1000{n}", "full_name": f"Customer {n}", "email": f"c{n}@example.com"}
                 for n in range(3)]
    response = tmp_path / "customers.json"
    response.write_text(json.dumps({"customers": customers, "next_page": None}))
    assert main(["workflows", "dry-run", "daily_digest", "--response", f"changed_customers={response}"]) == 0
    out = capsys.readouterr().out
    assert "/customers?updated_since=" in out and "&page_size=10" in out
    assert out.count("would send email") == 3 and "Hello Customer 2" in out
