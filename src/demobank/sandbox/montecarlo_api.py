"""The parts of Monte Carlo's APIs that pycarlo and airflow-mcd 0.3.12 call.

- ``POST /graphql``: pycarlo's GraphQL transport (sgqlc). Body ``{"query", "variables", "operationName"}``;
  answers ``{"data": ...}`` or ``{"errors": [...]}``. Simulated fields: the mutations airflow-mcd sends
  (``uploadAirflowDagResult``, ``uploadAirflowTaskResult``, ``uploadAirflowSlaMisses`` → ``{"ok": true}``,
  with their required arguments checked as in pycarlo's schema) and ``getUser`` (what
  ``SessionHook.test_connection`` asks for).
- ``POST /airflow/callbacks``: the integration gateway that airflow-mcd uses when its connection is of type
  ``mcd-gateway`` (pycarlo ``Session(scope="AirflowCallbacks")`` + ``Client.make_request``). Body
  ``{"airflow_operation": "upload_airflow_dag_result" | "upload_airflow_task_result" |
  "upload_airflow_sla_misses" | "ping", "airflow_payload": {...}}``; answers ``{"success": true, ...}``.
  Checked like a strict serializer: the required keys, no top-level keys beyond what airflow-mcd sends (extra data
  belongs in the free-form ``payload``), ISO date-times, and the types of the lineage fields (``tasks`` with their
  ``inlets``/``outlets``, ``task_dependencies``, the URI lists); a refused body gets 400 with the reason. This is
  what the suite's run reporter (:mod:`demobank.data_factory.reporting`) sends.

Both check the ``x-mcd-id`` / ``x-mcd-token`` headers and record every accepted call as received.
"""

from __future__ import annotations

import hmac
import json
import uuid
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Request
from graphql import GraphQLError, parse
from graphql.language import (
    DocumentNode,
    FieldNode,
    OperationDefinitionNode,
    OperationType,
    SelectionSetNode,
    ValueNode,
    VariableNode,
)
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from demobank.sandbox.common import REASONS, InjectedFault, SandboxContext, json_response

GRAPHQL_PATH = "/graphql"
GATEWAY_PATH = "/airflow/callbacks"

#: Arguments of the airflow-mcd mutations, from pycarlo's schema: name -> (GraphQL type, required).
_UPLOAD_ARGS: dict[str, dict[str, tuple[str, bool]]] = {
    "uploadAirflowDagResult": {
        "dagId": ("String!", True),
        "endDate": ("DateTime!", True),
        "env": ("AirflowEnvInput!", True),
        "executionDate": ("DateTime!", True),
        "payload": ("GenericScalar!", True),
        "reason": ("String", False),
        "resourceName": ("String", False),
        "runId": ("String!", True),
        "startDate": ("DateTime!", True),
        "state": ("String!", True),
        "success": ("Boolean!", True),
        "tags": ("[String]", False),
    },
    "uploadAirflowTaskResult": {
        "attemptNumber": ("Int!", True),
        "dagId": ("String!", True),
        "duration": ("Float", False),
        "endDate": ("DateTime!", True),
        "env": ("AirflowEnvInput!", True),
        "exceptionMessage": ("String", False),
        "executionDate": ("DateTime!", True),
        "logUrl": ("String", False),
        "nextRetryDate": ("DateTime", False),
        "payload": ("GenericScalar!", True),
        "resourceName": ("String", False),
        "runId": ("String!", True),
        "startDate": ("DateTime!", True),
        "state": ("String!", True),
        "success": ("Boolean!", True),
        "tags": ("[String]", False),
        "taskId": ("String!", True),
    },
    "uploadAirflowSlaMisses": {
        "dagId": ("String!", True),
        "env": ("AirflowEnvInput!", True),
        "payload": ("GenericScalar!", True),
        "resourceName": ("String", False),
    },
}

_SANDBOX_USER: dict[str, Any] = {
    "uuid": "00000000-0000-4000-8000-000000000000",
    "email": "sandbox-user@demobank.example",
    "firstName": "Sandbox",
    "lastName": "User",
    "role": "sandbox",
    "auth": {
        "permissions": [
            {"permission": "AssetsEdit", "effect": "allow"},
            {"permission": "MonitorsAccess", "effect": "allow"},
        ]
    },
    "account": {"uuid": "00000000-0000-4000-8000-000000000001", "name": "Demo Bank sandbox"},
}

