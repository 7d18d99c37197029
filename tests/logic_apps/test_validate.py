"""`validate`'s meaning checks: connections, functions and their arguments, event types and match fields, and every
template reference, each problem as file:line:column: field: message."""

from __future__ import annotations

import textwrap

import pytest

from demobank.events.catalog import get_catalog
from demobank.logic_apps.library import registered
from demobank.logic_apps.validate import Context, references, validate_files, validate_text
from tests.logic_apps.test_definition import EVERY_STEP, ONBOARDING

CONTEXT = Context(connections={"twilio_default", "sendgrid_default", "core_banking_api"}, functions=registered(),
                  catalog=get_catalog())

ALERT = textwrap.dedent("""\
    name: alert
    description: d
    owner: o
    trigger: {type: event, event_type: transaction.created, match: {amount: {">=": "1000"}}}
    steps:
      - {id: score, type: function, function: risk_score, arguments: {transaction: "{{ trigger.event.data }}"}}
      - id: text
        type: send_sms
        to: "+15005550006"
        body: "{{ trigger.event.data.amount }} {{ trigger.event.data.currency }}, risk {{ steps.score.output }}"
    """)


def _problems(text: str) -> list[str]:
    _workflow, problems = validate_text(textwrap.dedent(text), "x.yaml", CONTEXT)
    return [str(problem) for problem in problems]


@pytest.mark.parametrize("text", [ONBOARDING, EVERY_STEP, ALERT])
def test_the_examples_are_valid(text: str) -> None:
    assert _problems(text) == []


MANUAL = """\
    name: x
    description: d
    owner: o
    trigger: {type: manual, inputs: {email: {type: string}}}
    steps:
"""


@pytest.mark.parametrize(("steps", "expected"), [
    ("  - {id: one, type: send_sms, connection: twilio_prod, to: a, body: b}\n",
     "x.yaml:6:43: steps[0].connection: no connection 'twilio_prod'"),
    ("  - {id: one, type: function, function: fraud_model}\n",
     "x.yaml:6:41: steps[0].function: no function 'fraud_model' is registered"),
    ("  - {id: one, type: function, function: format_amount, arguments: {amount: lots, colour: red}}\n",
     "steps[0].arguments: format_amount() has no parameter 'colour'"),
    ("  - {id: one, type: function, function: format_amount, arguments: {amount: lots}}\n",
     "steps[0].arguments: format_amount() argument 'amount': Input should be a valid decimal"),
    ("  - {id: one, type: function, function: format_amount}\n",
     "x.yaml:6:5: steps[0].arguments: format_amount() needs the argument 'amount'"),
    ("  - {id: one, type: publish_event, event_type: account.opened, data: {}}\n",
     "x.yaml:6:48: steps[0].event_type: no event type 'account.opened' in the catalog"),
    ("  - {id: one, type: send_email, to: '{{ inputs.mail }}', subject: s, body: b}\n",
     "x.yaml:6:37: steps[0].to: inputs.mail: no input 'mail' (inputs: email)"),
    ("  - {id: one, type: send_email, to: '{{ inputs.email }}', subject: '{{ steps.two.output }}', body: b}\n"
     "  - {id: two, type: function, function: format_amount, arguments: {amount: '1'}}\n",
     "steps[0].subject: steps.two.output: step 'two' does not run before 'one'"),
    ("  - {id: one, type: send_sms, to: a, body: '{{ steps.ghost.output }}'}\n",
     "steps[0].body: steps.ghost.output: no step 'ghost' in this workflow"),
    ("  - {id: one, type: send_sms, to: a, body: '{{ item.name }}'}\n",
     "steps[0].body: item.name: 'item' exists only in the step of a for_each"),
    ("  - {id: one, type: send_sms, to: a, body: '{{ trigger.event.id }}'}\n",
     "steps[0].body: trigger.event.id: only an event trigger has trigger.event (this one is manual)"),
    ("  - {id: one, type: send_sms, to: a, body: '{{ customer.name }}'}\n",
     "steps[0].body: customer.name: unknown name 'customer'"),
    ("  - {id: one, type: send_sms, to: a, body: '{{ inputs.email '}\n",
     "steps[0].body: template syntax:"),
    ("  - {id: one, type: condition, expression: 'steps.nope.output > 1', if_true: []}\n",
     "steps[0].expression: steps.nope.output: no step 'nope'"),
])
def test_each_meaning_problem_is_located(steps: str, expected: str) -> None:
    problems = _problems(MANUAL + textwrap.indent(steps, "    "))
    assert any(expected in problem for problem in problems), problems


