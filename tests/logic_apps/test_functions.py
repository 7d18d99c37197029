"""Functions for Logic Apps: registration, argument and result checks at validation and at run time, and the
suite's own functions."""

from __future__ import annotations

from decimal import Decimal

import pytest

from demobank.events.catalog import examples
from demobank.logic_apps import functions
from demobank.logic_apps.functions import FunctionError, function
from demobank.logic_apps.library import get, registered


def _is_literal(value: object) -> bool:
    return not (isinstance(value, str) and "{{" in value)


def test_the_suites_functions_are_registered_with_their_parameters() -> None:
    found = registered()
    assert {"risk_score", "format_amount"} <= set(found)
    assert list(found["risk_score"].parameters) == ["transaction"]
    assert found["format_amount"].parameters["currency"].required is False


def test_risk_score_of_catalog_examples_and_of_risky_transactions() -> None:
    score = get("risk_score")
    ordinary = examples("transaction.created")[0]
    assert 0 <= score.run({"transaction": ordinary}) < 0.2
    risky = {**ordinary, "amount": "9000.00", "direction": "debit", "channel": "card_not_present",
             "merchant": {"name": "Lucky Bets", "category_code": "7995", "country": "MT"}}
    assert score.run({"transaction": risky}) == 1.0
    assert score.run({"transaction": {**risky, "direction": "credit"}}) == 0.0


def test_format_amount() -> None:
    fmt = get("format_amount")
    assert fmt.run({"amount": "1234.5"}) == "€1,234.50"
    assert fmt.run({"amount": Decimal("12"), "currency": "usd"}) == "$12.00"
    assert fmt.run({"amount": "1000", "currency": "SEK"}) == "1,000.00 SEK"


def test_arguments_are_checked_when_validating_templates_left_for_run_time() -> None:
    fmt = get("format_amount")
    assert fmt.check_arguments({"amount": "{{ trigger.event.data.amount }}"}, literal=_is_literal) == []
    assert fmt.check_arguments({"amount": "lots", "colour": "red"}, literal=_is_literal) == [
        "format_amount() has no parameter 'colour' (it takes: amount, currency)",
        "format_amount() argument 'amount': Input should be a valid decimal"]
    assert fmt.check_arguments({}, literal=_is_literal) == ["format_amount() needs the argument 'amount'"]


def test_at_run_time_a_bad_argument_or_result_is_a_clear_error() -> None:
    with pytest.raises(FunctionError, match=r"risk_score\(\) argument 'transaction': amount: Field required"):
        get("risk_score").run({"transaction": {"transaction_id": "T", "currency": "EUR", "direction": "debit",
                                               "channel": "atm"}})

    @function(name="test_liar")
    def liar(n: int) -> int:
        return "not a number"  # type: ignore[return-value]

    try:
        with pytest.raises(FunctionError, match=r"test_liar\(\) returned a value that is not its declared result"):
            get("test_liar").run({"n": 1})
        with pytest.raises(FunctionError, match="no function 'nope' is registered"):
            get("nope")
    finally:
        functions.REGISTRY.pop("test_liar", None)


def test_registration_refuses_untyped_and_variadic_functions_and_duplicates() -> None:
    with pytest.raises(TypeError, match="parameter 'x' has no type annotation"):
        function(lambda x: x)
    with pytest.raises(TypeError, match=r"\*args and \*\*kwargs are not allowed"):
        @function(name="test_variadic")
        def variadic(*values: int) -> int:
            return 0
    with pytest.raises(TypeError, match="registered twice"):
        @function(name="risk_score")
        def impostor(transaction: dict) -> float:
            return 0.0
