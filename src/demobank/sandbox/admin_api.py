"""The sandbox's own routes: read/clear what was recorded, and set the injected faults.

- ``GET /health`` → ``{"status": "ok"}``
- ``GET /messages?channel=sms|email|montecarlo&limit=100&to=...`` → ``{"count", "messages"}``, newest first
- ``DELETE /messages[?channel=...]`` → ``{"deleted": n}``
- ``GET /faults`` / ``PUT /faults`` (JSON :class:`~demobank.sandbox.faults.FaultConfig`) / ``DELETE /faults``;
  e.g. ``{"hang_rate": 0.1, "channels": ["sms"]}``: one Twilio send in ten is accepted, then never answered
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from demobank.sandbox.common import SandboxContext, json_response
from demobank.sandbox.faults import CHANNELS, FaultConfig
from demobank.sandbox.store import MAX_LIMIT


def _bad_request(message: str, **extra: Any) -> Response:
    return json_response({"detail": message, **extra}, 400)


def create_router(ctx: SandboxContext) -> APIRouter:
    """Build the admin routes.

    :param ctx: settings and store.
    :return: the router.
    """
    router = APIRouter(tags=["sandbox"])
    store = ctx.store

    @router.get("/health")
    async def health() -> Response:
        # sends_in_progress: send requests this worker is handling (a test waits for 0 before it trusts a lookup)
        return json_response({"status": "ok", "sends_in_progress": ctx.sends_in_progress()})

    @router.get("/messages")
    async def list_messages(
        channel: Annotated[str | None, Query(description="sms, email or montecarlo; all if omitted")] = None,
        limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 100,
        to: Annotated[str | None, Query(description="recipient filter (sms and email)")] = None,
    ) -> Response:
        if channel is not None and channel not in CHANNELS:
            return _bad_request(f"Unknown channel {channel!r}: use one of {list(CHANNELS)} or omit it.")
        if channel == "montecarlo" and to is not None:
            return _bad_request("The 'to' filter applies to the sms and email channels only.")
        rows = await run_in_threadpool(store.list_messages, channel, limit, to=to)
        return json_response({"channel": channel, "count": len(rows), "messages": rows})

    @router.delete("/messages")
    async def clear_messages(channel: str | None = None) -> Response:
        if channel is not None and channel not in CHANNELS:
            return _bad_request(f"Unknown channel {channel!r}: use one of {list(CHANNELS)} or omit it.")
        deleted = await run_in_threadpool(store.clear, channel)
        return json_response({"deleted": deleted})

    @router.get("/faults")
    async def get_faults() -> Response:
        config = await run_in_threadpool(store.get_faults)
        return json_response(config.to_dict())

    @router.put("/faults")
    async def put_faults(request: Request) -> Response:
        raw = await request.body()
        try:
            config = FaultConfig.model_validate_json(raw or b"{}")
        except ValidationError as exc:
            problems = [
                {"field": ".".join(str(p) for p in err["loc"]) or None, "message": err["msg"]}
                for err in exc.errors(include_url=False, include_context=False, include_input=False)
            ]
            return _bad_request(
                "Invalid fault settings: fix the listed fields. Accepted: error_rate 0..1, error_statuses from "
                "[429, 500, 502, 503, 504], latency_ms 0..60000, channels from ['sms', 'email', 'montecarlo'], "
                "retry_after seconds, hang_rate 0..1 (error_rate + hang_rate at most 1), hang_ms 1..300000, "
                "seed (an integer, for reproducible faults).",
                errors=problems,
            )
        await run_in_threadpool(store.set_faults, config)
        ctx.reset_random()
        return json_response(config.to_dict())

    @router.delete("/faults")
    async def reset_faults() -> Response:
        config = await run_in_threadpool(store.reset_faults)
        ctx.reset_random()
        return json_response(config.to_dict())

    return router
