"""What every vendor router of the sandbox shares: settings, the store, and fault injection."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any

from starlette.responses import Response

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
class SandboxContext:
    """Settings and store of one sandbox app.

    :param settings: what the sandbox accepts.
    :param store: where it records.
    """

    settings: SandboxSettings
    store: SandboxStore

    async def enter(self, channel: str) -> InjectedFault | None:
        """Apply the configured latency for ``channel`` and decide whether this request fails.

        The settings are read from the SQLite file on every request so that every worker process agrees.

        :param channel: ``sms``, ``email`` or ``montecarlo``.
        :return: the fault to answer with, or None.
        """
        config = self.store.get_faults()
        if not config.applies_to(channel):
            return None
        if config.latency_ms:
            await asyncio.sleep(config.latency_ms / 1000)
        status = config.pick_status()
        if status is None:
            return None
        return InjectedFault(status=status, retry_after=config.retry_after)


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