def test_event_trigger_fields_and_match_are_checked_against_the_catalog() -> None:
    broken = ALERT.replace("match: {amount:", "match: {amount_eur:").replace(
        "trigger.event.data.currency", "trigger.event.data.ccy").replace("transaction.created,", "transaction.created,")
    problems = _problems(broken)
    assert any("x.yaml:4:" in p and "trigger.match.amount_eur: transaction.created has no field 'amount_eur'" in p
               for p in problems), problems
    assert any("trigger.event.data.ccy: transaction.created has no field 'ccy'" in p for p in problems), problems
    unknown = _problems(ALERT.replace("event_type: transaction.created", "event_type: transaction.made"))
    assert any("trigger.event_type: no event type 'transaction.made'" in p for p in unknown), unknown


def test_for_each_items_and_item() -> None:
    assert _problems(EVERY_STEP.replace("{{ item.email }}", "{{ item.email }} {{ inputs.x }}")) == [
        "x.yaml:12:34: steps[3].step.to: inputs.x: only a manual trigger has inputs (this one is schedule)"]


def test_references() -> None:
    assert list(references("{{ steps.a.output.b }} {% for c in inputs.list %}{{ c.name }}{% endfor %}")) == [
        ("steps", "a", "output", "b"), ("inputs", "list")]
    assert list(references("{{ trigger.event.data['amount'] | float > 5 }}")) == [
        ("trigger", "event", "data", "amount")]


def test_files_shape_problems_stop_there_and_names_are_unique(tmp_path) -> None:
    (tmp_path / "a.yaml").write_text(ONBOARDING)
    (tmp_path / "b.yaml").write_text(ONBOARDING)
    (tmp_path / "c.yaml").write_text("name: [")
    results = validate_files(sorted(tmp_path.glob("*.yaml")), CONTEXT)
    assert results[tmp_path / "a.yaml"] == []
    assert "workflow 'customer_onboarding' is also defined in" in str(results[tmp_path / "b.yaml"][0])
    assert "not valid YAML" in str(results[tmp_path / "c.yaml"][0])


def test_literal_event_data_is_checked_against_the_types_schema_templated_data_at_run_time() -> None:
    literal = _problems(MANUAL + "      - {id: one, type: publish_event, event_type: demobank.ping, "
                                 "data: {mesage: hi}}\n")
    assert any("steps[0].data: demobank.ping: data.message: is missing" in p for p in literal), literal
    assert any("data.mesage: is not a field of demobank.ping v1; did you mean 'message'?" in p for p in literal)
    assert _problems(MANUAL + "      - {id: one, type: publish_event, event_type: demobank.ping, "
                              "data: {message: '{{ inputs.email }}'}}\n") == []


def test_an_argument_with_a_template_inside_is_checked_at_run_time_not_as_a_literal() -> None:
    """``{amount: "{{ inputs.amount }}"}`` is not a Transaction yet: its type is known once rendered."""
    text = textwrap.dedent("""\
        name: nested
        description: d
        owner: o
        trigger: {type: manual, inputs: {amount: {type: string, required: true}}}
        steps:
          - id: score
            type: function
            function: risk_score
            arguments:
              transaction: {transaction_id: T1, amount: "{{ inputs.amount }}", currency: EUR, direction: debit,
                            channel: atm}
        """)
    assert _problems(text) == []
    assert any("risk_score() argument 'transaction'" in problem
               for problem in _problems(text.replace('"{{ inputs.amount }}"', "lots")))
