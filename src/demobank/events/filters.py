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

Both filters are bounded (:mod:`demobank.limits`, each an environment variable): at most 50 ``event_types``
patterns, 20 ``match`` conditions, 100 values in one list, 200 characters in a pattern, field path or value, and 8
parts in a field path. A filter over a limit is refused with a message that names the limit; filters saved before a
limit was lowered keep working.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from decimal import Decimal, InvalidOperation
from typing import Any

from demobank.events.envelope import is_event_type
from demobank.limits import (
    TARGET_MAX_CONDITIONS,
    TARGET_MAX_EVENT_TYPES,
    TARGET_MAX_PATH_DEPTH,
    TARGET_MAX_TEXT_LENGTH,
    TARGET_MAX_VALUES,
    Limit,
)

_COMPARISONS = (">", ">=", "<", "<=", "=", "!=")
_FIELD_PATTERN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _over(what: str, count: int, limit: Limit, value: int, hint: str) -> str:
    """``"event_types has 51 patterns, over the limit of 50 patterns (DEMOBANK_TARGET_MAX_EVENT_TYPES): …"``."""
    return f"{what} has {count} {limit.unit}, over the limit of {limit.describe(value)}: {hint}"


def check_type_filter_size(patterns: Any) -> None:
    """Refuse an ``event_types`` list with more patterns than ``DEMOBANK_TARGET_MAX_EVENT_TYPES`` (checked before
    its items, so that a huge list costs one message).

    :raises ValueError: naming the count and the limit.
    """
    limit = TARGET_MAX_EVENT_TYPES.value()
    if isinstance(patterns, list | tuple) and len(patterns) > limit:
        raise ValueError(_over("event_types", len(patterns), TARGET_MAX_EVENT_TYPES, limit,
                               "cover several types with one prefix pattern such as 'transaction.*', or '*'"))


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
    check_type_filter_size(patterns)
    max_length = TARGET_MAX_TEXT_LENGTH.value()
    known = sorted(known_types) if known_types is not None else None
    errors = []
    for index, pattern in enumerate(patterns):
        if not isinstance(pattern, str):
            errors.append(f"event_types[{index}] = {_short(pattern)} is not a string")
        elif len(pattern) > max_length:
            errors.append(f"event_types[{index}] = {_short(pattern)} is {len(pattern)} characters, over the limit of "
                          f"{TARGET_MAX_TEXT_LENGTH.describe(max_length)}")
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


def _text_too_long(where: str, value: Any, max_length: int) -> str | None:
    if isinstance(value, str) and len(value) > max_length:
        return (f"{where}: {_short(value)} is {len(value)} characters, over the limit of "
                f"{TARGET_MAX_TEXT_LENGTH.describe(max_length)}")
    return None


def _field_problem(where: str, field: Any, max_length: int, max_depth: int) -> str | None:
    if not isinstance(field, str) or not _FIELD_PATTERN.match(field):
        return f"{where}: a field is a name or a dotted path such as 'amount' or 'merchant.country'"
    if len(field) > max_length:
        return (f"{where}: the field path is {len(field)} characters, over the limit of "
                f"{TARGET_MAX_TEXT_LENGTH.describe(max_length)}")
    depth = field.count(".") + 1
    if depth > max_depth:
        return (f"{where}: the field path has {depth} parts, over the limit of "
                f"{TARGET_MAX_PATH_DEPTH.describe(max_depth)}")
    return None


def _condition_problems(where: str, condition: Any, max_length: int, max_values: int) -> list[str]:
    if isinstance(condition, Mapping):
        if not condition:
            return [f"{where}: an empty comparison; give one such as {{'>=': '1000'}}"]
        errors = []
        for operator, operand in condition.items():
            if operator not in _COMPARISONS:
                errors.append(f"{where}: unknown comparison {_short(operator)}; use one of {', '.join(_COMPARISONS)}")
            elif (too_long := _text_too_long(f"{where}[{operator!r}]", operand, max_length)) is not None:
                errors.append(too_long)
            elif _decimal(operand) is None:
                errors.append(f"{where}[{operator!r}]: {_short(operand)} is not a number (e.g. 1000 or \"1000.00\")")
        return errors
    if isinstance(condition, list):
        if len(condition) > max_values:
            return [_over(where, len(condition), TARGET_MAX_VALUES, max_values,
                          "match fewer values, or a comparison such as {'>=': '1000'}")]
        if not condition or not all(isinstance(item, str | int | float | bool) for item in condition):
            return [f"{where}: a list of values must be non-empty and hold only strings, numbers, booleans"]
        return [problem for index, item in enumerate(condition)
                if (problem := _text_too_long(f"{where}[{index}]", item, max_length)) is not None]
    if not isinstance(condition, str | int | float | bool):
        return [f"{where}: {_short(condition)} is not a value, a list of values or a comparison object"]
    too_long = _text_too_long(where, condition, max_length)
    return [too_long] if too_long else []


def validate_match(match: Any) -> dict[str, Any] | None:
    """Check a ``match`` filter; return it (``None`` or ``{}`` mean no condition).

    :raises ValueError: naming every bad condition and the form it should take, or the limit it is over.
    """
    if match is None or match == {}:
        return None
    if not isinstance(match, Mapping):
        raise ValueError(f'match must be an object of field conditions, e.g. {{"amount": {{">=": "1000"}}}}, '
                         f"got {type(match).__name__}")
    max_conditions = TARGET_MAX_CONDITIONS.value()
    if len(match) > max_conditions:
        raise ValueError("invalid match filter: " + _over(
            "match", len(match), TARGET_MAX_CONDITIONS, max_conditions,
            "keep the conditions that select the events (each must hold), or filter further in the consumer"))
    max_length, max_depth = TARGET_MAX_TEXT_LENGTH.value(), TARGET_MAX_PATH_DEPTH.value()
    max_values = TARGET_MAX_VALUES.value()
    errors = []
    for field, condition in match.items():
        where = f"match[{_short(field)}]"
        problem = _field_problem(where, field, max_length, max_depth)
        if problem is not None:
            errors.append(problem)
            continue
        errors.extend(_condition_problems(where, condition, max_length, max_values))
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
