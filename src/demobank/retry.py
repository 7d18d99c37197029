"""How the suite retries transient errors of outside services: one policy for every connector and target, and what
a failed send tells about its message."""

from __future__ import annotations

import random
from dataclasses import dataclass
from enum import StrEnum


@dataclass(frozen=True)
class RetryPolicy:
    """Up to ``attempts`` calls, waiting with exponential backoff (``initial`` doubling up to ``maximum`` seconds)
    plus up to ``jitter`` seconds at random; callers wait at least what a ``Retry-After`` asks."""

    attempts: int = 6
    initial: float = 0.5
    maximum: float = 30.0
    jitter: float = 0.5

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError(f"attempts must be at least 1, got {self.attempts}")

    def delay(self, retry: int, retry_after: float | None = None) -> float:
        """Seconds to wait before retry number ``retry`` (1 for the first): the backoff with jitter, at least
        ``retry_after`` (what the provider asked), at most ``max(maximum, 60)``."""
        backoff = min(self.maximum, self.initial * 2 ** max(0, retry - 1)) + random.uniform(0, self.jitter)
        return min(max(backoff, retry_after or 0.0), max(self.maximum, 60.0))


class SendOutcome(StrEnum):
    """What a failed send request tells about the message it carried (every hook classifies its errors so).

    * ``not_sent``: the request provably never reached the provider (connection refused, DNS failure, connect
      timeout, TLS handshake failure, the body not fully written): send it again directly.
    * ``refused``: the provider answered that it did not accept it (a 4xx; a 429 asks to send again later).
    * ``unknown``: the provider may have accepted it (a read timeout, a connection reset after the request was
      written, a 5xx): look it up at the provider before any resend.
    """

    NOT_SENT = "not_sent"
    REFUSED = "refused"
    UNKNOWN = "unknown"
