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
