"""Events: the audit trail of event targets (``target_audit``).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02

Written by hand to match :class:`demobank.db.models.TargetAuditEntry`; a new table only, so it runs as is on SQLite
and PostgreSQL.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | tuple[str, ...] | None = None
depends_on: str | tuple[str, ...] | None = None


def upgrade() -> None:
    """Create ``target_audit`` and its index by target (newest first is ``ORDER BY id DESC``)."""
    op.create_table(
        "target_audit",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(length=250), nullable=False),
        sa.Column("action", sa.String(length=32), nullable=False),
        sa.Column("target_id", sa.Integer(), nullable=True),
        sa.Column("target_name", sa.String(length=100), nullable=False),
        sa.Column("details", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_target_audit")),
    )
    op.create_index(op.f("ix_target_audit_target_id_id"), "target_audit", ["target_id", "id"])


def downgrade() -> None:
    """Drop the audit trail."""
    op.drop_index(op.f("ix_target_audit_target_id_id"), table_name="target_audit")
    op.drop_table("target_audit")
