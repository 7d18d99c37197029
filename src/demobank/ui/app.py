"""The suite's web app, mounted by the Airflow plugin at ``/demobank`` in the API server.

Airflow gives plugin apps no authentication of their own, so the app depends on Airflow's
``requires_authenticated()`` for *every* route (a Bearer token from ``POST /auth/token`` or the UI's ``_token``
cookie, which the browser sends to pages shown in the UI's iframes). OpenAPI docs are off: they would be
the only unauthenticated routes.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Literal

from airflow.api_fastapi.core_api.security import GetUserDep, requires_authenticated
from fastapi import APIRouter, Depends, FastAPI, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.templating import Jinja2Templates

TEMPLATES = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))

Channel = Literal["sms", "email", "montecarlo"]

#: Pages the plugin adds to Airflow's UI (``external_views``), each served by this app.
PAGES: list[dict[str, str]] = [
    {"name": "Sandbox outbox", "path": "sandbox-outbox",
     "about": "What the local vendor sandbox received: SMS (Twilio), e-mail (SendGrid), Monte Carlo reports."},
]


def sandbox_enabled() -> bool:
    """The vendor sandbox is part of the local and test shapes only (``DEMOBANK_SANDBOX_ENABLED``)."""
    return os.environ.get("DEMOBANK_SANDBOX_ENABLED", "").lower() in {"1", "true", "yes"}


def _sandbox_store():
    from demobank.sandbox.store import SandboxStore, default_db_path

    return SandboxStore(default_db_path())


def create_app() -> FastAPI:
    """Build the authenticated app (every route behind Airflow's login)."""
    app = FastAPI(
        title="Demo Bank Connectivity Suite",
        dependencies=[Depends(requires_authenticated())],
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    pages = APIRouter()
    api = APIRouter(prefix="/api/v1")

    @pages.get("/", response_class=HTMLResponse)
    def index(request: Request) -> HTMLResponse:
        return TEMPLATES.TemplateResponse(request, "index.html", {"pages": PAGES})

    @pages.get("/sandbox-outbox", response_class=HTMLResponse)
    def sandbox_outbox(
        request: Request,
        channel: Channel = "sms",
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> HTMLResponse:
        if not sandbox_enabled():
            return TEMPLATES.TemplateResponse(
                request, "sandbox_disabled.html", {"channel": channel}, status_code=404
            )
        messages = _sandbox_store().list_messages(channel=channel, limit=limit)
        return TEMPLATES.TemplateResponse(
            request,
            "sandbox_outbox.html",
            {"channel": channel, "channels": ["sms", "email", "montecarlo"], "messages": messages, "limit": limit},
        )

    @api.get("/sandbox/messages")
    def sandbox_messages(
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
    def whoami(user: GetUserDep) -> dict[str, str]:
        return {"user": user.get_name()}

    app.include_router(pages)
    app.include_router(api)
    return app
