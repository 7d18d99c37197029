"""The Events REST API of the plugin app (mounted under ``/demobank/api/v1``, behind Airflow's authentication).

* ``POST /events`` — publish up to 500 events in one transaction: ``{"events": [{"type", "data", "subject"?,
  "version"?, "time"?, "idempotency_key"?}, …]}`` → ``201 {"ids": [...], "count": n, "dispatch": ...}``.
  The publisher is the signed-in user (``user:<name>``, recorded with every event; its idempotency keys are its
  own), never a field of the body. A batch with any problem is refused whole (``422``, the problems with their
  fields), nothing is written.
* ``GET /event-types`` — the catalog: types, versions, an example each, whether the API may publish the type.
* ``GET /workflows/schema`` — the Logic App definition's JSON Schema (editors complete and check definitions).
* ``GET|POST /targets``, ``GET|PUT /targets/{id}``, ``POST /targets/{id}/enable|disable|ping|replay``,
  ``GET /targets/{id}/deliveries`` — targets (see :mod:`demobank.events.targets`). Each target read (``GET /targets``,
  ``GET /targets/{id}``) carries its deliveries per status, its ``health`` and its ``backlog``: ``pending``,
  ``delivered_in_window`` with ``rate_per_minute`` / ``rate_per_second`` over the last ``window_seconds`` (300),
  ``oldest_pending_at`` and ``oldest_pending_age_seconds`` (null when nothing is pending; see
  :mod:`demobank.events.backlog`); the Targets page shows it.
* ``GET /targets/{id}/audit``, ``GET /audit`` — who changed which target, when, and what (newest first; see
  :mod:`demobank.events.audit`).

Permissions (:mod:`demobank.ui.permissions`): reads need ``read``; publishing ``publish``; every change to a target
(create, edit, enable, disable, ping, replay) ``manage``, and for an ``airflow_dag`` target also the right to trigger
its DAG: the DAG named in the body when it is saved, the target's DAG when it is enabled, pinged or replayed (each of
those can start it). A refusal is a ``403`` naming the permission. Changes are recorded in the audit trail with the
signed-in user's name.

Every handler is a thin translation between HTTP and the Airflow-free functions of :mod:`demobank.events`.

Input limits (each an environment variable, see :mod:`demobank.limits` and the README's Events section): a body
over ``DEMOBANK_API_MAX_BODY_BYTES`` (5 MiB) is refused with ``413`` before it is read (:mod:`demobank.ui.body_limit`);
an event over ``DEMOBANK_EVENT_MAX_BYTES`` (256 KiB), a batch over 500 events or over
``DEMOBANK_EVENT_BATCH_MAX_BYTES`` (4 MiB of envelopes), a type the catalog closes to the API, and a replay of more
than ``DEMOBANK_REPLAY_MAX_EVENTS`` (10,000) events get ``422``; a target's filter is bounded (``DEMOBANK_TARGET_*``).
A ``422`` lists at most ``DEMOBANK_API_MAX_PROBLEMS`` (100) problems and counts the rest in ``more_problems``.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Body, HTTPException, Query
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy import Engine

from demobank.db.models import EventDeliveryStatus, TargetKind
from demobank.events import audit
from demobank.events import targets as target_store
from demobank.events.catalog import EventValidationError
from demobank.events.envelope import user_publisher
from demobank.events.outbox import MAX_BATCH_SIZE, EventConflictError
from demobank.events.replay import ReplayTooLargeError
from demobank.exceptions import ConfigurationError
from demobank.limits import MAX_PROBLEMS, limited
from demobank.ui.permissions import Action, AuthManagerDep, ensure_dag_access, require

log = logging.getLogger(__name__)

Reader = Annotated[Any, require(Action.READ)]
"""A route parameter: the signed-in user, who may read the suite's pages and API."""
Publisher = Annotated[Any, require(Action.PUBLISH)]
"""A route parameter: the signed-in user, who may publish events."""
Manager = Annotated[Any, require(Action.MANAGE)]
"""A route parameter: the signed-in user, who may manage event targets."""


class PublishRequest(BaseModel):
    """The body of ``POST /events``."""

    model_config = ConfigDict(extra="forbid")

    events: list[Any] = Field(description=f"1 to {MAX_BATCH_SIZE} events, each with type and data")


class ReplayRequest(BaseModel):
    """The body of ``POST /targets/{id}/replay``: the events of a type whose time is in ``[start, end)``."""

    model_config = ConfigDict(extra="forbid")

    event_type: str
    start: datetime
    end: datetime