#: Required keys of the gateway's ``airflow_payload`` per operation (what airflow-mcd 0.3.12 always sends).
_GATEWAY_REQUIRED: dict[str, tuple[str, ...]] = {
    "ping": (),
    "upload_airflow_dag_result": (
        "dag_id",
        "run_id",
        "success",
        "state",
        "execution_date",
        "start_date",
        "end_date",
        "env",
        "payload",
    ),
    "upload_airflow_task_result": (
        "dag_id",
        "run_id",
        "task_id",
        "success",
        "state",
        "execution_date",
        "start_date",
        "end_date",
        "attempt_number",
        "env",
        "payload",
    ),
    "upload_airflow_sla_misses": ("dag_id", "env", "payload"),
}


def _authenticated(request: Request, ctx: SandboxContext) -> bool:
    mcd_id = request.headers.get("x-mcd-id", "")
    mcd_token = request.headers.get("x-mcd-token", "")
    return hmac.compare_digest(mcd_id.encode(), ctx.settings.mcd_id.encode()) and hmac.compare_digest(
        mcd_token.encode(), ctx.settings.mcd_token.encode()
    )


_AUTH_HELP = (
    "The x-mcd-id / x-mcd-token headers are missing or do not match an API key: use the sandbox's Monte Carlo "
    "credentials (DEMOBANK_SANDBOX_MCD_ID / DEMOBANK_SANDBOX_MCD_TOKEN) in the connection's login/password."
)


def _gql_errors(messages: list[str], status: int, headers: dict[str, str] | None = None) -> Response:
    return json_response({"errors": [{"message": m} for m in messages]}, status, headers)


def _gql_fault(fault: InjectedFault) -> Response:
    return _gql_errors([REASONS.get(fault.status, "Error")], fault.status, fault.retry_headers())


def _gateway_fault(fault: InjectedFault) -> Response:
    return json_response({"message": REASONS.get(fault.status, "Error")}, fault.status, fault.retry_headers())


def _project(value: Any, selection: SelectionSetNode | None) -> Any:
    """Shape canned data like the query's selection set (aliases honoured, unknown fields null)."""
    if selection is None or value is None:
        return value
    if isinstance(value, list):
        return [_project(v, selection) for v in value]
    out: dict[str, Any] = {}
    for node in selection.selections:
        if not isinstance(node, FieldNode):
            continue
        key = node.alias.value if node.alias else node.name.value
        out[key] = _project(value.get(node.name.value), node.selection_set)
    return out


def _value_is_null(node: ValueNode, variables: dict[str, Any]) -> bool:
    if isinstance(node, VariableNode):
        return variables.get(node.name.value) is None
    return node.kind == "null_value"


def _check_upload_args(field: FieldNode, variables: dict[str, Any]) -> list[str]:
    spec = _UPLOAD_ARGS[field.name.value]
    given = {arg.name.value: arg.value for arg in field.arguments or ()}
    errors = [
        f'Unknown argument "{name}" on field "Mutation.{field.name.value}".' for name in given if name not in spec
    ]
    for name, (gql_type, required) in spec.items():
        if not required:
            continue
        if name not in given:
            errors.append(
                f'Field "{field.name.value}" argument "{name}" of type "{gql_type}" is required, '
                "but it was not provided."
            )
        elif _value_is_null(given[name], variables):
            errors.append(f'Argument "{name}" of non-null type "{gql_type}" must not be null.')
    return errors


def _select_operation(document: DocumentNode, operation_name: str | None) -> OperationDefinitionNode | str:
    operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
    if operation_name:
        for op in operations:
            if op.name and op.name.value == operation_name:
                return op
        return f'Unknown operation named "{operation_name}".'
    if len(operations) != 1:
        return "Must provide operation name if query contains multiple operations."
    return operations[0]


def execute_graphql(body: Any) -> tuple[int, dict[str, Any], str | None]:
    """Answer a GraphQL request for the simulated fields.

    :param body: the decoded JSON body.
    :return: (HTTP status, response JSON, operation label for the record or None if not accepted).
    """
    if not isinstance(body, dict) or not isinstance(body.get("query"), str):
        return 400, {"errors": [{"message": "Must provide query string."}]}, None
    variables = body.get("variables") or {}
    if not isinstance(variables, dict):
        return 400, {"errors": [{"message": "Variables are invalid JSON."}]}, None
    try:
        document = parse(body["query"])
    except GraphQLError as exc:
        return 400, {"errors": [exc.formatted]}, None
    operation = _select_operation(document, body.get("operationName"))
    if isinstance(operation, str):
        return 400, {"errors": [{"message": operation}]}, None
    is_mutation = operation.operation == OperationType.MUTATION
    type_name = "Mutation" if is_mutation else "Query"
    data: dict[str, Any] = {}
    errors: list[str] = []
    fields: list[str] = []
    for node in operation.selection_set.selections:
        if not isinstance(node, FieldNode):
            errors.append("Fragments at the top level are not supported by the sandbox; select fields directly.")
            continue
        name = node.name.value
        key = node.alias.value if node.alias else name
        if name == "__typename":
            data[key] = type_name
            continue
        fields.append(name)
        if is_mutation and name in _UPLOAD_ARGS:
            errors += _check_upload_args(node, variables)
            data[key] = _project({"ok": True}, node.selection_set)
        elif not is_mutation and name == "getUser":
            data[key] = _project(_SANDBOX_USER, node.selection_set)
        else:
            errors.append(f'Cannot query field "{name}" on type "{type_name}".')
    if errors:
        return 400, {"errors": [{"message": m} for m in errors]}, None
    return 200, {"data": data}, ",".join(fields) or "__typename"


