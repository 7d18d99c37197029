"""Fault injection settings of the sandbox (error rate, statuses, latency), shared through SQLite."""

from __future__ import annotations

import random
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

#: The channels (vendor APIs) a fault can apply to.
CHANNELS: tuple[str, ...] = ("sms", "email", "montecarlo")
#: The HTTP statuses the sandbox can inject; each vendor answers them with its own error body.
FAULT_STATUSES: frozenset[int] = frozenset({429, 500, 502, 503, 504})


class FaultConfig(BaseModel):
    """What ``PUT /faults`` accepts and ``GET /faults`` returns.

    :param error_rate: share of vendor requests (0.0 to 1.0) answered with an injected error.
    :param error_statuses: statuses to pick from (uniformly) for an injected error.
    :param latency_ms: extra delay applied to every request on the faulted channels.
    :param channels: the vendor APIs the faults apply to (``sms``, ``email``, ``montecarlo``).
    :param retry_after: seconds announced in ``Retry-After`` on an injected 429 or 503.
    """

    model_config = ConfigDict(extra="forbid")

    error_rate: float = Field(default=0.0, ge=0.0, le=1.0)
    error_statuses: list[int] = Field(default_factory=lambda: [429, 500])
    latency_ms: int = Field(default=0, ge=0, le=60_000)
    channels: list[str] = Field(default_factory=lambda: list(CHANNELS))
    retry_after: int = Field(default=1, ge=0, le=3600)

    @field_validator("error_statuses")
    @classmethod
    def _known_statuses(cls, value: list[int]) -> list[int]:
        unknown = sorted(set(value) - FAULT_STATUSES)
        if unknown:
            raise ValueError(
                f"cannot inject status(es) {unknown}; use some of {sorted(FAULT_STATUSES)} "
                "(each vendor answers them with its own error body)"
            )
        return value

    @field_validator("channels")
    @classmethod
    def _known_channels(cls, value: list[str]) -> list[str]:
        unknown = sorted(set(value) - set(CHANNELS))
        if unknown:
            raise ValueError(f"unknown channel(s) {unknown}; use some of {list(CHANNELS)}")
        return value

    @model_validator(mode="after")
    def _statuses_when_erroring(self) -> FaultConfig:
        if self.error_rate > 0 and not self.error_statuses:
            raise ValueError(
                f"error_rate is {self.error_rate} but error_statuses is empty: list at least one status "
                f"from {sorted(FAULT_STATUSES)}, or set error_rate to 0"
            )
        return self

    @property
    def active(self) -> bool:
        """Whether this configuration changes anything (an error rate or a latency)."""
        return self.error_rate > 0 or self.latency_ms > 0

    def applies_to(self, channel: str) -> bool:
        """Whether the faults apply to ``channel``.

        :param channel: ``sms``, ``email`` or ``montecarlo``.
        :return: True if the channel is listed and something is configured.
        """
        return self.active and channel in self.channels

    def pick_status(self, rng: random.Random | None = None) -> int | None:
        """Decide whether this request fails, and with which status.

        :param rng: random source (the module's by default).
        :return: the status to inject, or None to let the request through.
        """
        if self.error_rate <= 0:
            return None
        source = rng or random
        if self.error_rate >= 1.0 or source.random() < self.error_rate:
            return source.choice(self.error_statuses)
        return None

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON-ready form.

        :return: a plain dict.
        """
        return self.model_dump()


NO_FAULTS = FaultConfig(error_rate=0.0, latency_ms=0)
