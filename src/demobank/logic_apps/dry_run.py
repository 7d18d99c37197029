"""``demobank workflows dry-run``: run a definition's steps in order, in this process, with every connector replaced
by a recorder, and say what each step would send. Nothing leaves the process: no SMS, e-mail, event, HTTP request
or database write (functions run for real: they are local Python).

Semantics, as the DAG will have them:

* templates render with Jinja's native types (``"{{ trigger.event.data }}"`` is the dict itself; text around an
  expression makes a string) over ``inputs`` (the trigger's inputs with their defaults), ``trigger.event``,
  ``steps.<id>.output``, ``item`` (in a ``for_each``) and a few of Airflow's context names (``ds``, ``run_id``,
  ``logical_date``);
* a step runs when each step it runs after ended in one of the statuses it names (default: succeeded); otherwise
  it is skipped. A ``condition`` runs its ``if_true`` steps when its expression holds and skips them otherwise (and
  the reverse for ``if_false``);
* a step that raises (a function's error, a template that cannot render, an event its schema refuses) has failed:
  the steps after it run or not by their ``run_after``;
* an ``http_request`` sends nothing and its output is ``None``, unless ``responses`` gives one for its step id.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from demobank.logic_apps.definition import (
    ConditionStep,
    EventTrigger,
    ForEachStep,
    FunctionStep,
    HttpRequestStep,
    InputType,
    ManualTrigger,
    PublishEventStep,
    RunStatus,
    SendEmailStep,
    SendSmsStep,
    Workflow,
)
from demobank.logic_apps.templating import evaluate
from demobank.logic_apps.templating import render as _render


class DryRunError(ValueError):
    """Inputs the trigger does not accept (before any step runs)."""


@dataclass
class Would:
    """What one step would have sent (a message, an event, a request)."""

    kind: str
    fields: dict[str, Any]


@dataclass
class StepResult:
    step_id: str
    type: str
    status: RunStatus
    output: Any = None
    error: str | None = None
    would: list[Would] = field(default_factory=list)
    reason: str | None = None


@dataclass
class DryRunReport:
    workflow: str
    steps: list[StepResult]

    def would(self) -> list[Would]:
        return [item for step in self.steps for item in step.would]


def accepted_inputs(workflow: Workflow, given: Mapping[str, Any]) -> dict[str, Any]:
    """The trigger's inputs: defaults filled in, required ones present, types and patterns and enums checked
    (text from the command line is converted: ``--input amount=12`` for an integer input)."""
    trigger = workflow.trigger
    if not isinstance(trigger, ManualTrigger):
        if given:
            raise DryRunError(f"a {trigger.type} trigger has no inputs; got {', '.join(given)}")
        return {}
    unknown = sorted(set(given) - set(trigger.inputs))
    if unknown:
        raise DryRunError(f"no input {', '.join(map(repr, unknown))} (inputs: {', '.join(trigger.inputs)})")
    values: dict[str, Any] = {}
    for name, spec in trigger.inputs.items():
        if name not in given:
            if spec.required:
                raise DryRunError(f"input {name!r} is required")
            values[name] = spec.default
            continue
        value = _convert(name, spec.type, given[name])
        if spec.pattern is not None and not re.search(spec.pattern, value):
            raise DryRunError(f"input {name!r}: {value!r} does not match {spec.pattern!r}")
        if spec.enum is not None and value not in spec.enum:
            raise DryRunError(f"input {name!r}: {value!r} is not one of {spec.enum}")
        values[name] = value
    return values


def _convert(name: str, kind: InputType, value: Any) -> Any:
    try:
        if kind is InputType.STRING:
            if not isinstance(value, str):
                raise TypeError
            return value
        if kind is InputType.INTEGER:
            return int(value)
        if kind is InputType.NUMBER:
            return float(value)
        if kind is InputType.BOOLEAN:
            if isinstance(value, bool):
                return value
            if str(value).lower() in ("true", "false"):
                return str(value).lower() == "true"
            raise TypeError
        parsed = json.loads(value) if isinstance(value, str) else value
        if not isinstance(parsed, list if kind is InputType.ARRAY else dict):
            raise TypeError
        return parsed
    except (TypeError, ValueError):
        raise DryRunError(f"input {name!r}: {value!r} is not a valid {kind.value}") from None


def _recipients(value: Any) -> list[str]:
    return [str(item) for item in value] if isinstance(value, list) else [str(value)]


def _act(step: Any, context: Mapping[str, Any], responses: Mapping[str, Any]) -> tuple[Any, list[Would]]:
    """What one (non-branching, non-looping) step does in a dry run: its output and what it would send."""
    if isinstance(step, SendSmsStep | SendEmailStep):
        fields: dict[str, Any] = {"connection": step.connection}
        if step.customer is not None:  # looked up when the step sends; a dry run reads no customer record
            fields["customer"] = str(_render(step.customer, context))
            to = [f"(the contact on record of {fields['customer']})"]
        else:
            to = fields["to"] = _recipients(_render(step.to, context))
        if isinstance(step, SendSmsStep):
            fields["body"] = str(_render(step.body, context))
        else:
            fields.update(subject=str(_render(step.subject, context)), body=str(_render(step.body, context)),
                          html=step.html)
        return ({"recipients": len(to), "message_ids": []},
                [Would("sms" if isinstance(step, SendSmsStep) else "email", fields)])
    if isinstance(step, PublishEventStep):
        from demobank.events.catalog import get_catalog

        data = _render(step.data, context)
        get_catalog().validate(step.event_type, data)  # what the outbox would refuse, refused here
        return {"event_type": step.event_type}, [Would("event", {"event_type": step.event_type, "data": data})]
    if isinstance(step, HttpRequestStep):
        fields = {"connection": step.connection, "method": step.method,
                  "endpoint": _render(step.endpoint, context), "headers": _render(step.headers, context),
                  "json": _render(step.json_body, context)}
        return responses.get(step.id), [Would("http", fields)]
    if isinstance(step, FunctionStep):
        from demobank.logic_apps.library import get

        return get(step.function).run(_render(step.arguments, context)), []
    raise TypeError(f"step type {step.type!r} has no dry-run action")


def airflow_names(current: datetime, params: Mapping[str, Any], event: Mapping[str, Any] | None) -> dict[str, Any]:
    """Airflow's context names as a run at ``current`` would have them (a manual run: no data interval of its own,
    so the run's time), for the templates that use them; ``macros`` has what Airflow's macros module gives
    templates most (``datetime``, ``timedelta``, ``ds_add``, ``ds_format``), without importing Airflow."""
    import datetime as datetime_module
    from types import SimpleNamespace

    def ds_add(ds: str, days: int) -> str:
        return (datetime_module.date.fromisoformat(ds) + datetime_module.timedelta(days=days)).isoformat()

    def ds_format(ds: str, input_format: str, output_format: str) -> str:
        return datetime_module.datetime.strptime(ds, input_format).strftime(output_format)

    macros = SimpleNamespace(datetime=datetime_module.datetime, timedelta=datetime_module.timedelta, ds_add=ds_add,
                             ds_format=ds_format, date=datetime_module.date)

    run_id = f"dry_run__{current.isoformat()}"
    return {"ds": current.date().isoformat(), "ds_nodash": current.strftime("%Y%m%d"), "ts": current.isoformat(),
            "run_id": run_id, "logical_date": current, "data_interval_start": current, "data_interval_end": current,
            "params": dict(params), "macros": macros,
            "dag_run": SimpleNamespace(run_id=run_id, run_after=current, logical_date=current,
                                       conf={"event": dict(event)} if event else {})}


def dry_run(workflow: Workflow, inputs: Mapping[str, Any] | None = None, *, event: Mapping[str, Any] | None = None,
            responses: Mapping[str, Any] | None = None, now: datetime | None = None) -> DryRunReport:
    """Run the workflow's steps in order with recorders; see the module docstring.

    :param inputs: a manual trigger's inputs (checked and converted by :func:`accepted_inputs`).
    :param event: the event envelope an event trigger would start the run with (``trigger.event``).
    :param responses: step id → what an ``http_request`` step's output would be.
    :raises DryRunError: inputs the trigger does not accept, or an event trigger without an event.
    """
    values = accepted_inputs(workflow, inputs or {})
    if isinstance(workflow.trigger, EventTrigger) and event is None:
        raise DryRunError(f"an event trigger runs with an event: give a {workflow.trigger.event_type} envelope")
    current = now or datetime.now(UTC)
    context: dict[str, Any] = {"inputs": values, "trigger": {"event": dict(event or {})}, "steps": {},
                               **airflow_names(current, values, event)}
    upstream = workflow.upstream()
    results: dict[str, StepResult] = {}
    forced: dict[str, tuple[RunStatus, str]] = {}  # steps a condition decided
    for step in _in_order(workflow):
        waits = upstream.get(step.id, {})
        decided = forced.get(step.id)
        if decided is not None:
            results[step.id] = StepResult(step.id, step.type, decided[0], reason=decided[1])
            continue
        blocked = [f"{parent} {results[parent].status.value}" for parent, statuses in waits.items()
                   if results[parent].status not in statuses]
        if blocked:
            results[step.id] = StepResult(step.id, step.type, RunStatus.SKIPPED,
                                          reason="waits for " + ", ".join(blocked))
            continue
        results[step.id] = _run_step(step, context, responses or {}, forced)
        context["steps"][step.id] = {"output": results[step.id].output}
    return DryRunReport(workflow.name, [results[step.id] for step in workflow.steps])


def _run_step(step: Any, context: dict[str, Any], responses: Mapping[str, Any],
              forced: dict[str, tuple[RunStatus, str]]) -> StepResult:
    try:
        if isinstance(step, ConditionStep):
            holds = evaluate(step.expression, context)
            for branch, runs in ((step.if_true, holds), (step.if_false, not holds)):
                for target in branch:
                    if not runs:
                        forced[target] = (RunStatus.SKIPPED, f"{step.id}: {step.expression} is {holds}")
            return StepResult(step.id, step.type, RunStatus.SUCCEEDED, output=holds)
        if isinstance(step, ForEachStep):
            items = _render(step.items, context)
            if not isinstance(items, list):
                raise TypeError(f"items rendered to {type(items).__name__}, not a list")
            outputs, would = [], []
            for item in items:
                output, sent = _act(step.step, {**context, "item": item}, responses)
                outputs.append(output)
                would += sent
            return StepResult(step.id, step.type, RunStatus.SUCCEEDED, output=outputs, would=would)
        output, would = _act(step, context, responses)
        return StepResult(step.id, step.type, RunStatus.SUCCEEDED, output=output, would=would)
    except Exception as error:  # noqa: BLE001 - a step that fails is reported, as a task that fails is
        return StepResult(step.id, step.type, RunStatus.FAILED, error=f"{type(error).__name__}: {error}")


def _in_order(workflow: Workflow) -> list[Any]:
    """The steps in an order where every step comes after those it runs after (file order among equals)."""
    upstream = workflow.upstream()
    done: set[str] = set()
    ordered: list[Any] = []
    pending = list(workflow.steps)
    while pending:
        for step in pending:
            if set(upstream.get(step.id, {})) <= done:
                ordered.append(step)
                done.add(step.id)
                pending.remove(step)
                break
        else:  # the model refuses cycles; never reached
            raise ValueError("the steps wait for each other in a cycle")
    return ordered


__all__ = ["DryRunError", "DryRunReport", "StepResult", "Would", "accepted_inputs", "dry_run"]
