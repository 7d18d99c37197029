"""Data Factory: run reports waiting for Monte Carlo (``run_reports``).

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-26

Written by hand to match :class:`demobank.db.models.RunReport`; a new table only, so it runs as is on SQLite and
PostgreSQL.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | tuple[str, ...] | None = None
depends_on: str | tuple[str, ...] | None = None


def upgrade() -> None:
    """Create ``run_reports`` with its constraints and indexes."""
    op.create_table(
        "run_reports",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("report_key", sa.String(length=64), nullable=False),
        sa.Column("dag_id", sa.String(length=250), nullable=False),
        sa.Column("run_id", sa.String(length=250), nullable=False),
        sa.Column("run_state", sa.String(length=32), nullable=False),
        sa.Column("success", sa.Boolean(), nullable=False),
        sa.Column("reason", sa.String(length=100), nullable=True),
        sa.Column("failed_task_ids", sa.JSON(), nullable=False),
        sa.Column("inlet_uris", sa.JSON(), nullable=False),
        sa.Column("outlet_uris", sa.JSON(), nullable=False),
        sa.Column("run_start_date", sa.DateTime(timezone=True), nullable=True),
        sa.Column("run_end_date", sa.DateTime(timezone=True), nullable=True),
        sa.Column("conn_id", sa.String(length=250), nullable=False),
        sa.Column("operation", sa.String(length=64), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("http_status", sa.Integer(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("accepted_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.current_timestamp(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.func.current_timestamp(), nullable=False),
        sa.CheckConstraint("status IN ('pending', 'accepted', 'rejected')", name=op.f("ck_run_reports_status")),
        sa.CheckConstraint("attempts >= 0", name=op.f("ck_run_reports_attempts_not_negative")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_run_reports")),
        sa.UniqueConstraint("report_key", name=op.f("uq_run_reports_report_key")),
    )
    op.create_index(op.f("ix_run_reports_status_next_attempt_at"), "run_reports", ["status", "next_attempt_at"])
    op.create_index(op.f("ix_run_reports_dag_id_run_id"), "run_reports", ["dag_id", "run_id"])


def downgrade() -> None:
    """Drop ``run_reports``."""
    op.drop_index(op.f("ix_run_reports_dag_id_run_id"), table_name="run_reports")
    op.drop_index(op.f("ix_run_reports_status_next_attempt_at"), table_name="run_reports")
    op.drop_table("run_reports")