def _with_time(event: Any) -> Any:
    """JSON has no datetimes: parse an ISO 8601 ``time``; anything else is left for publish_many to report."""
    if isinstance(event, dict) and isinstance(event.get("time"), str):
        try:
            return {**event, "time": datetime.fromisoformat(event["time"])}
        except ValueError:
            pass
    return event


def _error(status: int, detail: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"detail": detail, **extra}, status_code=status)


def _problems_error(status: int, detail: str, problems: list[dict[str, Any]]) -> JSONResponse:
    """A 4xx listing at most ``DEMOBANK_API_MAX_PROBLEMS`` problems; ``more_problems`` counts the rest."""
    shown, more = limited(problems)
    if more:
        detail += (f" ({more} more problem{'s' if more != 1 else ''} not listed: at most {len(shown)} are, "
                   f"{MAX_PROBLEMS.env}; fix these and send the request again to see the rest)")
    return _error(status, detail, problems=shown, more_problems=more)


def _publisher_of(user: Any) -> str | JSONResponse:
    """The publisher of what ``user`` publishes (``user:<name>``), or the 403 when the name cannot be one."""
    try:
        return user_publisher(user.get_name())
    except ValueError as error:
        return _error(403, f"forbidden: {error}; events record who published them. Sign in with such a user name.")


def _suite_engine() -> Engine:
    from demobank.db.engine import get_engine

    return get_engine()


