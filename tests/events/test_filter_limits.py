"""A target's filter is bounded: the number of patterns and conditions, list sizes, text lengths and path depth;
each refusal names the limit (and its environment variable). Without Airflow, without a database."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from pydantic import ValidationError

from demobank.events.filters import data_matches, validate_match, validate_type_filter
from demobank.events.targets import TargetSpec, describe_validation_error, validation_problems
from demobank.limits import (
    ALL_LIMITS,
    TARGET_MAX_CONDITIONS,
    TARGET_MAX_EVENT_TYPES,
    TARGET_MAX_PATH_DEPTH,
    TARGET_MAX_TEXT_LENGTH,
    TARGET_MAX_VALUES,
)

KNOWN = ["customer.created", "transaction.created", "transaction.flagged"]


@pytest.fixture(autouse=True)
def _default_limits(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for limit in ALL_LIMITS:
        monkeypatch.delenv(limit.env, raising=False)
    yield


def test_event_types_at_the_limit_are_accepted_and_one_more_is_refused() -> None:
    patterns = ["transaction.created"] * 50
    assert validate_type_filter(patterns, KNOWN) == ["transaction.created"]

    with pytest.raises(ValueError) as refused:
        validate_type_filter([*patterns, "*"], KNOWN)
    assert str(refused.value) == (
        "event_types has 51 patterns, over the limit of 50 patterns (DEMOBANK_TARGET_MAX_EVENT_TYPES): cover several "
        "types with one prefix pattern such as 'transaction.*', or '*'")


def test_a_long_pattern_is_refused_with_its_length() -> None:
    pattern = "transaction." + "x" * 200
    with pytest.raises(ValueError, match=r"event_types\[0\] = 'transaction\.x+… is 212 characters, over the limit "
                                         r"of 200 characters \(DEMOBANK_TARGET_MAX_TEXT_LENGTH\)"):
        validate_type_filter([pattern])


def test_a_huge_event_types_list_costs_one_message() -> None:
    """Checked before pydantic looks at each item: 100,000 numbers are one problem, not 100,000."""
    with pytest.raises(ValidationError) as refused:
        TargetSpec(name="bus", event_types=list(range(100_000)))
    problems = validation_problems(refused.value)
    assert problems == [{"path": "event_types", "message": (
        "event_types has 100000 patterns, over the limit of 50 patterns (DEMOBANK_TARGET_MAX_EVENT_TYPES): cover "
        "several types with one prefix pattern such as 'transaction.*', or '*'")}]


@pytest.mark.parametrize(("match", "message"), [
    ({f"f{n}": "x" for n in range(21)},
     "match has 21 conditions, over the limit of 20 conditions (DEMOBANK_TARGET_MAX_CONDITIONS): keep the conditions "
     "that select the events"),
    ({"currency": [f"C{n}" for n in range(101)]},
     "match['currency'] has 101 values, over the limit of 100 values (DEMOBANK_TARGET_MAX_VALUES)"),
    ({"merchant.name": "x" * 201},
     "match['merchant.name']: 'xxxxxxxx"),
    ({"merchant.name": "x" * 201},
     "is 201 characters, over the limit of 200 characters (DEMOBANK_TARGET_MAX_TEXT_LENGTH)"),
    ({"currency": ["EUR", "x" * 300]},
     "match['currency'][1]: 'xxx"),
    ({"amount": {">=": "1" * 300}},
     "match['amount']['>=']: '1111"),
    ({".".join(["a"] * 9): "x"},
     "the field path has 9 parts, over the limit of 8 parts (DEMOBANK_TARGET_MAX_PATH_DEPTH)"),
    ({"a" * 201: "x"},
     "the field path is 201 characters, over the limit of 200 characters (DEMOBANK_TARGET_MAX_TEXT_LENGTH)"),
])
def test_match_limits_each_name_the_limit(match: dict, message: str) -> None:
    with pytest.raises(ValueError) as refused:
        validate_match(match)
    assert message in str(refused.value)
    assert len(str(refused.value)) < 1_000  # values are shortened in the message, never echoed whole


def test_match_at_every_limit_is_accepted_and_works() -> None:
    match = {f"f{n}": "x" * 200 for n in range(19)}
    match[".".join(["a"] * 8)] = [f"V{n}" for n in range(100)]
    assert validate_match(match) == match
    data = {f"f{n}": "x" * 200 for n in range(19)}
    data["a"] = {"a": {"a": {"a": {"a": {"a": {"a": {"a": "V99"}}}}}}}
    assert data_matches(match, data)


def test_limits_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(TARGET_MAX_CONDITIONS.env, "2")
    monkeypatch.setenv(TARGET_MAX_VALUES.env, "3")
    monkeypatch.setenv(TARGET_MAX_EVENT_TYPES.env, "1")
    monkeypatch.setenv(TARGET_MAX_PATH_DEPTH.env, "1")
    monkeypatch.setenv(TARGET_MAX_TEXT_LENGTH.env, "5")

    assert validate_match({"a": "12345", "b": [1, 2, 3]})
    with pytest.raises(ValueError, match=r"3 conditions, over the limit of 2 conditions"):
        validate_match({"a": 1, "b": 2, "c": 3})
    with pytest.raises(ValueError, match=r"4 values, over the limit of 3 values"):
        validate_match({"a": [1, 2, 3, 4]})
    with pytest.raises(ValueError, match=r"2 parts, over the limit of 1 parts"):
        validate_match({"a.b": 1})
    with pytest.raises(ValueError, match=r"6 characters, over the limit of 5 characters"):
        validate_match({"a": "123456"})
    with pytest.raises(ValueError, match=r"2 patterns, over the limit of 1 patterns"):
        validate_type_filter(["*", "transaction.*"])

    monkeypatch.setenv(TARGET_MAX_CONDITIONS.env, "-1")
    with pytest.raises(ValueError, match=r"DEMOBANK_TARGET_MAX_CONDITIONS='-1' is not a positive whole number"):
        validate_match({"a": 1})


def test_the_target_spec_refuses_an_unbounded_filter_and_says_the_limit() -> None:
    with pytest.raises(ValidationError) as refused:
        TargetSpec(name="alerts", event_types=["transaction.created"],
                   match={"amount": {">=": "1000"}, "currency": [f"C{n}" for n in range(500)]})
    text = describe_validation_error(refused.value)
    assert text.startswith("invalid target: match: invalid match filter: match['currency'] has 500 values, over the "
                           "limit of 100 values (DEMOBANK_TARGET_MAX_VALUES)")
