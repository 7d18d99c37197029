"""Events: the publisher of every outbox event, idempotency keys scoped by publisher.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02

Adds ``outbox_events.publisher`` (``user:<name>`` or ``dag:<dag_id>``, NOT NULL) and ``outbox_events.idempotency_key``
(NULL when the event had none), and a unique index on ``(publisher, type, idempotency_key)``: from now on a key
belongs to its publisher and type (see :mod:`demobank.events.outbox`).

Existing rows (the backfill), from what the rows tell:

* The Data Factory's events: a ``transaction.created`` or ``customer.created`` whose id is the UUID version 5 that
  the outbox derived, before this revision, from the type and its subject (the transaction or customer id: the key
  ``data_factory_transactions`` and ``data_factory_customer_sync`` publish with, and the default subject of those
  types). Such a row gets ``publisher = 'dag:<that DAG>'`` and ``idempotency_key = subject``, so that a load that
  was publishing while the database was upgraded finds its events under its own key and publishes none twice.
  (Before this revision keys were global: whoever used such a key, the Data Factory or an API caller, held it for
  everyone; the row now holds it for the Data Factory, as the old key space did.)
* Every other row: ``publisher = 'dag:unknown'`` (the column's server default, which says that the publisher was
  not recorded) and no key: the key was not stored and cannot be recovered from the id (a one-way hash), so these
  rows block no one's key.

The envelopes stored before (``outbox_events.envelope``) are left as they were, without the ``publisher``
attribute: they were delivered in that form, and a replay sends the same bytes again.

SQLite: only ``ADD COLUMN``, ``UPDATE`` and ``CREATE INDEX``, never batch mode's copy of the table: dropping and
renaming ``outbox_events`` would cascade to ``event_deliveries`` (foreign keys are on in every connection, and
cannot be turned off inside the migration's transaction). For the same reason the column keeps its server default
(SQLite cannot drop a default without copying the table); the outbox always sets the publisher. The downgrade drops
the columns (``ALTER TABLE DROP COLUMN``, SQLite 3.35+); ids derived since then stay as they are, so an event
republished after a downgrade with the same key would get another id.
"""

from __future__ import annotations

import uuid

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | tuple[str, ...] | None = None
depends_on: str | tuple[str, ...] | None = None

UNKNOWN_PUBLISHER = "dag:unknown"
"""The publisher of a row written before publishers were recorded (and the column's server default)."""

_IDEMPOTENCY_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://schemas.demobank.com/events/")
"""The outbox's namespace of derived ids (``demobank.events.outbox.IDEMPOTENCY_NAMESPACE``, frozen here)."""

_DATA_FACTORY_PUBLISHERS = {
    "transaction.created": "dag:data_factory_transactions",
    "customer.created": "dag:data_factory_customer_sync",
}
"""The types the Data Factory published before this revision, keyed by their subject, and the DAG of each."""

_CHUNK = 5_000

_INDEX = "ix_outbox_events_publisher_type_idempotency_key"


def _legacy_event_id(event_type: str, key: str) -> str:
    """The id the outbox derived from a key before this revision: UUID version 5 of the type and the key."""
    return str(uuid.uuid5(_IDEMPOTENCY_NAMESPACE, f"{event_type}\n{key}"))


def _backfill_data_factory_keys(connection: sa.Connection) -> int:
    """Give the Data Factory's events their DAG as publisher and their subject as key; return how many."""
    outbox = sa.table("outbox_events", sa.column("sequence"), sa.column("id"), sa.column("type"),
                      sa.column("subject"), sa.column("publisher"), sa.column("idempotency_key"))
    update = (outbox.update().where(outbox.c.sequence == sa.bindparam("row_sequence"))
              .values(publisher=sa.bindparam("row_publisher"), idempotency_key=sa.bindparam("row_key")))
    last, changed = 0, 0
    while True:
        rows = connection.execute(
            sa.select(outbox.c.sequence, outbox.c.id, outbox.c.type, outbox.c.subject)
            .where(outbox.c.sequence > last, outbox.c.type.in_(list(_DATA_FACTORY_PUBLISHERS)),
                   outbox.c.subject.is_not(None), sa.func.substr(outbox.c.id, 15, 1) == "5")
            .order_by(outbox.c.sequence).limit(_CHUNK)
        ).all()
        if not rows:
            return changed
        last = rows[-1].sequence
        derived = [{"row_sequence": row.sequence, "row_publisher": _DATA_FACTORY_PUBLISHERS[row.type],
                    "row_key": row.subject}
                   for row in rows if row.id == _legacy_event_id(row.type, row.subject)]
        if derived:
            connection.execute(update, derived)
            changed += len(derived)


def upgrade() -> None:
    """Add ``publisher`` and ``idempotency_key``, backfill them, then make the key unique per publisher and type."""
    op.add_column("outbox_events", sa.Column("publisher", sa.String(length=255), nullable=False,
                                             server_default=UNKNOWN_PUBLISHER))
    op.add_column("outbox_events", sa.Column("idempotency_key", sa.String(length=500), nullable=True))
    _backfill_data_factory_keys(op.get_bind())
    op.create_index(_INDEX, "outbox_events", ["publisher", "type", "idempotency_key"], unique=True)


def downgrade() -> None:
    """Drop the index and the two columns (the keys' scope goes back to the type alone)."""
    op.drop_index(_INDEX, table_name="outbox_events")
    op.drop_column("outbox_events", "idempotency_key")
    op.drop_column("outbox_events", "publisher")