#: Optional keys of the gateway's ``airflow_payload`` per operation (the rest of what airflow-mcd 0.3.12 sends).
#: Any other key is refused, as a strict serializer would: extensions belong in the free-form ``payload``.
_GATEWAY_OPTIONAL: dict[str, tuple[str, ...]] = {
    "ping": (),
    "upload_airflow_dag_result": (
        "reason",
        "tags",
        "tasks",
        "task_dependencies",
        "triggered_dags",
        "dataset_schedule_uris",
        "dataset_outlet_uris",
        "dataset_trigger_events",
    ),
    "upload_airflow_task_result": ("log_url", "duration", "tags", "next_retry_date", "exception_message"),
    "upload_airflow_sla_misses": (),
}

_DATETIME_KEYS = ("execution_date", "start_date", "end_date", "next_retry_date")
_STRING_LIST_KEYS = ("tags", "triggered_dags", "dataset_schedule_uris", "dataset_outlet_uris")


def _is_datetime(value: Any) -> bool:
    if not isinstance(value, str) or not value:
        return False
    try:
        datetime.fromisoformat(value)
    except ValueError:
        return False
    return True


def _is_string_list(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def _check_lineage(value: Any, where: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        return f"{where} must be null or a list of objects, got {value!r:.200}."
    for i, entry in enumerate(value):
        if "uri" in entry and not (isinstance(entry["uri"], str) and entry["uri"]):
            return f"{where}[{i}].uri must be a non-empty string, got {entry['uri']!r}."
    return None


def _check_tasks(tasks: Any) -> str | None:
    if tasks is None:
        return None
    if not isinstance(tasks, list):
        return f"airflow_payload.tasks must be null or a list, got {type(tasks).__name__}."
    for i, task in enumerate(tasks):
        where = f"airflow_payload.tasks[{i}]"
        if not isinstance(task, dict):
            return f"{where} must be an object."
        if not (isinstance(task.get("task_id"), str) and task["task_id"]):
            return f"{where}.task_id must be a non-empty string, got {task.get('task_id')!r}."
        if not isinstance(task.get("state"), str):
            return f"{where}.state must be a string (empty when unknown), got {task.get('state')!r}."
        for key in ("execution_date", "start_date", "end_date"):
            if key in task and not _is_datetime(task[key]):
                return f"{where}.{key} must be an ISO 8601 date-time, got {task[key]!r}."
        for key in ("inlets", "outlets"):
            problem = _check_lineage(task.get(key), f"{where}.{key}")
            if problem:
                return problem
    return None


def _check_typed_fields(operation: str, payload: dict[str, Any]) -> str | None:
    for key in _DATETIME_KEYS:
        if key in payload and payload[key] is not None and not _is_datetime(payload[key]):
            return f"airflow_payload.{key} must be an ISO 8601 date-time, got {payload[key]!r}."
    if operation in ("upload_airflow_dag_result", "upload_airflow_task_result", "upload_airflow_sla_misses") and \
            not isinstance(payload["payload"], dict):
        return "airflow_payload.payload must be a JSON object."
    for key in ("state", "reason", "log_url", "exception_message"):
        if key in payload and payload[key] is not None and not isinstance(payload[key], str):
            return f"airflow_payload.{key} must be a string, got {payload[key]!r}."
    for key in _STRING_LIST_KEYS:
        if key in payload and payload[key] is not None and not _is_string_list(payload[key]):
            return f"airflow_payload.{key} must be null or a list of strings, got {payload[key]!r:.200}."
    if operation == "upload_airflow_task_result":
        if not isinstance(payload["attempt_number"], int) or isinstance(payload["attempt_number"], bool):
            return f"airflow_payload.attempt_number must be an integer, got {payload['attempt_number']!r}."
        duration = payload.get("duration")
        if duration is not None and (not isinstance(duration, (int, float)) or isinstance(duration, bool)):
            return f"airflow_payload.duration must be a number, got {duration!r}."
    if operation == "upload_airflow_dag_result":
        problem = _check_tasks(payload.get("tasks"))
        if problem:
            return problem
        deps = payload.get("task_dependencies")
        if deps is not None and not (
            isinstance(deps, dict) and all(isinstance(k, str) and _is_string_list(v) for k, v in deps.items())
        ):
            return f"airflow_payload.task_dependencies must be null or an object of task id lists, got {deps!r:.200}."
        events = payload.get("dataset_trigger_events")
        if events is not None and not (
            isinstance(events, list) and all(isinstance(e, dict) and isinstance(e.get("uri"), str) for e in events)
        ):
            return "airflow_payload.dataset_trigger_events must be null or a list of objects with a uri."
        for key in ("dag_id", "run_id"):
            if payload["payload"].get(key) != payload[key]:
                return (f"airflow_payload.payload.{key} ({payload['payload'].get(key)!r}) differs from "
                        f"airflow_payload.{key} ({payload[key]!r}).")
    return None


def check_gateway_body(body: Any) -> str | None:
    """Check a gateway callback body like the gateway does: the operation, the required keys, no unknown keys at
    the top level of ``airflow_payload``, and the types of what is there.

    :param body: the decoded JSON body.
    :return: what is wrong, or None if it is acceptable.
    """
    if not isinstance(body, dict):
        return "The body must be a JSON object with airflow_operation and airflow_payload."
    operation = body.get("airflow_operation")
    if operation not in _GATEWAY_REQUIRED:
        return f"Unknown airflow_operation {operation!r}: expected one of {sorted(_GATEWAY_REQUIRED)}."
    payload = body.get("airflow_payload")
    if not isinstance(payload, dict):
        return "airflow_payload must be a JSON object."
    missing = [k for k in _GATEWAY_REQUIRED[operation] if k not in payload]
    if missing:
        return f"airflow_payload for {operation} is missing {missing}."
    unknown = sorted(set(payload) - set(_GATEWAY_REQUIRED[operation]) - set(_GATEWAY_OPTIONAL[operation]))
    if unknown:
        return (f"airflow_payload for {operation} has unknown field(s) {unknown}; put extra data in "
                "airflow_payload.payload.")
    for key in ("dag_id", "run_id", "task_id"):
        if key in _GATEWAY_REQUIRED[operation] and not (isinstance(payload[key], str) and payload[key]):
            return f"airflow_payload.{key} must be a non-empty string, got {payload[key]!r}."
    if "success" in _GATEWAY_REQUIRED[operation] and not isinstance(payload["success"], bool):
        return f"airflow_payload.success must be a boolean, got {payload['success']!r}."
    if "env" in payload and not (isinstance(payload["env"], dict) and payload["env"].get("env_name")):
        return "airflow_payload.env must be an object with a non-empty env_name."
    return _check_typed_fields(operation, payload)


def create_router(ctx: SandboxContext) -> APIRouter:
    """Build the GraphQL route (``/graphql``).

    :param ctx: settings and store.
    :return: the router.
    """
    router = APIRouter(tags=["montecarlo"])

    @router.post(GRAPHQL_PATH)
    async def graphql_endpoint(request: Request) -> Response:
        fault = await ctx.enter("montecarlo")
        if not _authenticated(request, ctx):
            return _gql_errors([_AUTH_HELP], 401)
        if fault is not None:
            return _gql_fault(fault)
        raw = await request.body()
        try:
            body = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            return _gql_errors(["POST body sent invalid JSON."], 400)
        status, answer, operation = execute_graphql(body)
        if operation is not None:
            await run_in_threadpool(
                ctx.store.record_montecarlo, endpoint=GRAPHQL_PATH, operation=operation, payload=raw
            )
        return json_response(answer, status)

    return router


def create_gateway_router(ctx: SandboxContext, path: str = GATEWAY_PATH) -> APIRouter:
    """Build the integration gateway route.

    :param ctx: settings and store.
    :param path: the route path (``/airflow/callbacks`` at the app root, ``/callbacks`` in an app mounted at
        ``/airflow``).
    :return: the router.
    """
    router = APIRouter(tags=["montecarlo"])
    resource_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"demobank-sandbox:{ctx.settings.mcd_id}"))

    @router.post(path)
    async def airflow_callbacks(request: Request) -> Response:
        fault = await ctx.enter("montecarlo")
        if not _authenticated(request, ctx):
            return json_response({"message": "Unauthorized. " + _AUTH_HELP}, 401)
        if fault is not None:
            return _gateway_fault(fault)
        raw = await request.body()
        try:
            body = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            return json_response({"success": False, "message": "The body is not valid JSON."}, 400)
        problem = check_gateway_body(body)
        if problem is not None:
            return json_response({"success": False, "message": problem}, 400)
        await run_in_threadpool(
            ctx.store.record_montecarlo, endpoint=GATEWAY_PATH, operation=body["airflow_operation"], payload=raw
        )
        return json_response({"success": True, "resource_ids": [resource_id]})

    return router
