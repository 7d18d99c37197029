"""Events: per-target failure count, backoff and automatic pause; dismissed dead letters and run reports.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02

Written by hand to match :class:`demobank.db.models.EventTargetHealth` and the ``dismissed_at`` columns of
``EventDelivery`` and ``RunReport``. A new table and two nullable columns: ``ADD COLUMN`` runs as is on SQLite and
PostgreSQL; so does the downgrade's ``DROP COLUMN`` (SQLite 3.35 and later), which keeps the tables' constraints.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | tuple[str, ...] | None = None
depends_on: str | tuple[str, ...] | None = None


def upgrade() -> None:
    """Create ``event_target_health``; add ``dismissed_at`` to ``event_deliveries`` and ``run_reports``."""
    op.create_table(
        "event_target_health",
        sa.Column("target_id", sa.Integer(), nullable=False),
        sa.Column("failure_count", sa.Integer(), server_default="0", nullable=False),
        sa.Column("failing_since", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("last_failure_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("paused_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("paused_reason", sa.Text(), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.func.current_timestamp(),
                  nullable=False),
        sa.CheckConstraint("failure_count >= 0", name=op.f("ck_event_target_health_failure_count_not_negative")),
        sa.ForeignKeyConstraint(["target_id"], ["event_targets.id"], ondelete="CASCADE",
                                name=op.f("fk_event_target_health_target_id_event_targets")),
        sa.PrimaryKeyConstraint("target_id", name=op.f("pk_event_target_health")),
    )
    op.add_column("event_deliveries", sa.Column("dismissed_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("run_reports", sa.Column("dismissed_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    """Drop the health table and the ``dismissed_at`` columns (dismissed dead letters become new again)."""
    op.drop_column("run_reports", "dismissed_at")
    op.drop_column("event_deliveries", "dismissed_at")
    op.drop_table("event_target_health")
