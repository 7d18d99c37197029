"""The delivery ledger: what was already accepted by a provider, so a retried, cleared or re-run task never sends
the same message twice.

A delivery is keyed by its *idempotency key*: the channel and a hash of (DAG id, run id, task id, map index,
recipient). Before a message is sent, its row is claimed as ``pending``; as soon as the provider accepts it, the
row becomes ``accepted`` with the provider's message id. A later attempt that finds ``accepted`` skips the
message; one that finds ``pending`` from an earlier attempt cannot know whether the provider got it (the attempt
died between the two writes), so the caller reconciles with the provider before sending again.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Engine

from demobank.db.engine import session_scope
from demobank.db.models import Delivery, DeliveryStatus, utcnow

_CHUNK = 500


@dataclass(frozen=True)
class DeliveryScope:
    """Where a send happens: the task instance whose retries must not send twice."""

    dag_id: str
    run_id: str
    task_id: str
    map_index: int = -1

    def key(self, channel: str, recipient: str) -> str:
        """The idempotency key of one message to ``recipient`` on ``channel`` from this task instance."""
        material = json.dumps([self.dag_id, self.run_id, self.task_id, self.map_index, recipient.lower()])
        return f"{channel}:{hashlib.sha256(material.encode()).hexdigest()}"


@dataclass(frozen=True)
class LedgerEntry:
    """What the ledger knows of one key when a send starts."""

    key: str
    status: str
    provider_message_id: str | None
    attempts: int
    """How many times a send of this key has started (0: the provider was never called)."""
    created_at: datetime | None = None

    @property
    def may_have_been_sent(self) -> bool:
        """An earlier attempt called the provider but did not record the answer: reconcile before resending."""
        return self.status == DeliveryStatus.PENDING.value and self.attempts > 0


class DeliveryLedger:
    """Reads and writes the ``deliveries`` table of the suite's database."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def _insert(self) -> Any:  # a dialect-specific INSERT construct
        return (pg_insert if self.engine.dialect.name == "postgresql" else sqlite_insert)(Delivery)

    def claim(
        self,
        scope: DeliveryScope,
        channel: str,
        provider: str,
        recipients: Sequence[tuple[str, str]],
    ) -> dict[str, LedgerEntry]:
        """Record a ``pending`` row for each (key, masked recipient) not yet in the ledger; return every key's state.

        Concurrent claims of the same key are safe: the unique key lets exactly one insert win.
        """
        entries: dict[str, LedgerEntry] = {}
        now = utcnow()
        keys = [key for key, _ in recipients]
        with session_scope(self.engine) as session:
            rows = [
                {"idempotency_key": key, "channel": channel, "provider": provider, "recipient_masked": masked,
                 "status": DeliveryStatus.PENDING.value, "dag_id": scope.dag_id, "run_id": scope.run_id,
                 "task_id": scope.task_id, "attempts": 0, "created_at": now, "updated_at": now}
                for key, masked in recipients
            ]
            if rows:
                # One statement, many parameter sets: SQLAlchemy batches them ("insertmanyvalues").
                statement = self._insert().on_conflict_do_nothing(index_elements=["idempotency_key"])
                session.execute(statement, rows)
            for start in range(0, len(keys), _CHUNK):
                chunk_keys = keys[start:start + _CHUNK]
                found = session.execute(
                    select(Delivery.idempotency_key, Delivery.status, Delivery.provider_message_id,
                           Delivery.attempts, Delivery.created_at).where(Delivery.idempotency_key.in_(chunk_keys))
                ).all()
                for key, status, message_id, attempts, created_at in found:
                    entries[key] = LedgerEntry(key, status, message_id, attempts, created_at)
        return entries

    def start_attempt(self, keys: Iterable[str]) -> None:
        """Count one more send attempt for these keys (before the provider is called)."""
        keys = list(keys)
        with session_scope(self.engine) as session:
            for start in range(0, len(keys), _CHUNK):
                session.execute(
                    update(Delivery).where(Delivery.idempotency_key.in_(keys[start:start + _CHUNK]))
                    .values(attempts=Delivery.attempts + 1, updated_at=utcnow())
                )

    def mark_accepted(self, keys: Iterable[str], provider_message_id: str) -> None:
        """The provider accepted the messages of these keys (one request may carry many recipients)."""
        keys = list(keys)
        with session_scope(self.engine) as session:
            for start in range(0, len(keys), _CHUNK):
                session.execute(
                    update(Delivery).where(Delivery.idempotency_key.in_(keys[start:start + _CHUNK]))
                    .values(status=DeliveryStatus.ACCEPTED.value, provider_message_id=provider_message_id,
                            error_code=None, error_message=None, updated_at=utcnow())
                )

    def mark_failed(self, keys: Iterable[str], error_code: str, error_message: str) -> None:
        """The provider refused these messages (permanently, or transient errors outlasted the retries)."""
        keys = list(keys)
        with session_scope(self.engine) as session:
            for start in range(0, len(keys), _CHUNK):
                session.execute(
                    update(Delivery).where(Delivery.idempotency_key.in_(keys[start:start + _CHUNK]))
                    .values(status=DeliveryStatus.FAILED.value, error_code=error_code[:64],
                            error_message=error_message, updated_at=utcnow())
                )

    def status_counts(self, scope: DeliveryScope) -> dict[str, int]:
        """How many deliveries of this task instance's run are in each status (for reports and tests)."""
        with session_scope(self.engine) as session:
            rows = session.execute(
                select(Delivery.status).where(Delivery.dag_id == scope.dag_id, Delivery.run_id == scope.run_id,
                                              Delivery.task_id == scope.task_id)
            ).scalars().all()
        counts: dict[str, int] = {}
        for status in rows:
            counts[status] = counts.get(status, 0) + 1
        return counts
