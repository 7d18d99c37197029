"""Functions: plain Python functions that a Logic App runs as steps (``type: function``).

A function is registered with :func:`function` and typed: its parameters and its return value are annotated, and
the annotations are checked twice, when a workflow is validated (the arguments it names exist, none is missing,
literal values have the right type) and when the step runs (every argument, after templating, and the result)::

    from demobank.logic_apps.functions import function

    @function
    def greeting(name: str, formal: bool = False) -> str:
        return f"Dear {name}" if formal else f"Hi {name}"

The suite's own functions are in :mod:`demobank.logic_apps.builtin_functions` (``risk_score``,
``format_amount``); :mod:`demobank.logic_apps.library` loads every function and finds one by name. A result
must be JSON-serialisable (it becomes the step's output, ``steps.<id>.output``); pydantic models are turned into
dicts.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar, get_type_hints

from pydantic import TypeAdapter, ValidationError

F = TypeVar("F", bound=Callable[..., Any])


class FunctionError(ValueError):
    """A function that is not registered, arguments that do not fit it, or a result of the wrong type."""


@dataclass(frozen=True)
class Parameter:
    name: str
    annotation: Any
    required: bool
    adapter: TypeAdapter[Any]


@dataclass(frozen=True)
class FunctionSpec:
    """A registered function: its name, parameters and result type."""

    name: str
    call: Callable[..., Any]
    parameters: dict[str, Parameter]
    result: TypeAdapter[Any]
    doc: str

    def check_arguments(self, arguments: Mapping[str, Any], *, literal: Callable[[Any], bool]) -> list[str]:
        """Problems of ``arguments`` (validation time): unknown and missing names, and literal values (those for
        which ``literal(value)`` holds: not templates) of the wrong type."""
        problems = [f"{self.name}() has no parameter {name!r} (it takes: {', '.join(self.parameters) or 'none'})"
                    for name in arguments if name not in self.parameters]
        problems += [f"{self.name}() needs the argument {name!r}" for name, parameter in self.parameters.items()
                     if parameter.required and name not in arguments]
        for name, value in arguments.items():
            parameter = self.parameters.get(name)
            if parameter is not None and literal(value):
                try:
                    parameter.adapter.validate_python(value)
                except ValidationError as error:
                    problems.append(f"{self.name}() argument {name!r}: {_first(error)}")
        return problems

    def run(self, arguments: Mapping[str, Any]) -> Any:
        """Call it (run time): every argument checked and converted, then the result checked; returns JSON data."""
        problems = self.check_arguments(arguments, literal=lambda _value: False)
        if problems:
            raise FunctionError("; ".join(problems))
        values = {}
        for name, value in arguments.items():
            try:
                values[name] = self.parameters[name].adapter.validate_python(value)
            except ValidationError as error:
                raise FunctionError(f"{self.name}() argument {name!r}: {_first(error)}") from None
        result = self.call(**values)
        try:
            checked = self.result.validate_python(result)
        except ValidationError as error:
            raise FunctionError(f"{self.name}() returned a value that is not its declared result: "
                                f"{_first(error)}") from None
        return self.result.dump_python(checked, mode="json")


def _first(error: ValidationError) -> str:
    detail = error.errors(include_url=False)[0]
    where = ".".join(str(part) for part in detail["loc"])
    return f"{where + ': ' if where else ''}{detail['msg']}"


REGISTRY: dict[str, FunctionSpec] = {}


def function(call: F | None = None, *, name: str | None = None) -> Any:
    """Register ``call`` (used as ``@function`` or ``@function(name="…")``). Every parameter and the result must be
    annotated; ``*args``/``**kwargs`` are not allowed (a step passes arguments by name)."""

    def register(target: F) -> F:
        key = name or target.__name__
        hints = get_type_hints(target)
        parameters = {}
        for parameter in inspect.signature(target).parameters.values():
            if parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
                raise TypeError(f"function {key!r}: *args and **kwargs are not allowed; name every parameter")
            if parameter.name not in hints:
                raise TypeError(f"function {key!r}: parameter {parameter.name!r} has no type annotation")
            annotation = hints[parameter.name]
            parameters[parameter.name] = Parameter(parameter.name, annotation,
                                                   parameter.default is inspect.Parameter.empty,
                                                   TypeAdapter(annotation))
        if "return" not in hints:
            raise TypeError(f"function {key!r}: the result has no type annotation")
        existing = REGISTRY.get(key)
        if existing is not None and existing.call is not target:
            raise TypeError(f"function {key!r} is registered twice ({existing.call.__module__} and "
                            f"{target.__module__}): rename one")
        REGISTRY[key] = FunctionSpec(key, target, parameters, TypeAdapter(hints["return"]),
                                     inspect.getdoc(target) or "")
        return target

    return register(call) if call is not None else register


__all__ = ["REGISTRY", "FunctionError", "FunctionSpec", "function"]
