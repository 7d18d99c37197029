"""Fixtures for the plugin app's Events API and Targets page: a migrated SQLite file per test, a recording
``announce``, the events router on a bare FastAPI app (no Airflow auth: that is tested with the real app)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse
from fastapi.testclient import TestClient
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from demobank.db.engine import get_engine
from demobank.db.models import EventDelivery, OutboxEvent
from tests.db.conftest import _isolated_engines, sqlite_url  # noqa: F401 - fixtures (the first autouse)


@dataclass
class Announcer:
    """A stand-in for ``announce_outbox_update``: records each call and answers ``started``."""

    started: bool = False
    calls: list[dict[str, Any]] = field(default_factory=list)

    def __call__(self, extra: dict[str, Any]) -> bool:
        self.calls.append(dict(extra))
        return self.started


@pytest.fixture
def db_url(sqlite_url: str) -> str:  # noqa: F811
    """A fresh SQLite file migrated to head."""
    from demobank.db.migrate import upgrade

    upgrade(sqlite_url)
    return sqlite_url


@pytest.fixture
def engine(db_url: str) -> Engine:
    return get_engine(db_url)


@pytest.fixture
def announcer() -> Announcer:
    return Announcer()


def events_app(engine: Engine, announce: Callable[[dict[str, Any]], bool], *, with_page: bool = False) -> FastAPI:
    """The events router at ``/api/v1`` (or the page and router under ``/demobank``, as the plugin mounts them)."""
    from demobank.ui.app import TEMPLATES
    from demobank.ui.events_api import create_router

    app = FastAPI()
    router = create_router(lambda: engine, announce)
    if not with_page:
        app.include_router(router, prefix="/api/v1")
        return app

    @app.get("/demobank/targets", response_class=HTMLResponse)
    def targets_page(request: Request) -> HTMLResponse:
        return TEMPLATES.TemplateResponse(request, "targets.html", {})

    app.include_router(router, prefix="/demobank/api/v1")
    return app


@pytest.fixture
def client(engine: Engine, announcer: Announcer) -> Iterator[TestClient]:
    with TestClient(events_app(engine, announcer)) as test_client:
        yield test_client


def count_rows(engine: Engine, model: type[Any]) -> int:
    with Session(engine) as session:
        return session.scalar(select(func.count()).select_from(model)) or 0


def outbox_count(engine: Engine) -> int:
    return count_rows(engine, OutboxEvent)


def delivery_count(engine: Engine) -> int:
    return count_rows(engine, EventDelivery)


@dataclass
class LiveServer:
    url: str
    engine: Engine
    announcer: Announcer


@pytest.fixture
def live_server(engine: Engine, announcer: Announcer) -> Iterator[LiveServer]:
    """The page and the API served by uvicorn on a free port of 127.0.0.1, in a background thread."""
    import uvicorn

    from tests.conftest import free_port

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(events_app(engine, announcer, with_page=True), host="127.0.0.1",
                                           port=port, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, name="targets-page-uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            pytest.fail(f"uvicorn did not start on 127.0.0.1:{port} within 20 s")
        time.sleep(0.05)
    try:
        yield LiveServer(f"http://127.0.0.1:{port}", engine, announcer)
    finally:
        server.should_exit = True
        thread.join(timeout=15)
