"""The suite's health API (mounted under ``/demobank/api/v1`` by :func:`demobank.ui.app.create_app`).

* ``GET /health`` (read) — the suite's check (:mod:`demobank.health`): ``{"ok", "problems", "warnings",
  "summary": {"paused_targets", "new_dead_letters", "new_rejected_reports"}, "targets": [...], "reports": {...}}``.
  Always **HTTP 200**, also when ``ok`` is false: the answer describes the suite, the API itself works (alert on
  ``ok``, or on the ``suite_health_check`` DAG failing, or on ``demobank check``'s exit code).
* ``POST /targets/{id}/resume`` (manage) — clear a paused or failing target's pause and streak.
* ``POST /targets/{id}/dead-letters/requeue`` and ``…/dismiss`` (manage) — body ``{"event_ids"?: [...],
  "since"?: time, "until"?: time}`` (empty: every dead letter of the target).
* ``POST /run-reports/requeue`` (manage, body ``{"dag_id"?, "since"?}``) and ``POST /run-reports/dismiss``
  (manage, body ``{"dag_id"?}``) — rejected Monte Carlo run reports.

Actions are recorded in the audit trail under the signed-in user's name.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Body
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import Engine

from demobank.events.target_health import MAX_SELECTED_EVENT_IDS
from demobank.ui.permissions import Action, require

log = logging.getLogger(__name__)


class DeadLetterRequest(BaseModel):
    """Which dead letters of the target: every one (empty body), these ids, and/or a window on the event's time."""

    model_config = ConfigDict(extra="forbid")

    event_ids: Annotated[list[Annotated[str, Field(min_length=1, max_length=36)]] | None,
                         Field(min_length=1, max_length=MAX_SELECTED_EVENT_IDS)] = None
    since: datetime | None = None
    until: datetime | None = None


class ReportRequeueRequest(BaseModel):
    """Which rejected run reports to requeue: every one, one DAG's, those created since a time."""

    model_config = ConfigDict(extra="forbid")

    dag_id: Annotated[str | None, Field(min_length=1, max_length=250)] = None
    since: datetime | None = None


class ReportDismissRequest(BaseModel):
    """Which new rejected run reports to dismiss: every one, or one DAG's."""

    model_config = ConfigDict(extra="forbid")

    dag_id: Annotated[str | None, Field(min_length=1, max_length=250)] = None


def _suite_engine() -> Engine:
    from demobank.db.engine import get_engine

    return get_engine()


def _announce(extra: dict[str, Any]) -> bool:
    from demobank.events.outbox_asset import announce_outbox_update

    return announce_outbox_update(extra)


def _error(status: int, detail: str) -> JSONResponse:
    return JSONResponse({"detail": detail}, status_code=status)


def _user_name(user: Any) -> str:
    return str(user.get_name())


def create_router(engine_factory: Callable[[], Engine] = _suite_engine,
                  announce: Callable[[dict[str, Any]], bool] = _announce) -> APIRouter:
    """The health routes.

    :param engine_factory: returns the suite database's engine (tests pass their own).
    :param announce: starts ``events_dispatch`` at once after a requeue or resume (returns whether it could).
    """
    router = APIRouter()

    def dispatch_now(source: str) -> str:
        return "started" if announce({"source": source}) else "next sweep (within a minute)"

    @router.get("/health")
    def health(user: Annotated[Any, require(Action.READ)]) -> JSONResponse:
        from demobank.health import check_suite

        return JSONResponse(check_suite(engine_factory()).as_dict())

    @router.post("/targets/{target_id}/resume")
    def resume_target(target_id: int, user: Annotated[Any, require(Action.MANAGE)]) -> JSONResponse:
        from demobank.events.target_health import resume

        try:
            outcome = resume(engine_factory(), target_id, actor=_user_name(user))
        except LookupError as error:
            return _error(404, str(error))
        return JSONResponse({"target_id": outcome.target_id, "was_paused": outcome.was_paused,
                             "was_failing": outcome.was_failing, "message": outcome.describe(),
                             "dispatch": dispatch_now("resume") if outcome.enabled else "target disabled"})

    def dead_letters(target_id: int, request: DeadLetterRequest, user: Any, action: str) -> JSONResponse:
        from demobank.events.target_health import DeadLetterSelection, dismiss_dead_letters, requeue_dead_letters

        try:
            selection = DeadLetterSelection(tuple(request.event_ids) if request.event_ids else None, request.since,
                                            request.until)
            apply = requeue_dead_letters if action == "requeue" else dismiss_dead_letters
            outcome = apply(engine_factory(), target_id, selection, actor=_user_name(user))
        except LookupError as error:
            return _error(404, str(error))
        except ValueError as error:
            return _error(422, str(error))
        answer: dict[str, Any] = {"target_id": target_id, "count": outcome.count, "event_ids": outcome.event_ids,
                                  "message": outcome.describe()}
        if action == "requeue":
            answer["dispatch"] = dispatch_now("requeue") if outcome.count else "nothing to dispatch"
        return JSONResponse(answer)

    @router.post("/targets/{target_id}/dead-letters/requeue")
    def requeue_dead_letters(target_id: int, user: Annotated[Any, require(Action.MANAGE)],
                             request: Annotated[DeadLetterRequest | None, Body()] = None) -> JSONResponse:
        return dead_letters(target_id, request or DeadLetterRequest(), user, "requeue")

    @router.post("/targets/{target_id}/dead-letters/dismiss")
    def dismiss_dead_letters(target_id: int, user: Annotated[Any, require(Action.MANAGE)],
                             request: Annotated[DeadLetterRequest | None, Body()] = None) -> JSONResponse:
        return dead_letters(target_id, request or DeadLetterRequest(), user, "dismiss")

    @router.post("/run-reports/requeue")
    def requeue_reports(user: Annotated[Any, require(Action.MANAGE)],
                        request: Annotated[ReportRequeueRequest | None, Body()] = None) -> JSONResponse:
        from demobank.data_factory.report_outbox import requeue_rejected

        request = request or ReportRequeueRequest()
        if request.since is not None and request.since.tzinfo is None:
            return _error(422, "since needs a UTC offset, e.g. 2026-11-26T00:00:00Z")
        count = requeue_rejected(engine_factory(), dag_id=request.dag_id, since=request.since)
        log.info("%s requeued %d rejected run report(s) (dag_id %s)", _user_name(user), count, request.dag_id)
        return JSONResponse({"count": count, "message": f"{count} rejected Monte Carlo run report(s) requeued: the "
                                                        "report sweep sends them within 5 minutes"})

    @router.post("/run-reports/dismiss")
    def dismiss_reports(user: Annotated[Any, require(Action.MANAGE)],
                        request: Annotated[ReportDismissRequest | None, Body()] = None) -> JSONResponse:
        from demobank.data_factory.report_outbox import dismiss_rejected

        request = request or ReportDismissRequest()
        count = dismiss_rejected(engine_factory(), dag_id=request.dag_id)
        log.info("%s dismissed %d rejected run report(s) (dag_id %s)", _user_name(user), count, request.dag_id)
        return JSONResponse({"count": count, "message": f"{count} rejected Monte Carlo run report(s) dismissed "
                                                        "(they stay rejected, no longer new)"})

    return router


__all__ = ["DeadLetterRequest", "ReportDismissRequest", "ReportRequeueRequest", "create_router"]
