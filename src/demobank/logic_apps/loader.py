"""The Logic Apps' DAG loader: every definition of a folder becomes one DAG, ``logic_app__<name>``.

One DAG file (``dags/logic_apps_loader.py``) calls :func:`load_dags`. Each definition is validated as
``demobank workflows validate`` does (its shape, functions and their arguments, event types and match fields,
template references), except connections: Airflow's connections are not all known while it parses. A definition
with a problem becomes an **import error of its own file** (``logic_apps/<file>.yaml``, every problem as
``file:line:column: field: message``) and never hides another workflow: the loader's own file and every other
definition keep their DAGs.

How the import error reaches Airflow: Airflow 3.3 lists only ``.py`` and ``.zip`` files as DAG files and has no
public way to report an error of another file. The loader adds its errors to the import result of the file being
parsed (:class:`airflow.dag_processing.importers.base.DagImportResult`, found on the call stack), under the
definition's path relative to the bundle; Airflow stores and shows them as that file's import errors. Two effects
of Airflow's bookkeeping: a fixed definition's error is removed at the next bundle refresh
(``[dag_processor] refresh_interval``), and a broken one's error is re-added each time the loader is parsed. Outside
Airflow's DAG processor (a plain import) the errors are logged and raised as warnings instead.
"""

from __future__ import annotations

import hashlib
import inspect
import logging
import warnings
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from demobank.logic_apps.definition import (
    ConditionStep,
    EventTrigger,
    ForEachStep,
    FunctionStep,
    HttpRequestStep,
    InputType,
    ManualTrigger,
    Problem,
    PublishEventStep,
    ScheduleTrigger,
    SendEmailStep,
    SendSmsStep,
    Workflow,
    definition_files_in,
    parse_duration,
    trigger_rule,
)

log = logging.getLogger(__name__)

START_DATE = datetime(2026, 1, 1, tzinfo=UTC)
RETRY_DELAY = timedelta(seconds=30)
EMAIL_RETRY_DELAY = timedelta(minutes=4)
"""A send_email's first retry delay (then 8, 16 min): a send of unknown outcome is settled in SendGrid's Email
Activity only 10 minutes later, so its retries must reach past that instead of failing early (as Connect's alert)."""
MAX_RETRY_DELAY = timedelta(minutes=30)
TAG = "logic-app"


class LogicAppImportWarning(UserWarning):
    """A definition that could not become a DAG (outside Airflow's DAG processor)."""


