"""The Logic App definition: one pydantic model is the schema, and reading a file reports every problem with its place.

A definition is YAML, one workflow per file::

    # yaml-language-server: $schema=../../include/logic_apps/workflow.schema.json
    name: customer_onboarding
    description: Welcome a new customer.
    owner: integration-engineering
    trigger:
      type: manual
      inputs:
        email: {type: string, required: true, pattern: "^[^@]+@[^@]+$", description: The customer's e-mail}
    steps:
      - id: welcome
        type: send_email
        to: "{{ inputs.email }}"
        subject: Welcome to Demo Bank
        body: Hello!
      - id: announce
        type: publish_event
        event_type: customer.created
        data: {email: "{{ inputs.email }}"}
        run_after: {welcome: [succeeded]}

Triggers (``type``): ``schedule`` (``cron``), ``manual`` (typed ``inputs``, which become the DAG's Params), ``event``
(a catalog ``event_type`` and an optional ``match``, an event target's data filter). Steps (``type``): ``send_sms``,
``send_email``, ``publish_event``, ``http_request``, ``function``, ``condition`` and ``for_each``; every step has
an ``id``, ``run_after`` (step ids, or ``{id: [statuses]}`` with the statuses ``succeeded``, ``failed``,
``skipped``, as Logic Apps' ``runAfter``; default: the step before it, succeeded), ``retries`` and ``timeout``.

What this module checks is the shape: types, required fields, unknown fields, step ids unique and known, no cycle.
Whether connections, functions, event types and template references exist is the validator's part (it needs the
environment). :func:`load_definition` reads a file and raises :class:`DefinitionError` listing every problem as
``file:line:column: field: message``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model, field_validator, model_validator

SCHEMA_ID = "https://schemas.demobank.com/logic-apps/workflow.schema.json"
NAME_PATTERN = r"^[a-z][a-z0-9_]{0,62}$"
STEP_ID_PATTERN = r"^[a-z][a-z0-9_]{0,62}$"
MAX_STEPS = 200
_DURATION = re.compile(r"^(?P<number>\d+)(?P<unit>s|m|h)$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


# -- triggers ----------------------------------------------------------------------------------------------


class InputType(StrEnum):
    STRING = "string"
    INTEGER = "integer"
    NUMBER = "number"
    BOOLEAN = "boolean"
    ARRAY = "array"
    OBJECT = "object"


class Input(_Strict):
    """One typed input of a manual trigger (a Param of the DAG: the trigger form and the REST API check it)."""

    type: InputType
    required: bool = False
    pattern: str | None = Field(None, description="a regular expression a string input must match")
    enum: list[Any] | None = Field(None, min_length=1, description="the only values allowed")
    default: Any = None
    description: str | None = None

    @field_validator("pattern")
    @classmethod
    def _pattern_compiles(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as error:
                raise ValueError(f"not a valid regular expression: {error}") from None
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Input:
        if self.pattern is not None and self.type is not InputType.STRING:
            raise ValueError(f"pattern applies to string inputs only, not to {self.type.value}")
        if self.required and self.default is not None:
            raise ValueError("a required input has no default: drop one of them")
        return self


class ScheduleTrigger(_Strict):
    type: Literal["schedule"]
    cron: str = Field(description="a cron expression (5 fields), in UTC, e.g. '0 6 * * *'")

    @field_validator("cron")
    @classmethod
    def _cron_is_valid(cls, value: str) -> str:
        from croniter import croniter

        if len(value.split()) != 5 or not croniter.is_valid(value):
            raise ValueError(f"{value!r} is not a 5-field cron expression (minute hour day month weekday)")
        return value


class ManualTrigger(_Strict):
    type: Literal["manual"]
    inputs: dict[Annotated[str, Field(pattern=NAME_PATTERN)], Input] = Field(default_factory=dict)


class EventTrigger(_Strict):
    type: Literal["event"]
    event_type: str = Field(description="a type of the suite's event catalog, e.g. transaction.created")
    match: dict[str, Any] | None = Field(None, description="an event target's data filter, e.g. "
                                                           "{amount: {'>=': '1000'}} (every condition must hold)")

    @field_validator("match")
    @classmethod
    def _match_is_a_target_filter(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        from demobank.events.filters import validate_match

        return validate_match(value)


Trigger = Annotated[ScheduleTrigger | ManualTrigger | EventTrigger, Field(discriminator="type")]


# -- steps -------------------------------------------------------------------------------------------------


class RunStatus(StrEnum):
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    SKIPPED = "skipped"


def parse_duration(value: str | int | float) -> timedelta:
    """``30s``, ``5m``, ``2h``, or a number of seconds."""
    if isinstance(value, bool):
        raise ValueError("a duration is a number of seconds or a text like 30s, 5m, 2h")
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        found = _DURATION.match(value.strip())
        if not found:
            raise ValueError(f"{value!r} is not a duration: write seconds, or e.g. 30s, 5m, 2h")
        seconds = int(found["number"]) * {"s": 1, "m": 60, "h": 3600}[found["unit"]]
    if seconds <= 0 or seconds > 24 * 3600:
        raise ValueError(f"{value!r} is outside 1 second to 24 hours")
    return timedelta(seconds=seconds)


class _Step(_Strict):
    id: str = Field(pattern=STEP_ID_PATTERN, description="unique in the workflow; the task id")
    description: str | None = None
    run_after: list[str] | dict[str, list[RunStatus]] | None = Field(
        None, description="the steps this one waits for: ids (they must succeed), or {id: [statuses]}; default: "
                          "the step before it")
    retries: int = Field(2, ge=0, le=10, description="tries after the first, with a growing delay (default 2; a "
                                                     "send_email's delay is minutes, so that they reach past "
                                                     "SendGrid's 10-minute settling of an unknown outcome)")
    timeout: str | int | None = Field(None, description="30s, 5m, 2h or seconds; default: no limit")

    @field_validator("timeout")
    @classmethod
    def _timeout_is_a_duration(cls, value: str | int | None) -> str | int | None:
        if value is not None:
            parse_duration(value)
        return value

    def waits_for(self) -> dict[str, list[RunStatus]] | None:
        """``run_after`` as ``{step id: statuses}`` (None: the default, the step before it succeeded)."""
        if self.run_after is None:
            return None
        if isinstance(self.run_after, list):
            return {step_id: [RunStatus.SUCCEEDED] for step_id in self.run_after}
        return dict(self.run_after)


Recipients = str | list[str]
CUSTOMER_DESCRIPTION = ("instead of to: a customer id; the message goes to the contact on the customer's record, "
                        "looked up when the step sends (never kept in the run's data)")


class _Message(_Step):
    to: Recipients | None = Field(None, description="the recipient(s), or a template giving them")
    customer: str | None = Field(None, description=CUSTOMER_DESCRIPTION)

    @model_validator(mode="after")
    def _one_kind_of_recipient(self) -> _Message:
        if (self.to is None) == (self.customer is None):
            raise ValueError("give either to (the recipients) or customer (a customer id), not both or neither")
        return self


class SendSmsStep(_Message):
    type: Literal["send_sms"]
    connection: str = "twilio_default"
    body: str = Field(max_length=1600)


class SendEmailStep(_Message):
    type: Literal["send_email"]
    connection: str = "sendgrid_default"
    subject: str = Field(max_length=998)
    body: str
    html: bool = Field(False, description="the body is HTML (otherwise plain text, escaped, lines kept)")


class PublishEventStep(_Step):
    type: Literal["publish_event"]
    event_type: str
    data: dict[str, Any] | str
    idempotency_key: str | None = None


class HttpRequestStep(_Step):
    type: Literal["http_request"]
    connection: str
    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE"] = "GET"
    endpoint: str = ""
    headers: dict[str, str] = Field(default_factory=dict)
    json_body: Any = Field(None, alias="json")
    auth: Literal["connection", "bearer"] = Field(
        "connection", description="connection: the HTTP provider's (login and password as basic auth); bearer: "
                                  "the connection's password sent as a bearer token")


class FunctionStep(_Step):
    type: Literal["function"]
    function: str = Field(description="the name of a registered function, e.g. risk_score")
    arguments: dict[str, Any] = Field(default_factory=dict)


class ConditionStep(_Step):
    type: Literal["condition"]
    expression: str = Field(description="a Jinja expression, e.g. steps.score.output > 0.8")
    if_true: list[str] = Field(default_factory=list, description="steps that run when it holds")
    if_false: list[str] = Field(default_factory=list, description="steps that run when it does not")


def _unnamed(model: type[_Step]) -> type[_Step]:
    """The step model as the body of a ``for_each``: its id is optional (it defaults to ``<loop id>_each``)."""
    return create_model(f"Each{model.__name__}", __base__=model,
                        id=(str | None, Field(None, pattern=STEP_ID_PATTERN,
                                              description="default: <the for_each step's id>_each")))


MappedStep = Annotated[_unnamed(SendSmsStep) | _unnamed(SendEmailStep) | _unnamed(PublishEventStep)
                       | _unnamed(HttpRequestStep) | _unnamed(FunctionStep), Field(discriminator="type")]


class ForEachStep(_Step):
    type: Literal["for_each"]
    items: str = Field(description="a template giving a list, e.g. '{{ steps.fetch.output.customers }}'")
    step: MappedStep = Field(description="what runs once per item ('item' in its templates)")

    @model_validator(mode="after")
    def _the_mapped_step_is_named_after_the_loop(self) -> ForEachStep:
        if self.step.id is None:
            self.step.id = f"{self.id}_each"
        return self


Step = Annotated[SendSmsStep | SendEmailStep | PublishEventStep | HttpRequestStep | FunctionStep | ConditionStep
                 | ForEachStep, Field(discriminator="type")]


# -- the workflow ------------------------------------------------------------------------------------------


class Workflow(_Strict):
    """One Logic App: its DAG is ``logic_app__<name>``."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, title="Demo Bank Logic App",
                              json_schema_extra={"$id": SCHEMA_ID})

    name: str = Field(pattern=NAME_PATTERN, description="lower case, digits and _; the DAG id is logic_app__<name>")
    description: str = Field(min_length=1, max_length=2000)
    owner: str = Field(min_length=1, max_length=200)
    tags: list[str] = Field(default_factory=list, max_length=20)
    trigger: Trigger
    steps: list[Step] = Field(min_length=1, max_length=MAX_STEPS)

    @property
    def dag_id(self) -> str:
        return f"logic_app__{self.name}"

    @model_validator(mode="after")
    def _steps_form_a_graph(self) -> Workflow:
        ids = [step.id for step in self.steps]
        seen: set[str] = set()
        for index, step_id in enumerate(ids):
            if step_id in seen:
                raise _Located(("steps", index, "id"), f"step id {step_id!r} is used twice: step ids are unique")
            seen.add(step_id)
        for index, step in enumerate(self.steps):
            for field, names in _references(step):
                for name in names:
                    if name not in seen:
                        raise _Located(("steps", index, field), f"no step {name!r} in this workflow (steps: "
                                                                 f"{', '.join(ids)})")
                    if name == step.id:
                        raise _Located(("steps", index, field), f"step {step.id!r} cannot wait for itself")
        cycle = _find_cycle(self)
        if cycle:
            raise _Located(("steps",), f"the steps wait for each other in a cycle: {' -> '.join(cycle)}")
        upstream = self.upstream()
        for index, step in enumerate(self.steps):
            try:
                trigger_rule(upstream[step.id])
            except ValueError as error:
                raise _Located(("steps", index, "run_after"), str(error)) from None
        return self

    def upstream(self) -> dict[str, dict[str, list[RunStatus]]]:
        """Each step's upstream steps with the statuses it runs after (the default: the step before, succeeded)."""
        edges: dict[str, dict[str, list[RunStatus]]] = {}
        for index, step in enumerate(self.steps):
            waits = step.waits_for()
            if waits is None:
                waits = {self.steps[index - 1].id: [RunStatus.SUCCEEDED]} if index else {}
            edges[step.id] = waits
        for step in self.steps:
            if isinstance(step, ConditionStep):
                for branch in (*step.if_true, *step.if_false):
                    edges.setdefault(branch, {}).setdefault(step.id, [RunStatus.SUCCEEDED])
        return edges


