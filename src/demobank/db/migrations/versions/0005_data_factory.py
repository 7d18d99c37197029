"""Data Factory: the data quality record (``data_quality_runs``, ``data_quality_tables``, ``data_quality_checks``).

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-26

Written by hand to match :class:`demobank.db.models.DataQualityRun`, ``DataQualityTable`` and ``DataQualityCheck``;
new tables only, so it runs as is on SQLite and PostgreSQL. The quarantined rows themselves live in the warehouse
(``quarantine_transactions``), not here.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | tuple[str, ...] | None = None
depends_on: str | tuple[str, ...] | None = None


def upgrade() -> None:
    """Create the three tables of the data quality record with their constraints and indexes."""
    op.create_table(
        "data_quality_runs",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("dag_id", sa.String(length=250), nullable=False),
        sa.Column("run_id", sa.String(length=250), nullable=False),
        sa.Column("business_date", sa.Date(), nullable=True),
        sa.Column("logical_date", sa.DateTime(timezone=True), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("failed_task", sa.String(length=250), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("rows_in", sa.BigInteger(), nullable=True),
        sa.Column("rows_loaded", sa.BigInteger(), nullable=True),
        sa.Column("rows_quarantined", sa.BigInteger(), nullable=True),
        sa.Column("bad_share", sa.Float(), nullable=True),
        sa.Column("max_bad_share", sa.Float(), nullable=True),
        sa.Column("events_published", sa.BigInteger(), nullable=True),
        sa.CheckConstraint("status IN ('running', 'success', 'failed')", name=op.f("ck_data_quality_runs_status")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_data_quality_runs")),
        sa.UniqueConstraint("dag_id", "run_id", name=op.f("uq_data_quality_runs_dag_id_run_id")),
    )
    op.create_index(op.f("ix_data_quality_runs_dag_id_started_at"), "data_quality_runs", ["dag_id", "started_at"])

    op.create_table(
        "data_quality_tables",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("run_pk", sa.Integer(), nullable=False),
        sa.Column("table_name", sa.String(length=250), nullable=False),
        sa.Column("asset_uri", sa.String(length=1500), nullable=True),
        sa.Column("rows_in", sa.BigInteger(), nullable=True),
        sa.Column("rows_out", sa.BigInteger(), nullable=True),
        sa.Column("rows_quarantined", sa.BigInteger(), nullable=True),
        sa.Column("detail", sa.JSON(), nullable=True),
        sa.ForeignKeyConstraint(["run_pk"], ["data_quality_runs.id"], ondelete="CASCADE",
                                name=op.f("fk_data_quality_tables_run_pk_data_quality_runs")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_data_quality_tables")),
        sa.UniqueConstraint("run_pk", "table_name", name=op.f("uq_data_quality_tables_run_pk_table_name")),
    )

    op.create_table(
        "data_quality_checks",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("run_pk", sa.Integer(), nullable=False),
        sa.Column("task_id", sa.String(length=250), nullable=False),
        sa.Column("check_name", sa.String(length=100), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("table_name", sa.String(length=250), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("checked_rows", sa.BigInteger(), nullable=True),
        sa.Column("failed_rows", sa.BigInteger(), nullable=True),
        sa.Column("message", sa.Text(), nullable=True),
        sa.Column("checked_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("status IN ('passed', 'failed', 'warning')", name=op.f("ck_data_quality_checks_status")),
        sa.ForeignKeyConstraint(["run_pk"], ["data_quality_runs.id"], ondelete="CASCADE",
                                name=op.f("fk_data_quality_checks_run_pk_data_quality_runs")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_data_quality_checks")),
        sa.UniqueConstraint("run_pk", "check_name", name=op.f("uq_data_quality_checks_run_pk_check_name")),
    )


def downgrade() -> None:
    """Drop the data quality record."""
    op.drop_table("data_quality_checks")
    op.drop_table("data_quality_tables")
    op.drop_index(op.f("ix_data_quality_runs_dag_id_started_at"), table_name="data_quality_runs")
    op.drop_table("data_quality_runs")
