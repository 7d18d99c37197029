"""The Logic App definition model: what it accepts, and each problem located by file, line, column and field."""

from __future__ import annotations

import json
import textwrap

import jsonschema
import pytest
import yaml

from demobank.logic_apps.definition import (
    SCHEMA_FILE,
    DefinitionError,
    ForEachStep,
    RunStatus,
    load_definition,
    parse_definition,
    parse_duration,
    schema_text,
)

ONBOARDING = textwrap.dedent("""\
    name: customer_onboarding
    description: Welcome a new customer.
    owner: integration-engineering
    trigger:
      type: manual
      inputs:
        email: {type: string, required: true, pattern: "^[^@]+@[^@]+$", description: The customer's e-mail}
        phone: {type: string, required: true}
        segment: {type: string, enum: [retail, business], default: retail}
    steps:
      - id: welcome
        type: send_email
        to: "{{ inputs.email }}"
        subject: Welcome to Demo Bank
        body: Hello!
      - id: verify
        type: send_sms
        to: "{{ inputs.phone }}"
        body: "Welcome, {{ inputs.email }}: reply YES to confirm this number"
        run_after: [welcome]
        retries: 2
        timeout: 5m
      - id: announce
        type: publish_event
        event_type: customer.created
        data: {email: "{{ inputs.email }}"}
        run_after: {welcome: [succeeded, failed], verify: [succeeded, failed]}
    """)

EVERY_STEP = textwrap.dedent("""\
    name: digest
    description: Every step type once.
    owner: me
    trigger: {type: schedule, cron: "0 6 * * *"}
    steps:
      - {id: fetch, type: http_request, connection: core_banking_api, endpoint: /customers, json: {page: 1}}
      - {id: score, type: function, function: risk_score, arguments: {transaction: "{{ steps.fetch.output }}"}}
      - {id: risky, type: condition, expression: "steps.score.output > 0.8", if_true: [mail_all], if_false: []}
      - id: mail_all
        type: for_each
        items: "{{ steps.fetch.output.customers }}"
        step: {type: send_email, to: "{{ item.email }}", subject: Digest, body: "..."}
      - {id: done, type: publish_event, event_type: demobank.ping, data: "{{ steps.fetch.output }}"}
    """)


def test_a_definition_with_every_trigger_field_and_run_after_form_is_read() -> None:
    workflow = parse_definition(ONBOARDING)
    assert workflow.dag_id == "logic_app__customer_onboarding"
    assert set(workflow.trigger.inputs) == {"email", "phone", "segment"}
    assert workflow.upstream() == {
        "welcome": {},
        "verify": {"welcome": [RunStatus.SUCCEEDED]},
        "announce": {"welcome": [RunStatus.SUCCEEDED, RunStatus.FAILED],
                     "verify": [RunStatus.SUCCEEDED, RunStatus.FAILED]},
    }
    assert parse_duration(workflow.steps[1].timeout).total_seconds() == 300


def test_every_step_type_is_read_and_steps_default_to_waiting_for_the_one_before() -> None:
    workflow = parse_definition(EVERY_STEP)
    assert [step.type for step in workflow.steps] == ["http_request", "function", "condition", "for_each",
                                                      "publish_event"]
    loop = workflow.steps[3]
    assert isinstance(loop, ForEachStep) and loop.step.id == "mail_all_each" and loop.step.type == "send_email"
    edges = workflow.upstream()
    assert edges["score"] == {"fetch": [RunStatus.SUCCEEDED]}
    assert edges["mail_all"] == {"risky": [RunStatus.SUCCEEDED]}
    assert workflow.steps[0].json_body == {"page": 1}


def test_event_trigger() -> None:
    workflow = parse_definition(textwrap.dedent("""\
        name: alert
        description: d
        owner: o
        trigger: {type: event, event_type: transaction.created, match: {amount: {">=": "1000"}}}
        steps: [{id: one, type: send_sms, to: "+15005550006", body: hi}]
        """))
    assert workflow.trigger.event_type == "transaction.created"


@pytest.mark.parametrize(("run_after", "rule"), [
    ("[one]", "all_success"), ("{one: [failed]}", "all_failed"), ("{one: [skipped]}", "all_skipped"),
    ("{one: [succeeded, failed]}", "none_skipped"), ("{one: [succeeded, skipped]}", "none_failed"),
    ("{one: [succeeded, failed, skipped]}", "all_done"),
])
def test_run_after_statuses_are_airflow_trigger_rules(run_after: str, rule: str) -> None:
    from demobank.logic_apps.definition import trigger_rule

    workflow = parse_definition(BASE + textwrap.indent(
        f"  - {{id: one, type: send_sms, to: a, body: b}}\n  - {{id: two, type: send_sms, to: a, body: b, "
        f"run_after: {run_after}}}\n", "    "))
    assert trigger_rule(workflow.upstream()["two"]) == rule


def _problems(text: str) -> list[str]:
    with pytest.raises(DefinitionError) as caught:
        parse_definition(textwrap.dedent(text), "dags/logic_apps/x.yaml")
    return [str(problem) for problem in caught.value.problems]


BASE = """\
    name: x
    description: d
    owner: o
    trigger: {type: schedule, cron: "0 6 * * *"}
    steps:
"""


