"""Fault injection settings of the sandbox (error rate, statuses, latency, hangs), shared through SQLite."""

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
    :param hang_rate: share of *send* requests (Twilio message create, SendGrid mail send) that are accepted,
        then never answered: the message is recorded exactly as if accepted (listed by ``GET /messages``, Twilio's
        message list and SendGrid's Email Activity), then the connection is held without a response until the
        client gives up (closes it) or ``hang_ms`` pass. Lookups (lists, fetches, Email Activity) never hang.
        A request is refused with ``error_rate``, hangs with ``hang_rate`` or goes through, so the two add up to
        at most 1.
    :param hang_ms: the longest a hanging request is held (so the server can shut down); a client that waits
        longer gets the normal answer, late.
    :param seed: draw the faults from a random generator seeded so (in each sandbox process, from the moment the
        settings are put): the n-th faulted request gets the same fault in every run, for reproducible tests.
    """

    model_config = ConfigDict(extra="forbid")

    error_rate: float = Field(default=0.0, ge=0.0, le=1.0)
    error_statuses: list[int] = Field(default_factory=lambda: [429, 500])
    latency_ms: int = Field(default=0, ge=0, le=60_000)
    channels: list[str] = Field(default_factory=lambda: list(CHANNELS))
    retry_after: int = Field(default=1, ge=0, le=3600)
    hang_rate: float = Field(default=0.0, ge=0.0, le=1.0)
    hang_ms: int = Field(default=30_000, ge=1, le=300_000)
    seed: int | None = None

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
        if self.error_rate + self.hang_rate > 1.0:
            raise ValueError(
                f"error_rate ({self.error_rate}) and hang_rate ({self.hang_rate}) add up to more than 1: a request "
                "is either refused, left hanging or let through; lower one of them"
            )
        return self

    @property
    def active(self) -> bool:
        """Whether this configuration changes anything (an error rate, a hang rate or a latency)."""
        return self.error_rate > 0 or self.hang_rate > 0 or self.latency_ms > 0

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
        status, _hangs = self.pick(rng)
        return status

    def pick(self, rng: random.Random | None = None, *, may_hang: bool = False) -> tuple[int | None, bool]:
        """Decide what happens to one request: refused with a status, left hanging, or let through.

        :param rng: random source (the module's by default).
        :param may_hang: whether the request is a send (only sends hang).
        :return: ``(status, False)`` to refuse it, ``(None, True)`` to accept it and never answer, ``(None, False)``
            to let it through.
        """
        if self.error_rate <= 0 and (self.hang_rate <= 0 or not may_hang):
            return None, False
        source = rng or random
        draw = source.random()
        if self.error_rate >= 1.0 or draw < self.error_rate:
            return source.choice(self.error_statuses), False
        return None, may_hang and draw < self.error_rate + self.hang_rate

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON-ready form.

        :return: a plain dict.
        """
        return self.model_dump()


NO_FAULTS = FaultConfig(error_rate=0.0, latency_ms=0)
