"""Request bodies over ``DEMOBANK_API_MAX_BODY_BYTES`` get ``413`` before they are parsed: over real HTTP (uvicorn),
with a declared length and with a chunked body, on the plugin's real app and on the Events API."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Request
from sqlalchemy import Engine

from demobank.limits import API_MAX_BODY_BYTES, MIB
from demobank.ui.body_limit import BodySizeLimit, limit_request_bodies
from tests.conftest import free_port
from tests.ui.conftest import Announcer, events_app, outbox_count, serving
from tests.ui.test_events_api import transaction

LIMIT_ENV = API_MAX_BODY_BYTES.env


def chunks(total: int, size: int = 64 * 1024) -> Iterator[bytes]:
    """A body of ``total`` bytes sent without a length (``Transfer-Encoding: chunked``)."""
    sent = 0
    while sent < total:
        part = min(size, total - sent)
        sent += part
        yield b" " * part


def batch_body(count: int) -> bytes:
    return json.dumps({"events": [transaction(n) for n in range(count)]}).encode()


@pytest.fixture
def real_app_url(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The plugin's real app (Airflow's authentication, the default limit of 5 MiB) served by uvicorn."""
    from airflow.api_fastapi import app as airflow_app

    from demobank.ui.app import create_app

    monkeypatch.delenv(LIMIT_ENV, raising=False)
    monkeypatch.setattr(airflow_app._AuthManagerState, "instance", None)
    airflow_app.create_auth_manager()
    port = free_port()
    with serving(create_app(), port, "body-limit-real-app"):
        yield f"http://127.0.0.1:{port}"


def test_the_plugin_app_refuses_a_body_over_5_mib_before_reading_it(real_app_url: str) -> None:
    size = 5 * MIB + 1
    with httpx.Client(base_url=real_app_url, timeout=30) as client:
        declared = client.post("/api/v1/events", content=b"x" * size, headers={"content-type": "application/json"})
        streamed = client.post("/api/v1/events", content=chunks(6 * MIB), headers={"content-type": "application/json"})
        under = client.post("/api/v1/events", content=batch_body(1), headers={"content-type": "application/json"})

    # Not JSON at all, and no credentials: only the size was looked at.
    assert declared.status_code == 413, declared.text
    assert declared.json() == {"detail": (
        f"the request body is {size} bytes (Content-Length), over the limit of {5 * MIB} bytes "
        f"({LIMIT_ENV}); nothing was read: send less per request: split an event batch into several requests (at "
        "most 500 events each), or put large content in storage and send its URI")}
    assert streamed.status_code == 413, streamed.text
    assert "request.body" not in streamed.text
    detail = streamed.json()["detail"]
    assert f"over the limit of {5 * MIB} bytes ({LIMIT_ENV})" in detail
    assert "declared no length" in detail and "split an event batch" in detail
    assert under.status_code == 401  # under the limit the app runs: Airflow's authentication answers


@pytest.fixture
def api_url(engine: Engine, announcer: Announcer, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The Events API (signed in) with the body limit at 64 KiB (from the environment), served by uvicorn."""
    monkeypatch.setenv(LIMIT_ENV, str(64 * 1024))
    app = events_app(engine, announcer)
    limit_request_bodies(app)
    port = free_port()
    with serving(app, port, "body-limit-events-api"):
        yield f"http://127.0.0.1:{port}"


def post(url: str, content: Any) -> httpx.Response:
    with httpx.Client(base_url=url, timeout=30) as client:
        return client.post("/api/v1/events", content=content, headers={"content-type": "application/json"})


def test_a_batch_under_the_limit_is_published_with_or_without_a_length(api_url: str, engine: Engine) -> None:
    body = batch_body(20)
    assert len(body) < 64 * 1024

    assert post(api_url, body).status_code == 201
    streamed = post(api_url, iter([body[:1000], body[1000:]]))

    assert streamed.status_code == 201, streamed.text
    assert streamed.json()["count"] == 20
    assert outbox_count(engine) == 40  # two batches of 20 (no idempotency keys)


def test_a_batch_over_the_limit_is_refused_and_nothing_is_published(api_url: str, engine: Engine,
                                                                    announcer: Announcer) -> None:
    body = batch_body(200)
    assert len(body) > 64 * 1024

    declared = post(api_url, body)
    streamed = post(api_url, iter([body[i:i + 8192] for i in range(0, len(body), 8192)]))

    assert declared.status_code == 413
    assert f"the request body is {len(body)} bytes (Content-Length), over the limit of 65536 bytes" in \
        declared.json()["detail"]
    assert streamed.status_code == 413
    assert "over the limit of 65536 bytes (DEMOBANK_API_MAX_BODY_BYTES)" in streamed.json()["detail"]
    assert outbox_count(engine) == 0
    assert announcer.calls == []


def test_the_limit_counts_bytes_not_parts_and_passes_the_body_through_intact() -> None:
    """The middleware on a bare app that echoes what it read: a body of exactly the limit arrives whole."""
    app = FastAPI()

    @app.post("/echo")
    async def echo(request: Request) -> dict[str, int]:
        return {"received": len(await request.body())}

    wrapped = BodySizeLimit(app, max_bytes=100_000)
    port = free_port()
    with serving(wrapped, port, "body-limit-echo"), httpx.Client(base_url=f"http://127.0.0.1:{port}") as client:
        exact = client.post("/echo", content=chunks(100_000, size=999))
        over = client.post("/echo", content=chunks(100_001, size=999))
        empty = client.post("/echo")

    assert exact.json() == {"received": 100_000}
    assert over.status_code == 413
    assert empty.json() == {"received": 0}


def test_a_malformed_limit_is_a_configuration_error(monkeypatch: pytest.MonkeyPatch) -> None:
    from demobank.exceptions import ConfigurationError

    monkeypatch.setenv(LIMIT_ENV, "5MB")
    with pytest.raises(ConfigurationError, match=rf"{LIMIT_ENV}='5MB' is not a positive whole number of bytes"):
        BodySizeLimit(FastAPI())