def load_dags(folder: Path | str, *, functions: Path | None = None,
              deployed: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Every valid definition of ``folder`` as a DAG, by DAG id; the others reported as import errors (and so is a
    functions file that cannot be imported).

    :param functions: the bank's functions folder (default: :func:`demobank.logic_apps.library.functions_dir`).
    :param deployed: workflow name → its latest deployed version (default: read from the suite's database).
    """
    from demobank.events.catalog import get_catalog
    from demobank.logic_apps.library import load_functions, registered
    from demobank.logic_apps.validate import Context, check_files

    folder = Path(folder)
    errors: dict[Path, str] = {path: f"{path}: this functions file cannot be imported, its functions are not "
                                     f"registered:\n{error}" for path, error in load_functions(functions).items()}
    checked = check_files(definition_files_in(folder), Context(connections=None, functions=registered(),
                                                            catalog=get_catalog()))
    if deployed is None:
        deployed = _deployed_versions()
    dags: dict[str, Any] = {}
    shown = _shown_path(folder)
    for item in checked:
        if item.problems or item.workflow is None:
            errors[item.path] = "\n".join(str(problem) for problem in item.problems)
            continue
        try:
            dag = build_dag(item.workflow, file=f"{shown}/{item.path.name}", text=item.text,
                            deployed=deployed.get(item.workflow.name))
        except Exception as error:  # noqa: BLE001 - one definition's failure is its own import error
            errors[item.path] = str(Problem(str(item.path), 1, 1, "", f"cannot become a DAG: {error}"))
            continue
        dags[dag.dag_id] = dag
    if errors:
        report_import_errors(errors)
    return dags


def _shown_path(path: Path) -> str:
    """The definition's path as its readers know it: under ``dags/`` when it is there."""
    parts = path.resolve().parts
    return "/".join(parts[parts.index("dags"):]) if "dags" in parts else str(path)


def _deployed_versions() -> Mapping[str, Any]:
    try:
        from demobank.db.engine import get_engine
        from demobank.logic_apps.versions import latest_versions

        return latest_versions(get_engine())
    except Exception:  # the suite's database unreachable: the DAGs still load, without it
        log.warning("the deployed Logic App versions could not be read; the DAGs do not show them", exc_info=True)
        return {}


# -- import errors ------------------------------------------------------------------------------------------


def _import_result() -> Any:
    """The DagImportResult of the file Airflow is parsing now, if this runs inside its importer."""
    for frame_info in inspect.stack(context=0):
        candidate = frame_info.frame.f_locals.get("result")
        if type(candidate).__name__ == "DagImportResult" and hasattr(candidate, "errors"):
            return candidate
    return None


def report_import_errors(errors: Mapping[Path, str]) -> None:
    """Add each definition's problems to Airflow's import errors under the definition's own path."""
    result = _import_result()
    if result is None:
        for path, message in errors.items():
            log.error("Logic App definition %s is not loaded:\n%s", path, message)
            warnings.warn(f"{path}: not loaded:\n{message}", LogicAppImportWarning, stacklevel=2)
        return
    from airflow.dag_processing.importers.base import DagImportError

    loader_dir = str(Path(result.file_path).parent)
    for path, message in errors.items():
        relative = f"{path.parent.name}/{path.name}" if loader_dir in ("", ".") else \
            f"{loader_dir}/{path.parent.name}/{path.name}"
        result.errors.append(DagImportError(file_path=relative, message=message, error_type="logic_app"))


# -- one workflow as a DAG ----------------------------------------------------------------------------------


PARAM_TYPES = {InputType.STRING: "string", InputType.INTEGER: "integer", InputType.NUMBER: "number",
               InputType.BOOLEAN: "boolean", InputType.ARRAY: "array", InputType.OBJECT: "object"}


def params_of(workflow: Workflow) -> dict[str, Any]:
    """A manual trigger's inputs as the DAG's Params: the trigger form and ``POST …/dagRuns`` check them."""
    from airflow.sdk import Param

    if not isinstance(workflow.trigger, ManualTrigger):
        return {}
    params = {}
    for name, spec in workflow.trigger.inputs.items():
        schema: dict[str, Any] = {"title": name}
        if spec.description:
            schema["description"] = spec.description
        if spec.pattern is not None:
            schema["pattern"] = spec.pattern
        if spec.enum is not None:
            schema["enum"] = spec.enum
        kind = PARAM_TYPES[spec.type]
        if spec.required:
            params[name] = Param(type=kind, **schema)
        elif spec.default is not None:
            params[name] = Param(spec.default, type=kind, **schema)
        else:
            if "enum" in schema:
                schema["enum"] = [*schema["enum"], None]
            params[name] = Param(None, type=[kind, "null"], **schema)
    return params


def doc_of(workflow: Workflow, file: str, text: str, deployed: Any) -> str:
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
    if deployed is None:
        state = "**Not deployed** yet: `demobank workflows deploy " + workflow.name + "` records a version."
    elif deployed.content_hash == digest:
        state = (f"**Deployed version {deployed.number}**, by {deployed.author} on "
                 f"{deployed.deployed_at:%Y-%m-%d %H:%M} UTC.")
    else:
        state = (f"**Changed since deployed version {deployed.number}** ({deployed.author}, "
                 f"{deployed.deployed_at:%Y-%m-%d %H:%M} UTC): `demobank workflows diff {workflow.name}` shows how.")
    trigger = workflow.trigger
    if isinstance(trigger, ScheduleTrigger):
        how = f"on the schedule `{trigger.cron}` (UTC)"
    elif isinstance(trigger, EventTrigger):
        how = f"by each `{trigger.event_type}` event" + (f" matching `{trigger.match}`" if trigger.match else "")
    else:
        how = "by hand, the trigger form or `POST /api/v2/dags/" + workflow.dag_id + "/dagRuns` with its inputs"
    return (f"### Logic App {workflow.name}\n\n{workflow.description}\n\nRuns {how}. Owner: {workflow.owner}.\n\n"
            f"Defined in `{file}` (sha256 `{digest[:12]}`). {state}\n")


def _step_operator(step: Any) -> tuple[type, dict[str, Any]]:
    """The operator class of one (non-branching, non-looping) step and its arguments."""
    from demobank.logic_apps import runtime

    if isinstance(step, SendSmsStep):
        return runtime.LogicAppSmsOperator, {"to": step.to, "customer": step.customer, "body": step.body,
                                             "twilio_conn_id": step.connection}
    if isinstance(step, SendEmailStep):
        return runtime.LogicAppEmailOperator, {"to": step.to or "", "customer": step.customer,
                                               "subject": step.subject, "html_content": step.body, "html": step.html,
                                               "sendgrid_conn_id": step.connection}
    if isinstance(step, PublishEventStep):
        return runtime.LogicAppEventOperator, {"event_type": step.event_type, "data": step.data,
                                               "idempotency_key": step.idempotency_key}
    if isinstance(step, HttpRequestStep):
        return runtime.LogicAppHttpOperator, {"http_conn_id": step.connection, "method": step.method,
                                              "endpoint": step.endpoint, "headers": dict(step.headers),
                                              "json_body": step.json_body, "auth": step.auth}
    if isinstance(step, FunctionStep):
        return runtime.LogicAppFunctionOperator, {"function": step.function, "arguments": dict(step.arguments)}
    raise TypeError(f"step type {step.type!r} has no operator")


def _common(step: Any) -> dict[str, Any]:
    kwargs: dict[str, Any] = {"task_id": step.id, "retries": step.retries, "retry_exponential_backoff": True,
                              "retry_delay": EMAIL_RETRY_DELAY if isinstance(step, SendEmailStep) else RETRY_DELAY,
                              "max_retry_delay": MAX_RETRY_DELAY}
    if step.description:
        kwargs["doc_md"] = step.description
    if step.timeout is not None:
        kwargs["execution_timeout"] = parse_duration(step.timeout)
    return kwargs


def build_dag(workflow: Workflow, *, file: str, text: str, deployed: Any = None) -> Any:
    """One workflow as a DAG (see the module docstrings of this module and of :mod:`.runtime`)."""
    from airflow.sdk import DAG

    from demobank.logic_apps import runtime
    from demobank.logic_apps.validate import steps_read

    trigger = workflow.trigger
    manual = isinstance(trigger, ManualTrigger)
    upstream = workflow.upstream()
    output_task = {step.id: step.step.id if isinstance(step, ForEachStep) else step.id for step in workflow.steps}
    downstream: dict[str, list[str]] = {step.id: [] for step in workflow.steps}
    for child, parents in upstream.items():
        for parent in parents:
            downstream[parent].append(child)

    def outputs(value: Any) -> dict[str, str]:
        return {step_id: output_task[step_id] for step_id in sorted(steps_read(value))}

    dag = DAG(
        dag_id=workflow.dag_id,
        description=workflow.description.splitlines()[0][:200],
        doc_md=doc_of(workflow, file, text, deployed),
        schedule=trigger.cron if isinstance(trigger, ScheduleTrigger) else None,
        start_date=START_DATE,
        catchup=False,
        tags=[TAG, *workflow.tags],
        params=params_of(workflow),
        default_args={"owner": workflow.owner},
        render_template_as_native_obj=False,
    )
    first: dict[str, Any] = {}
    last: dict[str, Any] = {}
    with dag:
        for step in workflow.steps:
            rule = trigger_rule(upstream[step.id])
            if isinstance(step, ConditionStep):
                branches = {*step.if_true, *step.if_false}
                task = runtime.LogicAppConditionOperator(
                    **_common(step), trigger_rule=rule, manual=manual,
                    outputs=outputs("{{ " + step.expression + " }}"), expression=step.expression,
                    if_true=step.if_true, if_false=step.if_false,
                    always=[child for child in downstream[step.id] if child not in branches])
                first[step.id] = last[step.id] = task
            elif isinstance(step, ForEachStep):
                items = runtime.LogicAppItemsOperator(**_common(step), trigger_rule=rule, manual=manual,
                                                      outputs=outputs(step.items), items=step.items)
                operator, arguments = _step_operator(step.step)
                inner = operator.partial(**_common(step.step), manual=manual, **arguments,
                                         outputs=outputs(arguments)).expand(item=items.output)
                first[step.id], last[step.id] = items, inner
            else:
                operator, arguments = _step_operator(step)
                task = operator(**_common(step), trigger_rule=rule, manual=manual, **arguments,
                                outputs=outputs(arguments))
                first[step.id] = last[step.id] = task
        for child, parents in upstream.items():
            for parent in parents:
                last[parent] >> first[child]
    return dag


__all__ = ["build_dag", "load_dags", "params_of", "report_import_errors"]