@pytest.mark.parametrize(("steps", "expected"), [
    ("  - {id: one, type: send_sms, to: a, body: b, bodyy: c}\n",
     "x.yaml:6:47: steps[0].bodyy: unknown field (check its spelling against the schema)"),
    ("  - {id: one, type: send_sms, to: a}\n", "x.yaml:6:5: steps[0].body: Field required"),
    ("  - {id: one, type: send_sms, to: a, body: b, retries: many}\n",
     "x.yaml:6:56: steps[0].retries: Input should be a valid integer"),
    ("  - {id: one, type: send_sms, to: a, body: b, timeout: 5 minutes}\n",
     "x.yaml:6:56: steps[0].timeout: '5 minutes' is not a duration"),
    ("  - {id: one, type: send_sms, to: a, body: b}\n  - {id: one, type: send_sms, to: a, body: b}\n",
     "x.yaml:7:10: steps[1].id: step id 'one' is used twice"),
    ("  - {id: one, type: send_sms, to: a, body: b, run_after: [nope]}\n",
     "x.yaml:6:58: steps[0].run_after: no step 'nope' in this workflow"),
    ("  - {id: one, type: send_sms, to: a, body: b, run_after: [one]}\n",
     "x.yaml:6:58: steps[0].run_after: step 'one' cannot wait for itself"),
    ("  - {id: one, type: function, function: f, run_after: [two]}\n"
     "  - {id: two, type: function, function: f, run_after: [one]}\n",
     "x.yaml:6:3: steps: the steps wait for each other in a cycle: one -> two -> one"),
    ("  - {id: One, type: function, function: f}\n", "x.yaml:6:10: steps[0].id: String should match pattern"),
    ("  - {id: one, type: teleport}\n", "x.yaml:6:5: steps[0]: Input tag 'teleport' found using 'type' does not "
                                        "match any of the expected tags: 'send_sms'"),
    ("  - {id: one, type: condition, expression: x, if_true: [ghost]}\n",
     "x.yaml:6:56: steps[0].if_true: no step 'ghost' in this workflow"),
    ("  - {id: one, type: send_sms, to: a, body: b}\n  - {id: two, type: send_sms, to: a, body: b}\n"
     "  - {id: three, type: send_sms, to: a, body: b, run_after: {one: [succeeded], two: [failed]}}\n",
     "x.yaml:8:60: steps[2].run_after: every step in run_after needs the same statuses"),
    ("  - {id: one, type: send_sms, to: a, body: b}\n"
     "  - {id: two, type: send_sms, to: a, body: b, run_after: {one: [failed, skipped]}}\n",
     "x.yaml:7:58: steps[1].run_after: [failed, skipped] without succeeded cannot be waited for"),
    ("  - {id: one, type: send_sms, to: a, customer: CUST-1, body: b}\n",
     "x.yaml:6:5: steps[0]: give either to (the recipients) or customer (a customer id), not both or neither"),
    ("  - {id: one, type: send_email, subject: s, body: b}\n",
     "x.yaml:6:5: steps[0]: give either to (the recipients) or customer (a customer id), not both or neither"),
])
def test_each_problem_names_its_file_line_column_and_field(steps: str, expected: str) -> None:
    problems = _problems(BASE + textwrap.indent(steps, "    "))
    assert any(expected in problem for problem in problems), problems


@pytest.mark.parametrize(("trigger", "expected"), [
    ('{type: schedule, cron: "0 6 * *"}', "trigger.cron: '0 6 * *' is not a 5-field cron expression"),
    ('{type: schedule}', "trigger.cron: Field required"),
    ('{type: manual, inputs: {Bad-Name: {type: string}}}', "trigger.inputs.Bad-Name: String should match pattern"),
    ('{type: manual, inputs: {n: {type: integer, pattern: "^1"}}}',
     "trigger.inputs.n: pattern applies to string inputs only, not to integer"),
    ('{type: manual, inputs: {n: {type: string, required: true, default: a}}}',
     "trigger.inputs.n: a required input has no default"),
    ('{type: manual, inputs: {n: {type: string, pattern: "("}}}', "trigger.inputs.n.pattern: not a valid regular "
                                                                  "expression"),
    ('{type: manual, inputs: {n: {type: text}}}', "trigger.inputs.n.type: Input should be 'string'"),
    ('{type: webhook}', "trigger: Input tag 'webhook' found using 'type' does not match"),
])
def test_trigger_problems_are_located(trigger: str, expected: str) -> None:
    text = (BASE.replace('{type: schedule, cron: "0 6 * * *"}', trigger)
            + "      - {id: one, type: function, function: f}\n")
    problems = _problems(text)
    assert any(expected in problem and problem.startswith("dags/logic_apps/x.yaml:4:") for problem in problems), \
        problems


def test_not_yaml_not_a_mapping_and_a_missing_file() -> None:
    assert _problems("name: [unclosed\n")[0].startswith("dags/logic_apps/x.yaml:2:1: (definition): not valid YAML")
    assert _problems("- just\n- a list\n") == [
        "dags/logic_apps/x.yaml:1:1: (definition): a definition is a mapping with name, description, owner, trigger "
        "and steps"]
    assert "trigger: Field required" in " ".join(_problems("name: x\ndescription: d\nowner: o\nsteps: []\n"))
    with pytest.raises(DefinitionError, match=r"nowhere.yaml:1:1: \(definition\): cannot be read"):
        load_definition("nowhere.yaml")


def test_the_published_json_schema_is_the_models_and_agrees_with_it() -> None:
    """include/logic_apps/workflow.schema.json is generated from the model (regenerate it with
    `python -c 'from demobank.logic_apps.definition import *; SCHEMA_FILE.write_text(schema_text())'`), and an
    editor checking a file with it accepts and refuses what the model does."""
    assert SCHEMA_FILE.read_text() == schema_text(), "the schema file is stale: regenerate it (see the docstring)"
    validator = jsonschema.Draft202012Validator(json.loads(SCHEMA_FILE.read_text()))
    for text in (ONBOARDING, EVERY_STEP):
        assert list(validator.iter_errors(yaml.safe_load(text))) == []
    broken = yaml.safe_load(ONBOARDING)
    broken["steps"][0]["subjct"] = "typo"
    assert list(validator.iter_errors(broken))
