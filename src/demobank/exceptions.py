"""Exceptions of the suite. Each message says what was wrong, with which value, and what to do."""

from __future__ import annotations


class DemoBankError(Exception):
    """Base class of the suite's own errors."""


class ConfigurationError(DemoBankError, ValueError):
    """A connection, variable or setting is missing or malformed."""
