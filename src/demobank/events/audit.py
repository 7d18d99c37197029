"""The audit trail of event targets: who created, changed, enabled, disabled, pinged or replayed which target, when.

Each change to a target writes one entry through :func:`record` in the transaction of the change itself (the entry
exists if and only if the change was committed). An entry says:

* ``actor``: who: the signed-in user's name for the pages and the API, ``settings import`` for
  ``python -m demobank.events.targets import``, the component's name for automatic actions;
* ``action``: one of :data:`ACTIONS`;
* ``target_id`` and ``target_name`` (the name at the time: the trail outlives renames);
* ``details``: a small JSON object: for ``created`` the definition, for ``changed`` the changed fields only, each as
  ``{"before": …, "after": …}`` (:func:`changes`; ``config`` per key, e.g. ``config.aws_conn_id``), for ``replayed``
  the type, the window and how many deliveries were queued, for ``pinged`` the test event's id.

Read it with :func:`entries` (newest first), ``GET /demobank/api/v1/audit`` and ``GET
/demobank/api/v1/targets/{id}/audit``, or on the Targets page (each target's *History*).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from datetime import date, datetime
from typing import Any

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from demobank.db.models import TargetAuditEntry

ACTIONS: tuple[str, ...] = ("created", "changed", "enabled", "disabled", "pinged", "replayed", "requeued", "dismissed",
                            "paused", "resumed")
"""What an entry can record (``requeued``, ``dismissed``: a target's dead letters; ``paused``, ``resumed``: its
health, see :mod:`demobank.events.target_health`)."""

MAX_ACTOR_LENGTH = 250
MAX_LIMIT = 1000
SETTINGS_IMPORT_ACTOR = "settings import"
"""The actor of the changes made by ``python -m demobank.events.targets import`` (e.g. ``make run``'s seeding)."""


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    raise TypeError(f"audit details must be JSON values; got {type(value).__name__}: {value!r}")


def record(session: Session, *, actor: str, action: str, target_id: int | None, target_name: str,
           details: dict[str, Any]) -> None:
    """Add one entry to ``session`` (committed, or rolled back, with the change it records).

    :param details: JSON values (datetimes are written as ISO 8601 text).
    :raises ValueError: an empty or too long actor, or an action not in :data:`ACTIONS`.
    :raises TypeError: details that are not JSON values.
    """
    if not isinstance(actor, str) or not actor.strip():
        raise ValueError(f"an audit entry needs the actor (who did it); got {actor!r}")
    if len(actor) > MAX_ACTOR_LENGTH:
        raise ValueError(f"audit actor {actor[:40]!r}… is {len(actor)} characters long; at most {MAX_ACTOR_LENGTH}")
    if action not in ACTIONS:
        raise ValueError(f"unknown audit action {action!r}: use one of {', '.join(ACTIONS)}")
    stored = json.loads(json.dumps(dict(details), default=_jsonable))
    session.add(TargetAuditEntry(actor=actor, action=action, target_id=target_id, target_name=target_name,
                                 details=stored))


def changes(before: Mapping[str, Any], after: Mapping[str, Any], *,
            per_key: Iterable[str] = ("config",)) -> dict[str, dict[str, Any]]:
    """The fields that differ, each ``{"before": …, "after": …}``; the mappings named in ``per_key`` are compared
    key by key (``config.bus_name``), so that an entry shows what changed and not the whole definition."""
    nested = set(per_key)
    found: dict[str, dict[str, Any]] = {}
    for field in [*before, *(key for key in after if key not in before)]:
        old, new = before.get(field), after.get(field)
        if old == new:
            continue
        if field in nested and isinstance(old, Mapping) and isinstance(new, Mapping):
            for key in [*old, *(key for key in new if key not in old)]:
                if old.get(key) != new.get(key):
                    found[f"{field}.{key}"] = {"before": old.get(key), "after": new.get(key)}
        else:
            found[field] = {"before": old, "after": new}
    return found


def entries(engine: Engine, *, target_id: int | None = None, limit: int = 100) -> list[dict[str, Any]]:
    """The latest entries, newest first (of one target with ``target_id``).

    :return: ``[{"id", "at", "actor", "action", "target_id", "target_name", "details"}, …]`` (``at`` a UTC datetime).
    :raises ValueError: ``limit`` outside 1 to :data:`MAX_LIMIT`.
    """
    if not 1 <= limit <= MAX_LIMIT:
        raise ValueError(f"limit {limit} is out of range: ask for 1 to {MAX_LIMIT} audit entries")
    query = select(TargetAuditEntry).order_by(TargetAuditEntry.id.desc()).limit(limit)
    if target_id is not None:
        query = query.where(TargetAuditEntry.target_id == target_id)
    with Session(engine) as session:
        return [{"id": row.id, "at": row.at, "actor": row.actor, "action": row.action, "target_id": row.target_id,
                 "target_name": row.target_name, "details": dict(row.details or {})}
                for row in session.scalars(query)]


__all__ = ["ACTIONS", "SETTINGS_IMPORT_ACTOR", "changes", "entries", "record"]
