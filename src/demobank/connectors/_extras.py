"""Reading connection extras the way Airflow's UI may store them (plain or ``extra__<type>__`` prefixed)."""

from __future__ import annotations

from typing import Any


def extra_value(extras: dict[str, Any], conn_type: str, name: str, default: Any = None) -> Any:
    """Return the extra ``name`` of a connection, accepting the legacy ``extra__<type>__<name>`` key."""
    for key in (name, f"extra__{conn_type}__{name}"):
        value = extras.get(key)
        if value not in (None, ""):
            return value
    return default


def seconds_extra(extras: dict[str, Any], conn_type: str, conn_id: str, name: str, default: float,
                  *, minimum: float = 0.0) -> float:
    """Return the extra ``name`` as a number of seconds, ``default`` when it is not set.

    :raises ConfigurationError: when the value is not a number of at least ``minimum`` seconds.
    """
    from demobank.exceptions import ConfigurationError

    value = extra_value(extras, conn_type, name, default)
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        seconds = float("nan")
    if not seconds >= minimum:  # also refuses NaN
        raise ConfigurationError(
            f"connection {conn_id!r}: the extra {name!r} must be a number of seconds (at least {minimum:g}), "
            f"got {value!r}; fix it in Admin → Connections"
        )
    return seconds