TRIGGER_RULES = {
    frozenset({RunStatus.SUCCEEDED}): "all_success",
    frozenset({RunStatus.FAILED}): "all_failed",
    frozenset({RunStatus.SKIPPED}): "all_skipped",
    frozenset({RunStatus.SUCCEEDED, RunStatus.FAILED}): "none_skipped",
    frozenset({RunStatus.SUCCEEDED, RunStatus.SKIPPED}): "none_failed",
    frozenset({RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.SKIPPED}): "all_done",
}
"""The Airflow trigger rule of a step whose every upstream step must end in one of these statuses."""


def trigger_rule(waits: Mapping[str, Sequence[RunStatus]]) -> str:
    """The Airflow trigger rule for ``run_after``; :class:`ValueError` for what Airflow cannot express."""
    sets = {frozenset(statuses) for statuses in waits.values()}
    if not sets:
        return "all_success"
    if len(sets) > 1:
        raise ValueError("every step in run_after needs the same statuses (Airflow decides on all upstream steps "
                         "at once): split the step, or give each the same list")
    (statuses,) = sets
    if statuses not in TRIGGER_RULES:
        raise ValueError("[failed, skipped] without succeeded cannot be waited for: add succeeded, or wait for "
                         "failed and skipped in two steps")
    return TRIGGER_RULES[statuses]


