"""How a Logic App's fields are rendered, the same in a DAG run and in a dry run.

Jinja with native types: a field that is one expression (``"{{ trigger.event.data }}"``) gives its value as it is
(a dict stays a dict, a number a number); text around an expression makes a string. Undefined names are errors
(StrictUndefined), not empty strings. Jinja's own native mode parses rendered strings as Python literals, so a phone
number "+15005550006" would become an int: this one does not.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from itertools import chain, islice
from typing import Any

from jinja2 import StrictUndefined, Undefined
from jinja2.nativetypes import NativeEnvironment, NativeTemplate


def _keep_types(values: Iterator[Any]) -> Any:
    """A template that is one expression gives its value as it is; anything else is text. (Jinja's own native
    concat parses strings as Python literals, so a phone number "+15005550006" would become an int.)"""
    head = list(islice(values, 2))
    if not head:
        return None
    if len(head) == 1:
        return head[0]
    return "".join(str(value) for value in chain(head, values))


class _NativeEnvironment(NativeEnvironment):
    concat = staticmethod(_keep_types)


class _NativeTemplate(NativeTemplate):
    environment_class = _NativeEnvironment


_NativeEnvironment.template_class = _NativeTemplate


_NATIVE = _NativeEnvironment(undefined=StrictUndefined)
"""The one environment every Logic App template renders in."""


def _defined(result: Any) -> Any:
    """A template that is one undefined name renders to the Undefined itself in native mode: fail as text would."""
    if isinstance(result, Undefined):
        result._fail_with_undefined_error()
    return result


def is_template(value: Any) -> bool:
    return isinstance(value, str) and ("{{" in value or "{%" in value)


def render(value: Any, context: Mapping[str, Any]) -> Any:
    """``value`` with every template in it rendered (strings, and those inside dicts and lists)."""
    if isinstance(value, str):
        if not is_template(value):
            return value
        return _defined(_NATIVE.from_string(value).render(**context))
    if isinstance(value, Mapping):
        return {key: render(item, context) for key, item in value.items()}
    if isinstance(value, list):
        return [render(item, context) for item in value]
    return value


def evaluate(expression: str, context: Mapping[str, Any]) -> bool:
    """Whether a condition's expression (``steps.score.output > 0.8``) holds."""
    return bool(_defined(_NATIVE.from_string("{{ " + expression + " }}").render(**context)))


__all__ = ["evaluate", "is_template", "render"]
