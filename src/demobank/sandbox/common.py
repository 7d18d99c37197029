"""What every vendor router of the sandbox shares: settings, the store, and fault injection."""

from __future__ import annotations

import asyncio
import json
import random
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from demobank.sandbox.faults import FaultConfig
from demobank.sandbox.settings import SandboxSettings
from demobank.sandbox.store import SandboxStore

#: Reason phrases of the statuses the sandbox answers with.
REASONS: dict[int, str] = {
    400: "Bad Request",
    401: "Unauthorized",
    404: "Not Found",
    413: "Payload Too Large",
    415: "Unsupported Media Type",
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}


@dataclass(frozen=True)
class InjectedFault:
    """A fault decided for one request.

    :param status: the HTTP status to answer with.
    :param retry_after: seconds for ``Retry-After`` (429 and 503).
    """

    status: int
    retry_after: int

    def retry_headers(self) -> dict[str, str]:
        """Return ``Retry-After`` for a 429/503, nothing otherwise."""
        if self.status in (429, 503):
            return {"Retry-After": str(self.retry_after)}
        return {}


@dataclass(frozen=True)
class Hang:
    """A send to accept, record, and then never answer (see :attr:`FaultConfig.hang_rate`).

    :param seconds: the longest the connection is held (``hang_ms``).
    """

    seconds: float

    async def hold(self, request: Request, poll: float = 0.05) -> None:
        """Keep the request unanswered until its client disconnects (it gave up) or :attr:`seconds` pass.

        Only this request's coroutine waits: the server goes on serving every other request.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.seconds
        while loop.time() < deadline and not await request.is_disconnected():
            await asyncio.sleep(min(poll, max(0.0, deadline - loop.time())))


@dataclass(frozen=True)
class SandboxContext:
    """Settings and store of one sandbox app.

    :param settings: what the sandbox accepts.
    :param store: where it records.
    """

    settings: SandboxSettings
    store: SandboxStore
    _seeded: dict[str, random.Random] = field(default_factory=dict, compare=False, repr=False)
    _sends_in_progress: Counter[str] = field(default_factory=Counter, compare=False, repr=False)

    @contextmanager
    def sending(self, channel: str) -> Iterator[None]:
        """Count a send request of ``channel`` as in progress while it is handled (held hangs included)."""
        self._sends_in_progress[channel] += 1
        try:
            yield
        finally:
            self._sends_in_progress[channel] -= 1

    def sends_in_progress(self) -> dict[str, int]:
        """Send requests of this worker process being handled now, by channel (those with none left out)."""
        return {channel: count for channel, count in self._sends_in_progress.items() if count}

    def reset_random(self) -> None:
        """Forget the seeded generator: the next request with a ``seed`` starts its sequence again."""
        self._seeded.clear()

    def _random(self, config: FaultConfig) -> random.Random | None:
        if config.seed is None:
            return None
        key = config.model_dump_json()
        if key not in self._seeded:
            self._seeded.clear()
            self._seeded[key] = random.Random(config.seed)
        return self._seeded[key]

    async def enter(self, channel: str) -> InjectedFault | None:
        """Apply the configured latency for ``channel`` and decide whether this request fails.

        The settings are read from the SQLite file on every request so that every worker process agrees.

        :param channel: ``sms``, ``email`` or ``montecarlo``.
        :return: the fault to answer with, or None.
        """
        fault, _hang = await self.enter_send(channel, may_hang=False)
        return fault

    async def enter_send(self, channel: str, *, may_hang: bool = True) -> tuple[InjectedFault | None, Hang | None]:
        """Like :meth:`enter`, for a request that sends a message: it may also be picked to hang.

        :param channel: ``sms`` or ``email``.
        :param may_hang: False for requests that must not hang.
        :return: ``(fault, None)`` to refuse the request, ``(None, hang)`` to accept it and then hold it with
            :meth:`Hang.hold`, ``(None, None)`` to answer normally.
        """
        config = self.store.get_faults()
        if not config.applies_to(channel):
            return None, None
        if config.latency_ms:
            await asyncio.sleep(config.latency_ms / 1000)
        status, hangs = config.pick(self._random(config), may_hang=may_hang)
        if status is not None:
            return InjectedFault(status=status, retry_after=config.retry_after), None
        return None, Hang(config.hang_ms / 1000) if hangs else None


def json_response(content: Any, status_code: int = 200, headers: dict[str, str] | None = None) -> Response:
    """Return compact JSON (no FastAPI encoding pass: keeps the per-request overhead small).

    :param content: JSON-ready data.
    :param status_code: HTTP status.
    :param headers: extra headers.
    :return: the response.
    """
    return Response(
        content=json.dumps(content, separators=(",", ":")).encode("utf-8"),
        status_code=status_code,
        headers=headers,
        media_type="application/json",
    )
