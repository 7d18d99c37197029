"""How the suite retries transient errors of outside services: one policy for every connector and target."""

from __future__ import annotations

from dataclasses import dataclass


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
