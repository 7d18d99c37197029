"""Request bodies of the suite's app are bounded: ``413`` before a body over the limit is parsed.

:class:`BodySizeLimit` is an ASGI middleware (the plugin app installs it with :func:`limit_request_bodies`). The
limit is ``DEMOBANK_API_MAX_BODY_BYTES`` (default 5 MiB, :mod:`demobank.limits`), read when the app is built.

* A request whose ``Content-Length`` is over the limit is answered ``413`` at once: the app never runs, nothing of
  the body is read into memory.
* A body without a length (``Transfer-Encoding: chunked``, a stream) or with a false one is counted as it arrives;
  the chunk that takes it over the limit ends the request with ``413`` (the app's parser only ever holds the limit).

The answer is JSON, ``{"detail": "..."}``, saying the size, the limit and what to do. It comes before
authentication (the middleware runs first): a stranger learns nothing but the limit, which the README documents.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from fastapi import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from demobank.limits import API_MAX_BODY_BYTES

log = logging.getLogger(__name__)

WHAT_TO_DO = ("send less per request: split an event batch into several requests (at most 500 events each), "
              "or put large content in storage and send its URI")


class BodyTooLargeError(HTTPException):
    """A request body went over the limit while it was read (a ``413`` for FastAPI, or for the middleware)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        super().__init__(413, _streamed_detail(limit))


def _declared_detail(size: int, limit: int) -> str:
    return (f"the request body is {size} bytes (Content-Length), over the limit of "
            f"{API_MAX_BODY_BYTES.describe(limit)}; nothing was read: {WHAT_TO_DO}")


def _streamed_detail(limit: int) -> str:
    return (f"the request body is over the limit of {API_MAX_BODY_BYTES.describe(limit)} (more than {limit} bytes "
            f"arrived; the request declared no length, or a smaller one); reading stopped there: {WHAT_TO_DO}")


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers") or ():
        if name.lower() == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None  # the server refuses a malformed length; if not, the body is counted
    return None


async def _answer_413(send: Send, detail: str) -> None:
    payload = json.dumps({"detail": detail}).encode()
    await send({"type": "http.response.start", "status": 413,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": payload})


class BodySizeLimit:
    """ASGI middleware: refuse request bodies over ``max_bytes`` with ``413`` (see the module docstring).

    :param app: the ASGI app to protect.
    :param max_bytes: the limit; ``DEMOBANK_API_MAX_BODY_BYTES`` (5 MiB by default) when not given.
    :raises ConfigurationError: when ``DEMOBANK_API_MAX_BODY_BYTES`` is malformed.
    """

    def __init__(self, app: ASGIApp, max_bytes: int | None = None) -> None:
        self.app = app
        self.max_bytes = API_MAX_BODY_BYTES.value() if max_bytes is None else max_bytes
        if self.max_bytes <= 0:
            raise ValueError(f"max_bytes must be a positive number of bytes, got {self.max_bytes}")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.max_bytes
        declared = _content_length(scope)
        if declared is not None and declared > limit:
            log.info("refused a %d-byte request body to %s (limit %d bytes)", declared, scope.get("path"), limit)
            await _answer_413(send, _declared_detail(declared, limit))
            return

        received = 0
        started = False

        async def counted_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    log.info("refused a streamed request body to %s after %d bytes (limit %d bytes)",
                             scope.get("path"), received, limit)
                    raise BodyTooLargeError(limit)
            return message

        async def watched_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counted_receive, watched_send)
        except BodyTooLargeError as error:  # raised where no FastAPI route turned it into its 413
            if started:
                raise
            await _answer_413(send, error.detail)


def limit_request_bodies(app: Any, max_bytes: int | None = None) -> None:
    """Install :class:`BodySizeLimit` on a Starlette/FastAPI app (outermost of its own middleware)."""
    app.add_middleware(BodySizeLimit, max_bytes=max_bytes)
