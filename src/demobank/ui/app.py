"""The suite's web app, mounted by the Airflow plugin at ``/demobank`` in the API server.

Airflow gives plugin apps no authentication of their own, so the app depends on Airflow's
``requires_authenticated()`` for *every* route (a Bearer token from ``POST /auth/token`` or the UI's ``_token``
cookie, which the browser sends to pages shown in the UI's iframes), and every route also checks the signed-in
user's rights with one of :mod:`demobank.ui.permissions`' dependencies (``read``, ``publish``, ``manage``; a test
enumerates the routes and fails for one without). ``GET /api/v1/whoami`` tells the pages what the user may do, so
that they hide or disable the rest (the API still checks). OpenAPI docs are off: they would be the only
unauthenticated routes.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from typing import Annotated, Any, Literal

from airflow.api_fastapi.core_api.security import requires_authenticated
from fastapi import APIRouter, Depends, FastAPI, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse

from demobank.db.engine import get_engine
from demobank.ui.body_limit import limit_request_bodies
from demobank.ui.events_api import create_router as create_events_router
from demobank.ui.health_api import create_router as create_health_router
from demobank.ui.permissions import Action, AuthManagerDep, permissions_of, question_of, require
from demobank.ui.quality_api import airflow_dag_info
from demobank.ui.quality_api import create_router as create_quality_router
from demobank.ui.templating import TEMPLATES

Channel = Literal["sms", "email", "montecarlo"]

#: Pages the plugin adds to Airflow's UI (``external_views``), each served by this app.
PAGES: list[dict[str, str]] = [
    {"name": "Event targets", "path": "targets",
     "about": "Where the bank's events go: EventBridge buses and DAGs; add, edit, disable, test, replay."},
    {"name": "Sandbox outbox", "path": "sandbox-outbox",
     "about": "What the local vendor sandbox received: SMS (Twilio), e-mail (SendGrid), Monte Carlo reports."},
]


def sandbox_enabled() -> bool:
    """The vendor sandbox is part of the local and test shapes only (``DEMOBANK_SANDBOX_ENABLED``)."""
    return os.environ.get("DEMOBANK_SANDBOX_ENABLED", "").lower() in {"1", "true", "yes"}


def _sandbox_store() -> Any:
    from demobank.sandbox.settings import SandboxSettings
    from demobank.sandbox.store import SandboxStore

    return SandboxStore(SandboxSettings.from_env().db_path)


def outbox_row(message: dict[str, Any]) -> dict[str, str]:
    """What the outbox page shows of one recorded SMS, e-mail or Monte Carlo call."""
    channel = message["channel"]
    if channel == "sms":
        return {"received_at": message["created_at"], "id": message["sid"], "to_display": message["to"],
                "summary": f"from {message['from'] or message['messaging_service_sid']}", "content": message["body"]}
    if channel == "email":
        request = message["request"]
        contents = request.get("content") or []
        body = contents[0].get("value", "") if contents else f"template {request.get('template_id')}"
        return {"received_at": message["created_at"], "id": message["message_id"],
                "to_display": ", ".join(message["recipients"]), "summary": message["subject"] or "", "content": body}
    return {"received_at": message["created_at"], "id": str(message["id"]), "to_display": message["endpoint"],
            "summary": message["operation"] or "", "content": json.dumps(message["payload"], indent=2)[:4000]}


Reader = Annotated[Any, require(Action.READ)]
"""A route parameter: the signed-in user, who may read the suite's pages and API."""


def whoami_of(manager: Any, user: Any) -> dict[str, Any]:
    """The signed-in user, what they may do (``permissions_of``), and for each action what it needs (for the pages'
    notes on what is missing)."""
    return {"user": user.get_name(), "permissions": permissions_of(manager, user),
            "needs": {action.value: {"action": question_of(action).action, "permission": question_of(action).permission}
                      for action in Action}}


def create_app(*, engine_factory: Callable[[], Any] = get_engine, announce: Callable[..., bool] | None = None,
               dag_lookup: Callable[[str], Any] = airflow_dag_info) -> FastAPI:
    """Build the authenticated app (every route behind Airflow's login and a permission check).

    :param engine_factory: the suite database's engine (tests pass their own).
    :param announce: wakes the dispatcher after a publish (see :func:`demobank.ui.events_api.create_router`).
    :param dag_lookup: what Airflow knows of a DAG id (see :func:`demobank.ui.quality_api.create_router`).
    """
    app = FastAPI(
        title="Demo Bank Connectivity Suite",
        dependencies=[Depends(requires_authenticated())],
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    limit_request_bodies(app)  # 413 for a body over DEMOBANK_API_MAX_BODY_BYTES, before it is parsed
    pages = APIRouter()
    api = APIRouter(prefix="/api/v1")

    @pages.get("/", response_class=HTMLResponse)
    def index(request: Request, user: Reader) -> HTMLResponse:
        return TEMPLATES.TemplateResponse(request, "index.html", {"pages": PAGES})

    @pages.get("/sandbox-outbox", response_class=HTMLResponse)
    def sandbox_outbox(
        request: Request,
        user: Reader,
        channel: Channel = "sms",
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> HTMLResponse:
        if not sandbox_enabled():
            return TEMPLATES.TemplateResponse(
                request, "sandbox_disabled.html", {"channel": channel}, status_code=404
            )
        messages = [outbox_row(m) for m in _sandbox_store().list_messages(channel=channel, limit=limit)]
        return TEMPLATES.TemplateResponse(
            request,
            "sandbox_outbox.html",
            {"channel": channel, "channels": ["sms", "email", "montecarlo"], "messages": messages, "limit": limit},
        )

    @api.get("/sandbox/messages")
    def sandbox_messages(
        user: Reader,
        channel: Channel = "sms",
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> JSONResponse:
        if not sandbox_enabled():
            return JSONResponse(
                {"detail": "the vendor sandbox is not enabled here (set DEMOBANK_SANDBOX_ENABLED=true)"},
                status_code=404,
            )
        return JSONResponse(_sandbox_store().list_messages(channel=channel, limit=limit))

    @api.get("/whoami")
    def whoami(user: Reader, manager: AuthManagerDep) -> dict[str, Any]:
        return whoami_of(manager, user)

    @pages.get("/targets", response_class=HTMLResponse)
    def targets_page(request: Request, user: Reader) -> HTMLResponse:
        return TEMPLATES.TemplateResponse(request, "targets.html", {})

    api.include_router(create_events_router(engine_factory, announce))
    # /api/v1/health, resume, requeue and dismiss (health_api.py)
    api.include_router(create_health_router(engine_factory, **({"announce": announce} if announce else {})))
    app.include_router(pages)
    app.include_router(api)
    # /data-quality/{dag_id} and /api/v1/data-quality/… (full paths)
    app.include_router(create_quality_router(engine_factory, dag_lookup))

    @app.api_route("/{path:path}", methods=["GET", "POST", "PUT", "PATCH", "DELETE"], include_in_schema=False)
    def not_found(path: str, user: Reader) -> JSONResponse:
        # Registered last, behind the app-wide authentication: an unknown path answers 401 to a stranger, 403 to a
        # user without the suite's read permission and 404 only to a reader, so nothing about the app's routes is
        # revealed without it.
        return JSONResponse({"detail": f"no page or API route at /demobank/{path}"}, status_code=404)

    return app