def _references(step: Any) -> Iterator[tuple[str, list[str]]]:
    waits = step.waits_for()
    if waits:
        yield "run_after", list(waits)
    if isinstance(step, ConditionStep):
        yield "if_true", step.if_true
        yield "if_false", step.if_false


def _find_cycle(workflow: Workflow) -> list[str]:
    edges = workflow.upstream()
    state: dict[str, int] = {}
    path: list[str] = []

    def visit(node: str) -> list[str]:
        state[node] = 1
        path.append(node)
        for parent in edges.get(node, {}):
            if state.get(parent) == 1:
                return [*path[path.index(parent):], parent]
            if parent not in state:
                found = visit(parent)
                if found:
                    return found
        path.pop()
        state[node] = 2
        return []

    for step in workflow.steps:
        if step.id not in state:
            cycle = visit(step.id)
            if cycle:
                return list(reversed(cycle))
    return []


class _Located(ValueError):
    """A model-level problem that belongs to one field (its path inside the definition)."""

    def __init__(self, path: tuple[str | int, ...], message: str) -> None:
        super().__init__(message)
        self.path = path
        self.message = message


# -- reading a file ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Problem:
    """One problem of a definition, where it is."""

    file: str
    line: int
    column: int
    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}: {self.field or '(definition)'}: {self.message}"


