"""The Logic Apps' templating, the same in runs and dry runs: native types kept, text stays text, undefined fails."""

from __future__ import annotations

import pytest
from jinja2 import UndefinedError

from demobank.logic_apps.templating import evaluate, render


def test_one_expression_keeps_its_type_and_text_around_it_makes_a_string() -> None:
    context = {"event": {"data": {"amount": "12.50", "n": 3}}, "phone": "+15005550006"}
    assert render("{{ event.data }}", context) == {"amount": "12.50", "n": 3}
    assert render("{{ event.data.n * 2 }}", context) == 6
    assert render("{{ phone }}", context) == "+15005550006"  # not parsed as a number
    assert render("total: {{ event.data.amount }}", context) == "total: 12.50"
    assert render({"a": ["{{ event.data.n }}", "plain"]}, context) == {"a": [3, "plain"]}


@pytest.mark.parametrize("template", ["{{ nothing }}", "{{ event.data.missing }}", "x {{ nothing }}"])
def test_an_undefined_name_fails_even_when_it_is_the_whole_field(template: str) -> None:
    with pytest.raises(UndefinedError):
        render(template, {"event": {"data": {}}})


def test_a_condition_is_a_truth_value_and_an_undefined_one_fails() -> None:
    assert evaluate("score >= 0.6", {"score": 0.65}) is True
    assert evaluate("score >= 0.6", {"score": 0.2}) is False
    with pytest.raises(UndefinedError):
        evaluate("missing", {})
