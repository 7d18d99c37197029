"""``demobank workflows validate``: a definition's shape (:mod:`demobank.logic_apps.definition`) and its meaning.

The meaning, checked against a :class:`Context` (what exists where the workflow will run):

* **connections**: every step's ``connection`` is a known connection id;
* **functions**: every ``function`` step names a registered function, with its arguments (none unknown, none
  missing, literal values of the right type);
* **event types**: the event trigger's and every ``publish_event`` step's ``event_type`` is in the catalog; the
  trigger's ``match`` names fields of that type's data; literal (untemplated) event data fits the type's schema;
* **templates**: every ``{{ … }}`` (and a condition's ``expression``) refers to a real input (``inputs.<name>`` of a
  manual trigger), trigger field (``trigger.event.data.<field>`` of an event trigger's type), an earlier step's
  output (``steps.<id>.output`` of a step this one runs after, directly or not), ``item`` inside a ``for_each``, or
  one of Airflow's context names (``ds``, ``run_id``, …);
* the cron expression and the step graph (no cycle) are the shape's part.

Every problem is ``file:line:column: field: message``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from jinja2 import Environment, TemplateSyntaxError, nodes

from demobank.logic_apps.definition import (
    PROJECT_DIR,
    ConditionStep,
    DefinitionError,
    EventTrigger,
    ForEachStep,
    FunctionStep,
    ManualTrigger,
    Positions,
    Problem,
    PublishEventStep,
    Workflow,
    field_name,
    place,
    read_definition,
)
from demobank.logic_apps.templating import is_template

AIRFLOW_CONTEXT = frozenset({"ds", "ds_nodash", "ts", "run_id", "logical_date", "data_interval_start",
                             "data_interval_end", "dag_run", "params", "macros", "var", "conn", "task_instance"})
"""Names of Airflow's task context a template may use besides the workflow's own."""
ENVELOPE_FIELDS = frozenset({"id", "type", "time", "subject", "source", "data", "publisher", "specversion",
                             "datacontenttype", "dataschema"})
NOT_TEMPLATED = frozenset({"id", "type", "run_after", "connection", "function", "event_type", "if_true", "if_false",
                           "retries", "timeout", "method", "description", "html"})
"""Step fields that are not rendered (their values are names, numbers or choices)."""

_JINJA = Environment(autoescape=False)  # noqa: S701 - parsed for their references, never rendered here


@dataclass
class Context:
    """What exists where the workflows run: connection ids (None: not checked, as when Airflow parses the
    definitions: its connections are not all known there), functions, the event catalog."""

    connections: set[str] | None = field(default_factory=set)
    functions: Mapping[str, Any] | None = None
    catalog: Any = None

    @classmethod
    def of_project(cls, settings_file: Path | str | None = None, environ: Mapping[str, str] | None = None) -> Context:
        """The project's: the connections of ``airflow_settings.yaml`` and of ``AIRFLOW_CONN_*`` variables, the
        registered functions and the suite's event catalog."""
        from demobank.events.catalog import get_catalog
        from demobank.logic_apps.library import registered
        from demobank.settings_import import load_settings

        env = os.environ if environ is None else environ
        path = Path(settings_file) if settings_file else PROJECT_DIR / "airflow_settings.yaml"
        connections = {name.removeprefix("AIRFLOW_CONN_").lower() for name in env if name.startswith("AIRFLOW_CONN_")}
        if path.exists():
            connections |= {c["conn_id"] for c in load_settings(path, environ={**env}).connections}
        return cls(connections=connections, functions=registered(), catalog=get_catalog())


def references(template: str) -> Iterator[tuple[Any, ...]]:
    """The variable paths a template reads: ``{{ steps.a.output.b }}`` → ``('steps', 'a', 'output', 'b')`` (a
    dynamic subscript ends the path). Names the template assigns itself (``for``, ``set``) are left out.

    Parsed once per text and process: validation and the DAG loader ask for the same templates."""
    return iter(_references(template))


@lru_cache(maxsize=8192)
def _references(template: str) -> tuple[tuple[Any, ...], ...]:
    return tuple(_walk_references(template))


def _walk_references(template: str) -> Iterator[tuple[Any, ...]]:
    tree = _JINJA.parse(template)
    local = {node.name for node in tree.find_all(nodes.Name) if node.ctx in ("store", "param")}

    def walk(node: nodes.Node) -> Iterator[tuple[Any, ...]]:
        if isinstance(node, nodes.Getattr | nodes.Getitem):
            path: list[Any] = []
            current: nodes.Node = node
            while isinstance(current, nodes.Getattr | nodes.Getitem):
                if isinstance(current, nodes.Getattr):
                    path.append(current.attr)
                elif isinstance(current.arg, nodes.Const):
                    path.append(current.arg.value)
                else:
                    path.clear()  # a dynamic part: only what comes before it is known
                    yield from walk(current.arg)
                current = current.node
            if isinstance(current, nodes.Name):
                if current.name not in local:
                    yield (current.name, *reversed(path))
            else:
                yield from walk(current)
            return
        if isinstance(node, nodes.Name):
            if node.ctx == "load" and node.name not in local:
                yield (node.name,)
            return
        for child in node.iter_child_nodes():
            yield from walk(child)

    yield from walk(tree)


