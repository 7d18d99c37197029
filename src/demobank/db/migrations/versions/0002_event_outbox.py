"""Create the Events module's outbox: outbox_events, event_targets, event_deliveries.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26

Written by hand to match demobank.db.models; runs on SQLite and PostgreSQL (only new tables: no batch mode
needed). ``outbox_events.sequence`` is BIGSERIAL on PostgreSQL and ``INTEGER PRIMARY KEY AUTOINCREMENT`` on SQLite.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | tuple[str, ...] | None = None
depends_on: str | tuple[str, ...] | None = None


def upgrade() -> None:
    """Create ``outbox_events``, ``event_targets`` and ``event_deliveries`` with their constraints and indexes."""
    op.create_table(
        "outbox_events",
        sa.Column("sequence", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("type", sa.String(length=200), nullable=False),
        sa.Column("subject", sa.String(length=250), nullable=True),
        sa.Column("time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("envelope", sa.Text(), nullable=False),
        sa.Column("size_bytes", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.current_timestamp(), nullable=False),
        sa.CheckConstraint("size_bytes >= 0", name=op.f("ck_outbox_events_size_bytes_not_negative")),
        sa.PrimaryKeyConstraint("sequence", name=op.f("pk_outbox_events")),
        sa.UniqueConstraint("id", name=op.f("uq_outbox_events_id")),
        sqlite_autoincrement=True,
    )
    op.create_index(op.f("ix_outbox_events_type_time"), "outbox_events", ["type", "time"])

    op.create_table(
        "event_targets",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("description", sa.String(length=500), nullable=True),
        sa.Column("config", sa.JSON(), nullable=False),
        sa.Column("event_types", sa.JSON(), nullable=False),
        sa.Column("enabled", sa.Boolean(), server_default=sa.true(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.current_timestamp(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.func.current_timestamp(), nullable=False),
        sa.CheckConstraint("kind IN ('eventbridge')", name=op.f("ck_event_targets_kind")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_event_targets")),
        sa.UniqueConstraint("name", name=op.f("uq_event_targets_name")),
    )

    op.create_table(
        "event_deliveries",
        sa.Column("event_id", sa.String(length=36), nullable=False),
        sa.Column("target_id", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("claimed_by", sa.String(length=200), nullable=True),
        sa.Column("claimed_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("external_id", sa.String(length=200), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.current_timestamp(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.func.current_timestamp(), nullable=False),
        sa.CheckConstraint("status IN ('pending', 'delivered', 'dead')", name=op.f("ck_event_deliveries_status")),
        sa.CheckConstraint("attempts >= 0", name=op.f("ck_event_deliveries_attempts_not_negative")),
        sa.ForeignKeyConstraint(
            ["event_id"],
            ["outbox_events.id"],
            name=op.f("fk_event_deliveries_event_id_outbox_events"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["target_id"],
            ["event_targets.id"],
            name=op.f("fk_event_deliveries_target_id_event_targets"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("event_id", "target_id", name=op.f("pk_event_deliveries")),
    )
    op.create_index(
        op.f("ix_event_deliveries_target_id_status_next_attempt_at"),
        "event_deliveries",
        ["target_id", "status", "next_attempt_at"],
    )


def downgrade() -> None:
    """Drop the three tables (deliveries first: they refer to the others)."""
    op.drop_index(op.f("ix_event_deliveries_target_id_status_next_attempt_at"), table_name="event_deliveries")
    op.drop_table("event_deliveries")
    op.drop_table("event_targets")
    op.drop_index(op.f("ix_outbox_events_type_time"), table_name="outbox_events")
    op.drop_table("outbox_events")