def create_router(engine_factory: Any = _suite_engine, announce: Any = None) -> APIRouter:
    """The Events API routes.

    :param engine_factory: returns the suite database's engine (tests pass their own).
    :param announce: called after events were committed, to start ``events_dispatch`` at once (returns whether
        it could); by default :func:`demobank.events.outbox_asset.announce_outbox_update`.
    """
    router = APIRouter()

    def engine() -> Engine:
        return engine_factory()

    def wake_dispatcher(count: int, source: str) -> str:
        notify = announce
        if notify is None:
            from demobank.events.outbox_asset import announce_outbox_update as notify
        started = notify({"events": count, "source": source})
        return "started" if started else "next sweep (within a minute)"

    def translate(error: Exception) -> JSONResponse:
        if isinstance(error, EventConflictError):
            return _problems_error(409, str(error), [vars(p) for p in error.problems])
        if isinstance(error, EventValidationError):
            return _problems_error(422, str(error), [vars(p) for p in error.problems])
        if isinstance(error, target_store.TargetNotFoundError):
            return _error(404, str(error))
        if isinstance(error, target_store.TargetConflictError):
            return _error(409, str(error))
        if isinstance(error, ValidationError):
            return _problems_error(422, target_store.describe_validation_error(error),
                                   target_store.validation_problems(error))
        if isinstance(error, target_store.TargetError | ConfigurationError | ValueError):
            return _error(422, str(error))
        raise error

    def invalid_body(error: ValidationError) -> JSONResponse:
        """The 422 of a body that is not the route's model (bounded, as every 422 of this API)."""
        return _problems_error(422, target_store.describe_validation_error(error, "request body"),
                               target_store.validation_problems(error, "body"))

    @router.post("/events", status_code=201)
    def publish_events(body: Annotated[Any, Body()], user: Publisher) -> JSONResponse:
        """Publish a batch of events as the signed-in user (``publisher = user:<name>``, never from the body); needs
        the ``publish`` right (403 otherwise, before the body is looked at).

        Limits: the body ≤ ``DEMOBANK_API_MAX_BODY_BYTES`` (5 MiB, else ``413`` before parsing); ≤ 500 events;
        each envelope ≤ ``DEMOBANK_EVENT_MAX_BYTES`` (256 KiB); all envelopes together ≤
        ``DEMOBANK_EVENT_BATCH_MAX_BYTES`` (4 MiB); only types the catalog opens to the API
        (``GET /event-types``: ``api_publishing``). Any problem refuses the whole batch: ``422`` (``409`` for an
        idempotency key this user already used for other data), at most ``DEMOBANK_API_MAX_PROBLEMS`` (100)
        problems listed, ``more_problems`` counting the rest.
        """
        from demobank.db.engine import session_scope
        from demobank.events.outbox import publish_many

        try:
            request = PublishRequest.model_validate(body)
        except ValidationError as error:
            return invalid_body(error)
        publisher = _publisher_of(user)
        if isinstance(publisher, JSONResponse):
            return publisher
        try:
            with session_scope(engine()) as session:
                ids = publish_many(session, [_with_time(event) for event in request.events], publisher=publisher,
                                   through_api=True)
        except (EventValidationError, ConfigurationError) as error:
            return translate(error)
        dispatch = wake_dispatcher(len(ids), "api") if ids else "nothing to dispatch"
        log.info("published %d event(s) through the API as %s", len(ids), publisher)
        return JSONResponse({"ids": ids, "count": len(ids), "dispatch": dispatch}, status_code=201)

    @router.get("/event-types")
    def event_types(user: Reader) -> list[dict[str, Any]]:
        from demobank.events.catalog import get_catalog

        catalog = get_catalog()
        return [{"type": name, "versions": catalog.versions(name), "example": (catalog.examples(name) or [None])[0],
                 "api_publishing": catalog.api_publishing(name), "published_by": catalog.get(name).published_by}
                for name in catalog.event_types()]

    @router.get("/workflows/schema")
    def workflow_schema(user: Reader) -> dict[str, Any]:
        """The Logic App definition's JSON Schema (also include/logic_apps/workflow.schema.json), for editors."""
        from demobank.logic_apps.definition import json_schema

        return json_schema()

    def may_start_dag_of(spec: target_store.TargetSpec | target_store.TargetView, manager: Any, user: Any,
                         why: str) -> None:
        """An ``airflow_dag`` target starts its DAG: the user must be allowed to trigger it (403 otherwise)."""
        if spec.kind == TargetKind.AIRFLOW_DAG.value:
            dag_id = str(spec.config.get("dag_id", ""))
            ensure_dag_access(manager, user, dag_id, "POST", f"{why} (an airflow_dag target for DAG {dag_id!r})")

    def existing_target_may_start_its_dag(target_id: int, manager: Any, user: Any, why: str) -> None:
        """The check of :func:`may_start_dag_of` for a stored target (404 for an unknown one, from the caller)."""
        may_start_dag_of(target_store.get_target(engine(), target_id), manager, user, why)

    @router.get("/targets")
    def list_targets(user: Reader) -> list[dict[str, Any]]:
        return [view.model_dump(mode="json") for view in target_store.list_targets(engine())]

    @router.post("/targets", status_code=201)
    def create_target(body: Annotated[dict[str, Any], Body()], user: Manager, manager: AuthManagerDep) -> JSONResponse:
        try:
            spec = target_store.TargetSpec.model_validate(body)
            may_start_dag_of(spec, manager, user, "save this target")
            view = target_store.create_target(engine(), spec, actor=user.get_name())
        except HTTPException:
            raise
        except Exception as error:  # noqa: BLE001 - translated to a 4xx or re-raised
            return translate(error)
        return JSONResponse(view.model_dump(mode="json"), status_code=201)

    @router.get("/targets/{target_id}")
    def get_target(target_id: int, user: Reader) -> JSONResponse:
        try:
            return JSONResponse(target_store.get_target(engine(), target_id).model_dump(mode="json"))
        except target_store.TargetError as error:
            return translate(error)

    @router.put("/targets/{target_id}")
    def update_target(target_id: int, body: Annotated[dict[str, Any], Body()], user: Manager,
                      manager: AuthManagerDep) -> JSONResponse:
        try:
            spec = target_store.TargetSpec.model_validate(body)
            may_start_dag_of(spec, manager, user, "save this target")
            view = target_store.update_target(engine(), target_id, spec, actor=user.get_name())
        except HTTPException:
            raise
        except Exception as error:  # noqa: BLE001 - translated to a 4xx or re-raised
            return translate(error)
        return JSONResponse(view.model_dump(mode="json"))

    def set_enabled(target_id: int, enabled: bool, user: Any, manager: Any) -> JSONResponse:
        try:
            if enabled:
                existing_target_may_start_its_dag(target_id, manager, user, "enable this target")
            view = target_store.set_enabled(engine(), target_id, enabled, actor=user.get_name())
        except target_store.TargetError as error:
            return translate(error)
        return JSONResponse(view.model_dump(mode="json"))

    @router.post("/targets/{target_id}/enable")
    def enable_target(target_id: int, user: Manager, manager: AuthManagerDep) -> JSONResponse:
        return set_enabled(target_id, True, user, manager)

    @router.post("/targets/{target_id}/disable")
    def disable_target(target_id: int, user: Manager, manager: AuthManagerDep) -> JSONResponse:
        return set_enabled(target_id, False, user, manager)

    @router.post("/targets/{target_id}/ping", status_code=202)
    def ping_target(target_id: int, user: Manager, manager: AuthManagerDep) -> JSONResponse:
        publisher = _publisher_of(user)
        if isinstance(publisher, JSONResponse):
            return publisher
        try:
            existing_target_may_start_its_dag(target_id, manager, user, "send a test event to this target")
            event_id = target_store.ping(engine(), target_id, sent_by="targets page", publisher=publisher,
                                         actor=user.get_name())
        except (target_store.TargetError, EventValidationError, ConfigurationError) as error:
            return translate(error)
        return JSONResponse({"event_id": event_id, "dispatch": wake_dispatcher(1, "ping")}, status_code=202)

    @router.get("/targets/{target_id}/audit")
    def target_audit(target_id: int, user: Reader,
                     limit: Annotated[int, Query(ge=1, le=audit.MAX_LIMIT)] = 100) -> JSONResponse:
        try:
            target_store.get_target(engine(), target_id)
        except target_store.TargetError as error:
            return translate(error)
        return JSONResponse(jsonable_encoder(audit.entries(engine(), target_id=target_id, limit=limit)))

    @router.get("/audit")
    def audit_trail(user: Reader, limit: Annotated[int, Query(ge=1, le=audit.MAX_LIMIT)] = 100) -> JSONResponse:
        return JSONResponse(jsonable_encoder(audit.entries(engine(), limit=limit)))

    @router.get("/targets/{target_id}/deliveries")
    def deliveries(target_id: int, user: Reader, status: EventDeliveryStatus | None = None,
                   limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> JSONResponse:
        try:
            rows = target_store.deliveries_of(engine(), target_id, status.value if status else None, limit)
        except target_store.TargetError as error:
            return translate(error)
        return JSONResponse([{key: value.isoformat() if isinstance(value, datetime) else value
                              for key, value in row.items()} for row in rows])

    @router.post("/targets/{target_id}/replay", status_code=202)
    def replay(target_id: int, body: Annotated[Any, Body()], user: Manager, manager: AuthManagerDep) -> JSONResponse:
        """Queue again, for this target, the events of ``event_type`` whose time is in ``[start, end)``.

        The window is read and queued in chunks; it may hold at most ``DEMOBANK_REPLAY_MAX_EVENTS`` (10,000) events
        of the type, else ``422`` with the count and the cap (``events``, ``limit``), and nothing is queued:
        narrow the window.
        """
        from demobank.events import catalog
        from demobank.events.replay import replay as queue_replay

        try:
            request = ReplayRequest.model_validate(body)
        except ValidationError as error:
            return invalid_body(error)
        if request.event_type not in catalog.event_types():
            return _error(422, f"event_type {request.event_type!r} is not in the catalog: use one of "
                               f"{', '.join(catalog.event_types())}")
        if request.start.tzinfo is None or request.end.tzinfo is None:
            return _error(422, "start and end need a UTC offset, e.g. 2026-11-26T00:00:00Z")
        try:
            existing_target_may_start_its_dag(target_id, manager, user, "replay events to this target")
        except target_store.TargetError as error:
            return translate(error)
        try:
            queued = queue_replay(engine(), target_id, request.event_type, request.start, request.end)
        except LookupError as error:
            return _error(404, str(error))
        except ReplayTooLargeError as error:
            return _error(422, str(error), events=error.count, limit=error.limit)
        except ValueError as error:
            return translate(error)
        record_replay(user.get_name(), target_id, request, queued)
        dispatch = wake_dispatcher(queued, "replay") if queued else "nothing to dispatch"
        return JSONResponse({"queued": queued, "dispatch": dispatch}, status_code=202)

    def record_replay(actor: str, target_id: int, request: ReplayRequest, queued: int) -> None:
        """The audit entry of a replay. The replay queues its window in transactions of its own (chunks), so the
        entry is written right after them, with the number they queued."""
        from demobank.db.engine import session_scope

        name = target_store.get_target(engine(), target_id).name
        with session_scope(engine()) as session:
            audit.record(session, actor=actor, action="replayed", target_id=target_id, target_name=name,
                         details={"event_type": request.event_type, "start": request.start, "end": request.end,
                                  "queued": queued})

    return router
