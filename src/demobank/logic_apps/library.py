"""Every function a Logic App can call: the suite's own (:mod:`demobank.logic_apps.builtin_functions`), loaded
here, and found by name."""

from __future__ import annotations

import demobank.logic_apps.builtin_functions  # noqa: F401 - registers the suite's functions
from demobank.logic_apps.functions import REGISTRY, FunctionError, FunctionSpec


def registered() -> dict[str, FunctionSpec]:
    """Every registered function, by name."""
    return dict(REGISTRY)


def get(name: str) -> FunctionSpec:
    """The function registered as ``name``; :class:`FunctionError` naming the registered ones if there is none."""
    if name not in REGISTRY:
        raise FunctionError(f"no function {name!r} is registered (registered: {', '.join(sorted(REGISTRY))})")
    return REGISTRY[name]


__all__ = ["get", "registered"]
