"""The delivery ledger: what was already accepted by a provider, so a retried, cleared or re-run task never sends
the same message twice, and two tasks never send the same message at once.

A delivery is keyed by its *idempotency key*: the channel and a hash of (DAG id, run id, task id, map index,
recipient), or of a business key. A task *claims* its keys before it sends: one conditional write records each
missing row as ``pending`` and makes the task's try (its *owner*) the holder of every row that is not accepted and
not held by another live owner, for a *lease* (renewed while it sends). Only the holder sends a message and records
its outcome; every ``mark_*`` is guarded by the owner, so a task that lost its lease changes nothing (and is told
which keys it could not mark).

Outcomes: ``accepted`` (with the provider's id), ``failed`` (provably not accepted: refused, or never reached the
provider), ``unknown`` (the provider may have accepted it: a timeout, a reset, a 5xx). A row that is ``unknown``,
or ``pending`` after an attempt started (the attempt died before it recorded the answer), is looked up at the
provider before it is sent again (see :mod:`demobank.connect.delivery`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Engine

from demobank.db.engine import session_scope
from demobank.db.models import Delivery, DeliveryStatus, utcnow

log = logging.getLogger(__name__)

_CHUNK = 500
_ACCEPTED = DeliveryStatus.ACCEPTED.value
DEFAULT_LEASE_SECONDS = 300.0
"""How long a claim holds its rows without renewal (a sending task renews it every third of that)."""
_OWNER_MAX = 500


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

    def owner(self, try_number: int | None = None) -> str:
        """A new claim owner for one try of this task instance: ``dag/run/task/map_index/try/<random token>``.

        The random token tells apart two processes running the same try (a zombie and its replacement).
        """
        token = secrets.token_hex(8)
        text = f"{self.dag_id}/{self.run_id}/{self.task_id}/{self.map_index}/try-{try_number or 0}/{token}"
        if len(text) <= _OWNER_MAX:
            return text
        digest = hashlib.sha256(text.encode()).hexdigest()[:16]
        return f"{text[:_OWNER_MAX - 40]}…{digest}/{token}"


@dataclass(frozen=True)
class LedgerEntry:
    """What the ledger knows of one key."""

    key: str
    status: str
    provider_message_id: str | None
    attempts: int
    """How many send requests of this key have started (0: the provider was never called)."""
    created_at: datetime | None = None
    claimed_by: str | None = None
    lease_until: datetime | None = None
    attempt_id: str | None = None
    """The latest send request that carried this key."""
    attempted_at: datetime | None = None
    error_code: str | None = None

    @property
    def may_have_been_sent(self) -> bool:
        """The provider may have accepted it without the ledger knowing: look it up before sending it again."""
        if self.status == DeliveryStatus.UNKNOWN.value:
            return True
        return self.status == DeliveryStatus.PENDING.value and self.attempts > 0


@dataclass
class Claim:
    """What one :meth:`DeliveryLedger.claim` got."""

    owner: str
    held: dict[str, LedgerEntry] = field(default_factory=dict)
    """Not accepted yet, and now held by ``owner``: only it may send these."""
    accepted: dict[str, LedgerEntry] = field(default_factory=dict)
    """Already accepted by the provider: never sent again."""
    contested: dict[str, LedgerEntry] = field(default_factory=dict)
    """Held by another owner whose lease has not expired: not to be sent by ``owner``."""


class DeliveryLedger:
    """Reads and writes the ``deliveries`` table of the suite's database.

    :param engine: the suite's database.
    :param lease_seconds: how long a claim holds its rows unless renewed.
    """

    def __init__(self, engine: Engine, *, lease_seconds: float = DEFAULT_LEASE_SECONDS) -> None:
        if lease_seconds <= 0:
            raise ValueError(f"lease_seconds must be positive, got {lease_seconds}")
        self.engine = engine
        self.lease_seconds = lease_seconds

    def _insert(self) -> Any:  # a dialect-specific INSERT construct
        return (pg_insert if self.engine.dialect.name == "postgresql" else sqlite_insert)(Delivery)

    def _lease(self, now: datetime) -> datetime:
        return now + timedelta(seconds=self.lease_seconds)

    def claim(
        self,
        scope: DeliveryScope,
        channel: str,
        provider: str,
        recipients: Sequence[tuple[str, str]],
        owner: str,
    ) -> Claim:
        """Claim each (key, masked recipient) for ``owner``; return which keys it holds, which were accepted before
        and which another live owner holds.

        In one transaction: the missing rows are inserted, held by ``owner`` (``INSERT … ON CONFLICT DO NOTHING``,
        in key order, so that two claims of the same new keys cannot deadlock); then one conditional ``UPDATE``
        per batch of existing rows takes those that are not accepted and whose lease expired (or that ``owner``
        holds already): ``SET claimed_by = owner, lease_until = now + lease WHERE status <> 'accepted' AND
        (lease_until IS NULL OR lease_until < now OR claimed_by = owner)``. On PostgreSQL the rows are picked
        ``FOR UPDATE SKIP LOCKED``: a row that another transaction is writing (its holder recording an outcome)
        is left to a later claim instead of waited for, so a claim never waits on a sending task. SQLite runs one
        writer at a time (``BEGIN IMMEDIATE``). Then the same keys are read in the same transaction.
        """
        claim = Claim(owner)
        if not recipients:
            return claim
        now = utcnow()
        until = self._lease(now)
        rows = sorted(
            ({"idempotency_key": key, "channel": channel, "provider": provider, "recipient_masked": masked,
              "status": DeliveryStatus.PENDING.value, "dag_id": scope.dag_id, "run_id": scope.run_id,
              "task_id": scope.task_id, "attempts": 0, "created_at": now, "updated_at": now,
              "claimed_by": owner, "lease_until": until}
             for key, masked in recipients),
            key=lambda row: row["idempotency_key"],
        )
        keys = [row["idempotency_key"] for row in rows]
        insert = (self._insert().on_conflict_do_nothing(index_elements=["idempotency_key"])
                  .returning(Delivery.idempotency_key))
        free = or_(Delivery.lease_until.is_(None), Delivery.lease_until < now, Delivery.claimed_by == owner)
        with session_scope(self.engine) as session:
            inserted: set[str] = set()
            for start in range(0, len(rows), _CHUNK):
                inserted.update(session.execute(insert, rows[start:start + _CHUNK]).scalars().all())
            existing = [key for key in keys if key not in inserted]
            for start in range(0, len(existing), _CHUNK):
                takeable = (select(Delivery.id)
                            .where(Delivery.idempotency_key.in_(existing[start:start + _CHUNK]),
                                   Delivery.status != _ACCEPTED, free)
                            .order_by(Delivery.idempotency_key)
                            .with_for_update(skip_locked=True))
                session.execute(
                    update(Delivery).where(Delivery.id.in_(takeable.scalar_subquery()))
                    .values(claimed_by=owner, lease_until=until, updated_at=now)
                    .execution_options(synchronize_session=False)
                )
            entries = self._read(session, keys)
        for key, entry in entries.items():
            if entry.status == _ACCEPTED:
                claim.accepted[key] = entry
            elif entry.claimed_by == owner:
                claim.held[key] = entry
            else:
                claim.contested[key] = entry
        return claim

    @staticmethod
    def _read(session: Any, keys: Sequence[str]) -> dict[str, LedgerEntry]:
        entries: dict[str, LedgerEntry] = {}
        columns = (Delivery.idempotency_key, Delivery.status, Delivery.provider_message_id, Delivery.attempts,
                   Delivery.created_at, Delivery.claimed_by, Delivery.lease_until, Delivery.attempt_id,
                   Delivery.attempted_at, Delivery.error_code)
        for start in range(0, len(keys), _CHUNK):
            found = session.execute(select(*columns).where(Delivery.idempotency_key.in_(keys[start:start + _CHUNK])))
            for row in found.all():
                entries[row[0]] = LedgerEntry(*row)
        return entries

    def entries(self, keys: Sequence[str]) -> dict[str, LedgerEntry]:
        """What the ledger knows of these keys now (keys it does not know are left out)."""
        with session_scope(self.engine) as session:
            return self._read(session, list(keys))

    def _guarded_update(self, keys: Iterable[str], owner: str, values: dict[str, Any],
                        *, not_accepted: bool = True) -> list[str]:
        """Apply ``values`` to the rows of ``keys`` that ``owner`` holds; return the keys it could NOT update."""
        keys = list(keys)
        done: set[str] = set()
        with session_scope(self.engine) as session:
            for start in range(0, len(keys), _CHUNK):
                condition = [Delivery.idempotency_key.in_(keys[start:start + _CHUNK]), Delivery.claimed_by == owner]
                if not_accepted:
                    condition.append(Delivery.status != _ACCEPTED)
                result = session.execute(
                    update(Delivery).where(*condition).values(**values, updated_at=utcnow())
                    .returning(Delivery.idempotency_key).execution_options(synchronize_session=False)
                )
                done.update(result.scalars().all())
        missed = [key for key in keys if key not in done]
        if missed:
            log.warning("%d ledger row(s) not updated: this task (%s) no longer holds them; the task that does "
                        "records their outcome", len(missed), owner)
        return missed

    def start_attempt(self, keys: Iterable[str], owner: str, attempt_id: str | None = None) -> list[str]:
        """Count one more send request for the keys ``owner`` still holds, before the provider is called.

        Also renews their lease and records the request (``attempt_id``, ``attempted_at``).

        :return: the keys NOT started (another owner holds them now, or they were accepted): do not send those.
        """
        now = utcnow()
        return self._guarded_update(keys, owner, {"attempts": Delivery.attempts + 1, "attempt_id": attempt_id,
                                                  "attempted_at": now, "lease_until": self._lease(now)})

    def mark_accepted(self, keys: Iterable[str], owner: str, provider_message_id: str) -> list[str]:
        """The provider accepted the messages of these keys (one request may carry many recipients).

        :return: the keys not marked (``owner`` lost them to another task, which records their outcome).
        """
        return self._guarded_update(keys, owner, {"status": _ACCEPTED, "provider_message_id": provider_message_id,
                                                  "error_code": None, "error_message": None}, not_accepted=False)

    def mark_failed(self, keys: Iterable[str], owner: str, error_code: str, error_message: str) -> list[str]:
        """These messages were provably not accepted: the provider refused them, or they never reached it.

        :return: the keys not marked (lost to another task, or accepted meanwhile).
        """
        return self._guarded_update(keys, owner, {"status": DeliveryStatus.FAILED.value,
                                                  "error_code": error_code[:64], "error_message": error_message})

    def mark_unknown(self, keys: Iterable[str], owner: str, error_code: str, error_message: str) -> list[str]:
        """The provider may have accepted these messages (timeout, reset, 5xx): look them up before any resend.

        :return: the keys not marked (lost to another task, or accepted meanwhile).
        """
        return self._guarded_update(keys, owner, {"status": DeliveryStatus.UNKNOWN.value,
                                                  "error_code": error_code[:64], "error_message": error_message})

    def renew(self, owner: str) -> int:
        """Extend the lease of the rows ``owner`` holds and that are not accepted; return how many.

        Rows being written at that moment (their outcome, by the same owner's other threads) are skipped on
        PostgreSQL (``SKIP LOCKED``) rather than waited for: the next renewal gets them, and a send's
        :meth:`start_attempt` extends its rows' lease anyway.
        """
        now = utcnow()
        held = (select(Delivery.id).where(Delivery.claimed_by == owner, Delivery.status != _ACCEPTED)
                .with_for_update(skip_locked=True))
        with session_scope(self.engine) as session:
            result = session.execute(
                update(Delivery).where(Delivery.id.in_(held.scalar_subquery()))
                .values(lease_until=self._lease(now)).execution_options(synchronize_session=False)
            )
        return int(result.rowcount or 0)

    def release(self, owner: str) -> int:
        """End ``owner``'s leases (its send is over): another task may claim what it did not get accepted."""
        with session_scope(self.engine) as session:
            result = session.execute(
                update(Delivery).where(Delivery.claimed_by == owner, Delivery.lease_until.is_not(None))
                .values(lease_until=None).execution_options(synchronize_session=False)
            )
        return int(result.rowcount or 0)

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