class DefinitionError(ValueError):
    """A definition that cannot be read; ``problems`` lists each (``str()``: one per line)."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(str(problem) for problem in self.problems))


def _positions(node: yaml.Node, path: tuple[Any, ...], into: dict[tuple[Any, ...], tuple[int, int]]) -> None:
    """Where each value (and, under ``path + ('<key>',)``, each key) starts, 1-based."""
    into[path] = (node.start_mark.line + 1, node.start_mark.column + 1)
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            name = key.value
            into[(*path, name, "<key>")] = (key.start_mark.line + 1, key.start_mark.column + 1)
            _positions(value, (*path, name), into)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _positions(item, (*path, index), into)


def field_name(path: Sequence[Any]) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def place(positions: Mapping[tuple[Any, ...], tuple[int, int]], path: tuple[Any, ...]) -> tuple[int, int]:
    """The position of the deepest part of ``path`` that the file has (a missing field: its parent)."""
    for end in range(len(path), -1, -1):
        if path[:end] in positions:
            return positions[path[:end]]
    return (1, 1)


def _clean_loc(loc: Sequence[Any], data: Any) -> tuple[Any, ...]:
    """pydantic's error location without the tags it adds for unions (``steps.0.send_sms.to`` -> steps[0].to,
    ``run_after.list[str].0`` -> run_after[0]) and for dict keys."""
    path: list[Any] = []
    node = data
    fresh = True  # a union's tag can only come right after the part that led to its value
    for part in loc:
        if part == "[key]":
            continue
        if isinstance(part, str) and fresh:
            if isinstance(node, Mapping) and part == node.get("type"):
                fresh = False
                continue  # the discriminator's tag
            if node is not None and not isinstance(node, Mapping):
                fresh = False
                continue  # a union member's tag under a list or a scalar
        path.append(part)
        fresh = True
        if isinstance(node, Mapping):
            node = node.get(part)
        elif isinstance(node, list) and isinstance(part, int) and part < len(node):
            node = node[part]
        else:
            node = None
    return tuple(path)


Positions = dict[tuple[Any, ...], tuple[int, int]]
"""Where each value of a definition starts (1-based line and column), by its path (keys and list indices)."""


_SafeLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when there: the loader parses many files


def _compose_and_construct(text: str) -> tuple[Any, Any]:
    """The YAML's node tree (for positions) and its data, from one parse."""
    loader = _SafeLoader(text)
    try:
        node = loader.get_single_node()
        return node, (loader.construct_document(node) if node is not None else None)
    finally:
        loader.dispose()


