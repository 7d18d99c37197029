"""The suite's input limits, in one place: each with its environment variable, its default and what it bounds.

Every limit is read when it is used (a changed variable applies to the next request, no restart of a worker
needed, the API server reads it per request too) and must be a positive whole number; anything else is a
:class:`~demobank.exceptions.ConfigurationError` naming the variable, the value and the default. The README's
Events section lists them all (``tests/test_limits.py`` checks that it does).

=====================================  ===========  ============================================================
variable                               default      what it bounds
=====================================  ===========  ============================================================
``DEMOBANK_API_MAX_BODY_BYTES``        5 MiB        a request body of the suite's API (``413`` before parsing)
``DEMOBANK_EVENT_MAX_BYTES``           256 KiB      one event's CloudEvents envelope (EventBridge's entry limit)
``DEMOBANK_EVENT_BATCH_MAX_BYTES``     4 MiB        the envelopes of one published batch together
``DEMOBANK_API_MAX_PROBLEMS``          100          the problems listed in one ``422`` (the rest are counted)
``DEMOBANK_REPLAY_MAX_EVENTS``         10,000       the events one replay request may queue
``DEMOBANK_TARGET_MAX_EVENT_TYPES``    50           the patterns of a target's ``event_types``
``DEMOBANK_TARGET_MAX_CONDITIONS``     20           the conditions (fields) of a target's ``match``
``DEMOBANK_TARGET_MAX_VALUES``         100          the values of one list condition of a ``match``
``DEMOBANK_TARGET_MAX_TEXT_LENGTH``    200          characters of a pattern, a field path or a value in a filter
``DEMOBANK_TARGET_MAX_PATH_DEPTH``     8            the parts of a dotted field path (``merchant.country``: 2)
=====================================  ===========  ============================================================

The 500 events of a batch (``demobank.events.outbox.MAX_BATCH_SIZE``) are fixed: the Data Factory publishes in
batches of that size.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeVar

from demobank.exceptions import ConfigurationError

KIB = 1024
MIB = 1024 * KIB


@dataclass(frozen=True)
class Limit:
    """One input limit.

    :ivar env: the environment variable that sets it.
    :ivar default: its value when the variable is unset or empty.
    :ivar unit: what it counts (``bytes``, ``events``, ``problems``, ``characters``, …), for messages.
    :ivar about: what it bounds, for messages and the docs.
    """

    env: str
    default: int
    unit: str
    about: str

    def value(self) -> int:
        """The limit in force: the variable's value, or the default.

        :raises ConfigurationError: when the variable is set to anything but a positive whole number.
        """
        raw = os.environ.get(self.env, "").strip()
        if not raw:
            return self.default
        try:
            value = int(raw)
        except ValueError:
            value = 0
        if value <= 0:
            raise ConfigurationError(
                f"{self.env}={raw!r} is not a positive whole number of {self.unit}: it sets {self.about}; set it "
                f"to e.g. {self.default} (the default) or unset it."
            )
        return value

    def describe(self, value: int | None = None) -> str:
        """``"4194304 bytes (DEMOBANK_EVENT_BATCH_MAX_BYTES)"``: the limit as messages name it."""
        return f"{self.value() if value is None else value} {self.unit} ({self.env})"


API_MAX_BODY_BYTES = Limit("DEMOBANK_API_MAX_BODY_BYTES", 5 * MIB, "bytes", "the largest request body of the API")
EVENT_MAX_BYTES = Limit("DEMOBANK_EVENT_MAX_BYTES", 256 * KIB, "bytes",
                        "the largest event (its CloudEvents envelope as UTF-8 JSON)")
BATCH_MAX_BYTES = Limit("DEMOBANK_EVENT_BATCH_MAX_BYTES", 4 * MIB, "bytes",
                        "the largest batch of events (its envelopes together)")
MAX_PROBLEMS = Limit("DEMOBANK_API_MAX_PROBLEMS", 100, "problems", "how many problems one 422 answer lists")
REPLAY_MAX_EVENTS = Limit("DEMOBANK_REPLAY_MAX_EVENTS", 10_000, "events", "how many events one replay may queue")
TARGET_MAX_EVENT_TYPES = Limit("DEMOBANK_TARGET_MAX_EVENT_TYPES", 50, "patterns",
                               "how many patterns a target's event_types may have")
TARGET_MAX_CONDITIONS = Limit("DEMOBANK_TARGET_MAX_CONDITIONS", 20, "conditions",
                              "how many field conditions a target's match may have")
TARGET_MAX_VALUES = Limit("DEMOBANK_TARGET_MAX_VALUES", 100, "values",
                          "how many values one list condition of a target's match may have")
TARGET_MAX_TEXT_LENGTH = Limit("DEMOBANK_TARGET_MAX_TEXT_LENGTH", 200, "characters",
                               "the longest pattern, field path or value of a target's filter")
TARGET_MAX_PATH_DEPTH = Limit("DEMOBANK_TARGET_MAX_PATH_DEPTH", 8, "parts",
                              "how deep a field path of a target's match may reach (merchant.country: 2 parts)")

ALL_LIMITS: tuple[Limit, ...] = (
    API_MAX_BODY_BYTES, EVENT_MAX_BYTES, BATCH_MAX_BYTES, MAX_PROBLEMS, REPLAY_MAX_EVENTS, TARGET_MAX_EVENT_TYPES,
    TARGET_MAX_CONDITIONS, TARGET_MAX_VALUES, TARGET_MAX_TEXT_LENGTH, TARGET_MAX_PATH_DEPTH,
)
"""Every limit (the README lists each one)."""


_Item = TypeVar("_Item")


def limited(items: Sequence[_Item], limit: Limit = MAX_PROBLEMS) -> tuple[list[_Item], int]:
    """The first ``DEMOBANK_API_MAX_PROBLEMS`` (or ``limit``) items, and how many were left out."""
    cap = limit.value()
    return list(items[:cap]), max(0, len(items) - cap)
