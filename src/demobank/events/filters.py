"""Event filters of targets: which event types (``event_types``) and which data (``match``) a target selects.

Used where events are written (:mod:`demobank.events.outbox`), where targets are edited
(:mod:`demobank.events.targets`) and where replays are queued (:mod:`demobank.events.replay`); it imports none of
them.

``event_types`` patterns: ``"*"``, exact types, or prefixes such as ``"transaction.*"``. ``match``: conditions on
the event's data, all of which must hold, in the spirit of EventBridge's content filtering::

    {"amount": {">=": "1000"}}              numeric comparison (decimal strings or numbers; >, >=, <, <=, =, !=)
    {"currency": ["EUR", "USD"]}            one of these values
    {"direction": "debit"}                  equal to this value
    {"merchant.country": "DE"}              a dotted path into nested objects

A condition on a field the event does not have does not hold.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from decimal import Decimal, InvalidOperation
from typing import Any

from demobank.events.envelope import is_event_type

_COMPARISONS = (">", ">=", "<", "<=", "=", "!=")
_FIELD_PATTERN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")


# -- event types --------------------------------------------------------------------------------------------------


def type_matches(pattern: str, event_type: str) -> bool:
    """Whether one filter pattern matches an event type.

    ``"*"`` matches every type; ``"transaction.*"`` every type that starts with ``transaction.`` (at any depth,
    so ``"pipeline.*"`` matches ``pipeline.run.completed``); anything else matches that exact type.
    """
    if pattern == "*":
        return True
    if pattern.endswith(".*"):
        return event_type.startswith(pattern[:-1])
    return pattern == event_type


def filter_matches(patterns: Iterable[str], event_type: str) -> bool:
    """Whether any pattern of a target's ``event_types`` filter matches ``event_type``."""
    return any(type_matches(pattern, event_type) for pattern in patterns)


def validate_type_filter(patterns: Any, known_types: Iterable[str] | None = None) -> list[str]:
    """Check a target's ``event_types`` filter (for the code that creates or edits targets).

    :param patterns: a non-empty list of ``"*"``, exact event types, or prefixes ending in ``".*"``.
    :param known_types: when given, an exact type must be one of them and a prefix must match at least one.
    :return: the patterns, duplicates removed, in their order.
    :raises ValueError: naming every bad pattern.
    """
    if isinstance(patterns, str) or not isinstance(patterns, Sequence) or not patterns:
        raise ValueError(
            f'event_types must be a non-empty list of patterns, got {patterns!r}: e.g. ["*"] for every type, '
            '["transaction.created"], or ["transaction.*"]'
        )
    known = sorted(known_types) if known_types is not None else None
    errors = []
    for index, pattern in enumerate(patterns):
        if not isinstance(pattern, str):
            errors.append(f"event_types[{index}] = {pattern!r} is not a string")
        elif pattern == "*":
            continue
        elif pattern.endswith(".*"):
            if not is_event_type(pattern[:-2] + ".x"):
                errors.append(f"event_types[{index}] = {pattern!r} is not a prefix pattern such as 'transaction.*'")
            elif known is not None and not any(type_matches(pattern, known_type) for known_type in known):
                errors.append(f"event_types[{index}] = {pattern!r} matches no event type of the catalog")
        elif not is_event_type(pattern):
            errors.append(
                f"event_types[{index}] = {pattern!r} is neither '*', an event type such as 'transaction.created', "
                "nor a prefix such as 'transaction.*'"
            )
        elif known is not None and pattern not in known:
            errors.append(f"event_types[{index}] = {pattern!r} is not an event type of the catalog")
    if errors:
        hint = f" (known types: {', '.join(known)})" if known else ""
        raise ValueError("invalid event_types filter: " + "; ".join(errors) + hint)
    return list(dict.fromkeys(patterns))


# -- data conditions (match) --------------------------------------------------------------------------------------


def _decimal(value: Any) -> Decimal | None:
    if isinstance(value, bool) or not isinstance(value, int | float | str | Decimal):
        return None
    try:
        number = Decimal(str(value))
    except InvalidOperation:
        return None
    return number if number.is_finite() else None


def validate_match(match: Any) -> dict[str, Any] | None:
    """Check a ``match`` filter; return it (``None`` or ``{}`` mean no condition).

    :raises ValueError: naming every bad condition and the form it should take.
    """
    if match is None or match == {}:
        return None
    if not isinstance(match, Mapping):
        raise ValueError(f'match must be an object of field conditions, e.g. {{"amount": {{">=": "1000"}}}}, '
                         f"got {type(match).__name__}")
    errors = []
    for field, condition in match.items():
        where = f"match[{field!r}]"
        if not isinstance(field, str) or not _FIELD_PATTERN.match(field):
            errors.append(f"{where}: a field is a name or a dotted path such as 'amount' or 'merchant.country'")
        elif isinstance(condition, Mapping):
            if not condition:
                errors.append(f"{where}: an empty comparison; give one such as {{'>=': '1000'}}")
            for operator, operand in condition.items():
                if operator not in _COMPARISONS:
                    errors.append(f"{where}: unknown comparison {operator!r}; use one of {', '.join(_COMPARISONS)}")
                elif _decimal(operand) is None:
                    errors.append(f"{where}[{operator!r}]: {operand!r} is not a number (e.g. 1000 or \"1000.00\")")
        elif isinstance(condition, list):
            if not condition or not all(isinstance(item, str | int | float | bool) for item in condition):
                errors.append(f"{where}: a list of values must be non-empty and hold only strings, numbers, booleans")
        elif not isinstance(condition, str | int | float | bool):
            errors.append(f"{where}: {condition!r} is not a value, a list of values or a comparison object")
    if errors:
        raise ValueError("invalid match filter: " + "; ".join(errors))
    return dict(match)


_MISSING = object()


def _lookup(data: Any, path: str) -> Any:
    for part in path.split("."):
        if not isinstance(data, Mapping) or part not in data:
            return _MISSING
        data = data[part]
    return data


def _compare(operator: str, left: Decimal, right: Decimal) -> bool:
    return {">": left > right, ">=": left >= right, "<": left < right, "<=": left <= right, "=": left == right,
            "!=": left != right}[operator]


def data_matches(match: Mapping[str, Any] | None, data: Any) -> bool:
    """Whether an event's data meets every condition of a (validated) ``match`` filter."""
    if not match:
        return True
    for field, condition in match.items():
        value = _lookup(data, field)
        if value is _MISSING:
            return False
        if isinstance(condition, Mapping):
            number = _decimal(value)
            if number is None or not all(_compare(op, number, _decimal(operand))  # type: ignore[arg-type]
                                         for op, operand in condition.items()):
                return False
        elif isinstance(condition, list):
            if value not in condition:
                return False
        elif value != condition:
            return False
    return True
