"""Events: an index for each target's delivery rate over the last minutes (the Targets page's backlog).

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-03

Written by hand to match the index ``(status, delivered_at, target_id)`` of
:class:`demobank.db.models.EventDelivery`. :mod:`demobank.events.backlog` counts, per target, the deliveries marked
delivered in the last 5 minutes: with this index that is a range of the index (``status = 'delivered' AND
delivered_at > …``) that also holds the target, instead of every delivered row of every target. ``CREATE INDEX``
runs as is on SQLite and PostgreSQL (it locks ``event_deliveries`` against writes while it is built: on a large
PostgreSQL table, run the upgrade when the dispatcher is idle).
"""

from __future__ import annotations

from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | tuple[str, ...] | None = None
depends_on: str | tuple[str, ...] | None = None


def upgrade() -> None:
    """Create ``ix_event_deliveries_status_delivered_at_target_id``."""
    op.create_index(op.f("ix_event_deliveries_status_delivered_at_target_id"), "event_deliveries",
                    ["status", "delivered_at", "target_id"])


def downgrade() -> None:
    """Drop the index."""
    op.drop_index(op.f("ix_event_deliveries_status_delivered_at_target_id"), table_name="event_deliveries")