def parse_definition(text: str, file: str = "<definition>") -> Workflow:
    """Read one definition from YAML text; raise :class:`DefinitionError` with every problem located."""
    return read_definition(text, file)[0]


def read_definition(text: str, file: str = "<definition>") -> tuple[Workflow, Positions]:
    """:func:`parse_definition`, with the positions of the file's values (for later problems' places)."""
    try:
        node, data = _compose_and_construct(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        line, column = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        raise DefinitionError([Problem(file, line, column, "", f"not valid YAML: {getattr(error, 'problem', error)}")
                               ]) from None
    if not isinstance(data, dict):
        raise DefinitionError([Problem(file, 1, 1, "", "a definition is a mapping with name, description, owner, "
                                                       "trigger and steps")])
    positions: Positions = {}
    _positions(node, (), positions)
    try:
        return Workflow.model_validate(data), positions
    except ValidationError as error:
        problems = []
        for item in error.errors(include_url=False):
            cause = (item.get("ctx") or {}).get("error")
            if isinstance(cause, _Located):
                path, message = cause.path, cause.message
            else:
                path = _clean_loc(item["loc"], data)
                message = item["msg"].removeprefix("Value error, ")
                if item["type"] == "extra_forbidden":
                    message = "unknown field (check its spelling against the schema)"
                    line, column = positions.get((*path[:-1], path[-1], "<key>"), place(positions, path))
                    problems.append(Problem(file, line, column, field_name(path), message))
                    continue
            line, column = place(positions, tuple(path))
            problems.append(Problem(file, line, column, field_name(path), message))
        raise DefinitionError(sorted(set(problems), key=lambda p: (p.line, p.column, p.field))) from None


def load_definition(path: Path | str) -> Workflow:
    """Read one definition file (see :func:`parse_definition`)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise DefinitionError([Problem(str(path), 1, 1, "", f"cannot be read: {error.strerror}")]) from None
    return parse_definition(text, str(path))


def json_schema() -> dict[str, Any]:
    """The definition's JSON Schema (what ``include/logic_apps/workflow.schema.json`` holds)."""
    schema = Workflow.model_json_schema(by_alias=True)
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", **schema}


def schema_text() -> str:
    return json.dumps(json_schema(), indent=2, sort_keys=True) + "\n"


PROJECT_DIR = Path(__file__).resolve().parents[3]
"""The project (the package is installed from its source tree: ``pip install -e .``)."""
SCHEMA_FILE = PROJECT_DIR / "include" / "logic_apps" / "workflow.schema.json"
DEFINITIONS_DIR_ENV = "DEMOBANK_LOGIC_APPS_DIR"


def definitions_dir(default: Path | None = None) -> Path:
    """Where the definitions are: ``DEMOBANK_LOGIC_APPS_DIR``, else ``default`` (the loader: the folder next to its
    DAG file), else the project's ``dags/logic_apps/``."""
    import os

    configured = os.environ.get(DEFINITIONS_DIR_ENV)
    if configured:
        return Path(configured)
    return default or PROJECT_DIR / "dags" / "logic_apps"


def definition_files_in(folder: Path) -> list[Path]:
    """The definition files (``*.yaml``, ``*.yml``) of a folder, by name."""
    return sorted(p for p in folder.iterdir() if p.suffix in (".yaml", ".yml") and p.is_file())


__all__ = ["DefinitionError", "Problem", "RunStatus", "Step", "Workflow", "json_schema", "load_definition",
           "parse_definition", "parse_duration", "schema_text"]