def _ancestors(workflow: Workflow) -> dict[str, set[str]]:
    edges = workflow.upstream()
    found: dict[str, set[str]] = {}

    def of(step_id: str) -> set[str]:
        if step_id not in found:
            found[step_id] = set()
            for parent in edges.get(step_id, {}):
                found[step_id] |= {parent} | of(parent)
        return found[step_id]

    for step in workflow.steps:
        of(step.id)
    return found


class _Checker:
    def __init__(self, workflow: Workflow, positions: Positions, file: str, context: Context) -> None:
        self.workflow = workflow
        self.positions = positions
        self.file = file
        self.context = context
        self.problems: list[Problem] = []
        self.ancestors = _ancestors(workflow)
        schema = None
        if isinstance(workflow.trigger, EventTrigger) and context.catalog is not None:
            if workflow.trigger.event_type in context.catalog.event_types():
                schema = context.catalog.get(workflow.trigger.event_type).schema
        self.event_fields = set((schema or {}).get("properties", {})) if schema is not None else None

    def add(self, path: tuple[Any, ...], message: str) -> None:
        line, column = place(self.positions, path)
        self.problems.append(Problem(self.file, line, column, field_name(path), message))

    def run(self) -> list[Problem]:
        trigger = self.workflow.trigger
        if isinstance(trigger, EventTrigger):
            self.event_type(("trigger", "event_type"), trigger.event_type)
            if trigger.match and self.event_fields is not None:
                for name in trigger.match:
                    if name.split(".")[0] not in self.event_fields:
                        self.add(("trigger", "match", name), f"{trigger.event_type} has no field {name!r} (its "
                                                             f"fields: {', '.join(sorted(self.event_fields))})")
        for index, step in enumerate(self.workflow.steps):
            self.step(("steps", index), step, step.id, in_loop=False)
        return self.problems

    def event_type(self, path: tuple[Any, ...], event_type: str) -> None:
        catalog = self.context.catalog
        if catalog is not None and event_type not in catalog.event_types():
            self.add(path, f"no event type {event_type!r} in the catalog (types: {', '.join(catalog.event_types())})")

    def event_data(self, path: tuple[Any, ...], step: PublishEventStep) -> None:
        """Literal event data is checked against the type's schema now (templated data waits for run time): the
        outbox would refuse it the same way."""
        catalog = self.context.catalog
        if catalog is None or step.event_type not in catalog.event_types() or not isinstance(step.data, dict) \
                or any(is_template(text) for _path, text in _strings(step.data, ())):
            return
        for problem in catalog.get(step.event_type).problems(step.data):
            self.add(path, f"{step.event_type}: {problem}")

    def step(self, path: tuple[Any, ...], step: Any, step_id: str, *, in_loop: bool) -> None:
        connection = getattr(step, "connection", None)
        known = self.context.connections
        if connection is not None and known is not None and connection not in known:
            self.add((*path, "connection"), f"no connection {connection!r} (known: "
                                            f"{', '.join(sorted(known)) or 'none'}); add it in "
                                            "Admin → Connections or airflow_settings.yaml")
        if isinstance(step, FunctionStep) and self.context.functions is not None:
            spec = self.context.functions.get(step.function)
            if spec is None:
                self.add((*path, "function"), f"no function {step.function!r} is registered (registered: "
                                              f"{', '.join(sorted(self.context.functions))})")
            else:
                for message in spec.check_arguments(step.arguments, literal=_is_literal):
                    self.add((*path, "arguments"), message)
        if isinstance(step, PublishEventStep):
            self.event_type((*path, "event_type"), step.event_type)
            self.event_data((*path, "data"), step)
        if isinstance(step, ConditionStep):
            self.template((*path, "expression"), "{{ " + step.expression + " }}", step_id, in_loop)
        data = step.model_dump(by_alias=True, exclude_none=True)
        for key, value in data.items():
            if key in NOT_TEMPLATED or (isinstance(step, ConditionStep) and key == "expression"):
                continue
            if isinstance(step, ForEachStep) and key == "step":
                self.step((*path, "step"), step.step, step_id, in_loop=True)
                continue
            if isinstance(step, ForEachStep) and key == "items":
                self.template((*path, "items"), value, step_id, in_loop=False)
                continue
            for sub_path, text in _strings(value, (*path, key)):
                self.template(sub_path, text, step_id, in_loop)

    def template(self, path: tuple[Any, ...], text: str, step_id: str, in_loop: bool) -> None:
        if not is_template(text):
            return
        try:
            found = list(references(text))
        except TemplateSyntaxError as error:
            self.add(path, f"template syntax: {error.message}")
            return
        for reference in found:
            message = self.reference(reference, step_id, in_loop)
            if message:
                self.add(path, message)

    def reference(self, ref: tuple[Any, ...], step_id: str, in_loop: bool) -> str | None:
        root, rest = ref[0], ref[1:]
        trigger = self.workflow.trigger
        dotted = ".".join(str(part) for part in ref)
        if root == "inputs":
            if not isinstance(trigger, ManualTrigger):
                return f"{dotted}: only a manual trigger has inputs (this one is {trigger.type})"
            if rest and rest[0] not in trigger.inputs:
                return f"{dotted}: no input {rest[0]!r} (inputs: {', '.join(trigger.inputs) or 'none'})"
            return None
        if root == "trigger":
            if not isinstance(trigger, EventTrigger):
                return f"{dotted}: only an event trigger has trigger.event (this one is {trigger.type})"
            if rest and rest[0] != "event":
                return f"{dotted}: the trigger's fields are under trigger.event"
            if len(rest) > 1 and rest[1] not in ENVELOPE_FIELDS:
                return f"{dotted}: an event has no {rest[1]!r} (it has: {', '.join(sorted(ENVELOPE_FIELDS))})"
            if len(rest) > 2 and rest[1] == "data" and self.event_fields is not None \
                    and rest[2] not in self.event_fields:
                return (f"{dotted}: {trigger.event_type} has no field {rest[2]!r} (its fields: "
                        f"{', '.join(sorted(self.event_fields))})")
            return None
        if root == "steps":
            if not rest:
                return None
            earlier = self.ancestors.get(step_id, set())
            if rest[0] not in {step.id for step in self.workflow.steps}:
                return f"{dotted}: no step {rest[0]!r} in this workflow"
            if rest[0] not in earlier:
                return (f"{dotted}: step {rest[0]!r} does not run before {step_id!r} (add it to run_after, directly "
                        "or through a step it waits for)")
            if len(rest) > 1 and rest[1] != "output":
                return f"{dotted}: a step's result is steps.{rest[0]}.output"
            return None
        if root == "item":
            return None if in_loop else f"{dotted}: 'item' exists only in the step of a for_each"
        if root in AIRFLOW_CONTEXT:
            return None
        return (f"{dotted}: unknown name {root!r} (use inputs, trigger, steps, item, or one of Airflow's "
                f"{', '.join(sorted(AIRFLOW_CONTEXT))})")


