"""The Events REST API of the plugin app (mounted under ``/demobank/api/v1``, behind Airflow's authentication).

* ``POST /events`` — publish up to 500 events in one transaction: ``{"events": [{"type", "data", "subject"?,
  "version"?, "time"?, "idempotency_key"?}, …]}`` → ``201 {"ids": [...], "count": n, "dispatch": ...}``.
  A batch with any problem is refused whole (``422``, every problem with its field), nothing is written.
* ``GET /event-types`` — the catalog: types, versions, an example each.
* ``GET|POST /targets``, ``GET|PUT /targets/{id}``, ``POST /targets/{id}/enable|disable|ping|replay``,
  ``GET /targets/{id}/deliveries`` — targets (see :mod:`demobank.events.targets`).

Every handler is a thin translation between HTTP and the Airflow-free functions of :mod:`demobank.events`.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Body, Query
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy import Engine

from demobank.db.models import EventDeliveryStatus
from demobank.events import targets as target_store
from demobank.events.catalog import EventValidationError
from demobank.events.outbox import MAX_BATCH_SIZE, EventConflictError
from demobank.exceptions import ConfigurationError

log = logging.getLogger(__name__)


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
            return _error(409, str(error), problems=[vars(p) for p in error.problems])
        if isinstance(error, EventValidationError):
            return _error(422, str(error), problems=[vars(p) for p in error.problems])
        if isinstance(error, target_store.TargetNotFoundError):
            return _error(404, str(error))
        if isinstance(error, target_store.TargetConflictError):
            return _error(409, str(error))
        if isinstance(error, ValidationError):
            return _error(422, target_store.describe_validation_error(error))
        if isinstance(error, target_store.TargetError | ConfigurationError | ValueError):
            return _error(422, str(error))
        raise error

    @router.post("/events", status_code=201)
    def publish_events(request: PublishRequest) -> JSONResponse:
        from demobank.db.engine import session_scope
        from demobank.events.outbox import publish_many

        try:
            with session_scope(engine()) as session:
                ids = publish_many(session, [_with_time(event) for event in request.events])
        except (EventValidationError, ConfigurationError) as error:
            return translate(error)
        dispatch = wake_dispatcher(len(ids), "api") if ids else "nothing to dispatch"
        log.info("published %d event(s) through the API", len(ids))
        return JSONResponse({"ids": ids, "count": len(ids), "dispatch": dispatch}, status_code=201)

    @router.get("/event-types")
    def event_types() -> list[dict[str, Any]]:
        from demobank.events import catalog

        return [{"type": name, "versions": catalog.versions(name), "example": (catalog.examples(name) or [None])[0]}
                for name in catalog.event_types()]

    @router.get("/targets")
    def list_targets() -> list[dict[str, Any]]:
        return [view.model_dump(mode="json") for view in target_store.list_targets(engine())]

    @router.post("/targets", status_code=201)
    def create_target(body: Annotated[dict[str, Any], Body()]) -> JSONResponse:
        try:
            view = target_store.create_target(engine(), target_store.TargetSpec.model_validate(body))
        except Exception as error:  # noqa: BLE001 - translated to a 4xx or re-raised
            return translate(error)
        return JSONResponse(view.model_dump(mode="json"), status_code=201)

    @router.get("/targets/{target_id}")
    def get_target(target_id: int) -> JSONResponse:
        try:
            return JSONResponse(target_store.get_target(engine(), target_id).model_dump(mode="json"))
        except target_store.TargetError as error:
            return translate(error)

    @router.put("/targets/{target_id}")
    def update_target(target_id: int, body: Annotated[dict[str, Any], Body()]) -> JSONResponse:
        try:
            spec = target_store.TargetSpec.model_validate(body)
            view = target_store.update_target(engine(), target_id, spec)
        except Exception as error:  # noqa: BLE001 - translated to a 4xx or re-raised
            return translate(error)
        return JSONResponse(view.model_dump(mode="json"))

    def set_enabled(target_id: int, enabled: bool) -> JSONResponse:
        try:
            return JSONResponse(target_store.set_enabled(engine(), target_id, enabled).model_dump(mode="json"))
        except target_store.TargetError as error:
            return translate(error)

    @router.post("/targets/{target_id}/enable")
    def enable_target(target_id: int) -> JSONResponse:
        return set_enabled(target_id, True)

    @router.post("/targets/{target_id}/disable")
    def disable_target(target_id: int) -> JSONResponse:
        return set_enabled(target_id, False)

    @router.post("/targets/{target_id}/ping", status_code=202)
    def ping_target(target_id: int) -> JSONResponse:
        try:
            event_id = target_store.ping(engine(), target_id, sent_by="targets page")
        except (target_store.TargetError, EventValidationError, ConfigurationError) as error:
            return translate(error)
        return JSONResponse({"event_id": event_id, "dispatch": wake_dispatcher(1, "ping")}, status_code=202)

    @router.get("/targets/{target_id}/deliveries")
    def deliveries(target_id: int, status: EventDeliveryStatus | None = None,
                   limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> JSONResponse:
        try:
            rows = target_store.deliveries_of(engine(), target_id, status.value if status else None, limit)
        except target_store.TargetError as error:
            return translate(error)
        return JSONResponse([{key: value.isoformat() if isinstance(value, datetime) else value
                              for key, value in row.items()} for row in rows])

    @router.post("/targets/{target_id}/replay", status_code=202)
    def replay(target_id: int, request: ReplayRequest) -> JSONResponse:
        from demobank.events import catalog
        from demobank.events.replay import replay as queue_replay

        if request.event_type not in catalog.event_types():
            return _error(422, f"event_type {request.event_type!r} is not in the catalog: use one of "
                               f"{', '.join(catalog.event_types())}")
        if request.start.tzinfo is None or request.end.tzinfo is None:
            return _error(422, "start and end need a UTC offset, e.g. 2026-11-26T00:00:00Z")
        try:
            queued = queue_replay(engine(), target_id, request.event_type, request.start, request.end)
        except LookupError as error:
            return _error(404, str(error))
        except ValueError as error:
            return translate(error)
        dispatch = wake_dispatcher(queued, "replay") if queued else "nothing to dispatch"
        return JSONResponse({"queued": queued, "dispatch": dispatch}, status_code=202)

    return router