def _is_literal(value: Any) -> bool:
    """A value with no template anywhere in it (its type can be checked before the run)."""
    return not any(is_template(text) for _path, text in _strings(value, ()))


def _strings(value: Any, path: tuple[Any, ...]) -> Iterator[tuple[tuple[Any, ...], str]]:
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, Mapping):
        for key, item in value.items():
            yield from _strings(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _strings(item, (*path, index))


def validate_text(text: str, file: str, context: Context) -> tuple[Workflow | None, list[Problem]]:
    """Every problem of one definition: its shape first (a definition that cannot be read stops there), then
    its meaning."""
    try:
        workflow, positions = read_definition(text, file)
    except DefinitionError as error:
        return None, error.problems
    return workflow, _Checker(workflow, positions, file, context).run()


@dataclass(frozen=True)
class Checked:
    """One definition file, validated: its text, its workflow (None if it cannot be read) and its problems."""

    path: Path
    text: str
    workflow: Workflow | None
    problems: list[Problem]


def check_files(paths: list[Path], context: Context) -> list[Checked]:
    """Each file validated (an unreadable file is its own problem); also two files with the same workflow name
    (the later one, in the given order, has the problem)."""
    checked: list[Checked] = []
    names: dict[str, Path] = {}
    for path in paths:
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as error:
            checked.append(Checked(path, "", None, [Problem(str(path), 1, 1, "", f"cannot be read: {error.strerror}")]))
            continue
        workflow, problems = validate_text(text, str(path), context)
        if workflow is not None:
            if workflow.name in names:
                problems.append(Problem(str(path), 1, 1, "name", f"workflow {workflow.name!r} is also defined in "
                                                                 f"{names[workflow.name]}: names are unique"))
            names.setdefault(workflow.name, path)
        checked.append(Checked(path, text, workflow, problems))
    return checked


def validate_files(paths: list[Path], context: Context) -> dict[Path, list[Problem]]:
    """Problems per file (see :func:`check_files`)."""
    return {item.path: item.problems for item in check_files(paths, context)}


def steps_read(value: Any) -> set[str]:
    """The ids of the steps whose outputs the templates in ``value`` read (``steps.<id>…``; strings, and those
    inside dicts and lists)."""
    return {ref[1] for _path, text in _strings(value, ()) if is_template(text) for ref in references(text)
            if ref[0] == "steps" and len(ref) > 1}


__all__ = ["Checked", "Context", "check_files", "references", "steps_read", "validate_files", "validate_text"]
