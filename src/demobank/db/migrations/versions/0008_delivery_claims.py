"""Connect: delivery ledger claims with an owner and a lease, and the ``unknown`` outcome.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02

``deliveries`` gains ``claimed_by`` / ``lease_until`` (which task try holds a row, and until when),
``attempt_id`` / ``attempted_at`` (the latest send request of the row, for the lookup at the provider) and the
status ``unknown``. Rows marked ``failed`` before this revision may hide an unknown outcome (a read timeout or a
5xx was recorded as a failure): they become ``unknown``, so that the next attempt asks the provider before it
sends them again.

SQLite cannot alter a CHECK constraint: batch mode recreates ``deliveries`` (its rows are copied). The old table
is described explicitly (``copy_from``, with its indexes) because SQLite's reflection would not carry the named
CHECK constraints.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | tuple[str, ...] | None = None
depends_on: str | tuple[str, ...] | None = None

_OLD_STATUSES = "status IN ('pending', 'accepted', 'failed')"
_NEW_STATUSES = "status IN ('pending', 'accepted', 'failed', 'unknown')"


def _deliveries(statuses: str, with_claims: bool) -> sa.Table:
    """The ``deliveries`` table before (``with_claims=False``) or after this revision."""
    columns = [
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("idempotency_key", sa.String(length=200), nullable=False),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("provider", sa.String(length=32), nullable=False),
        sa.Column("recipient_masked", sa.String(length=320), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("provider_message_id", sa.String(length=200), nullable=True),
        sa.Column("error_code", sa.String(length=64), nullable=True),
        sa.Column("error_message", sa.Text(), nullable=True),
        sa.Column("dag_id", sa.String(length=250), nullable=True),
        sa.Column("run_id", sa.String(length=250), nullable=True),
        sa.Column("task_id", sa.String(length=250), nullable=True),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.current_timestamp(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.func.current_timestamp(), nullable=False),
    ]
    if with_claims:
        columns += _claim_columns()
    return sa.Table(
        "deliveries",
        sa.MetaData(),
        *columns,
        sa.CheckConstraint("channel IN ('sms', 'email')", name="ck_deliveries_channel"),
        sa.CheckConstraint("provider IN ('twilio', 'sendgrid')", name="ck_deliveries_provider"),
        sa.CheckConstraint(statuses, name="ck_deliveries_status"),
        sa.CheckConstraint("attempts >= 0", name="ck_deliveries_attempts_not_negative"),
        sa.PrimaryKeyConstraint("id", name="pk_deliveries"),
        sa.UniqueConstraint("idempotency_key", name="uq_deliveries_idempotency_key"),
        sa.Index("ix_deliveries_dag_id_run_id", "dag_id", "run_id"),
        sa.Index("ix_deliveries_status_created_at", "status", "created_at"),
    )


def _claim_columns() -> list[sa.Column]:
    return [
        sa.Column("claimed_by", sa.String(length=500), nullable=True),
        sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("attempt_id", sa.String(length=64), nullable=True),
        sa.Column("attempted_at", sa.DateTime(timezone=True), nullable=True),
    ]


def upgrade() -> None:
    """Add the claim and attempt columns and the ``unknown`` status; legacy ``failed`` rows become ``unknown``."""
    with op.batch_alter_table("deliveries", copy_from=_deliveries(_OLD_STATUSES, with_claims=False)) as batch:
        batch.drop_constraint(op.f("ck_deliveries_status"), type_="check")
        batch.create_check_constraint(op.f("ck_deliveries_status"), _NEW_STATUSES)
        for column in _claim_columns():
            batch.add_column(column)
    op.create_index(op.f("ix_deliveries_claimed_by"), "deliveries", ["claimed_by"])
    op.execute("UPDATE deliveries SET status = 'unknown' WHERE status = 'failed'")


def downgrade() -> None:
    """Back to three statuses (``unknown`` rows become ``failed``) and no claims."""
    op.drop_index(op.f("ix_deliveries_claimed_by"), table_name="deliveries")
    op.execute("UPDATE deliveries SET status = 'failed' WHERE status = 'unknown'")
    with op.batch_alter_table("deliveries", copy_from=_deliveries(_NEW_STATUSES, with_claims=True)) as batch:
        for column in reversed(_claim_columns()):
            batch.drop_column(column.name)
        batch.drop_constraint(op.f("ck_deliveries_status"), type_="check")
        batch.create_check_constraint(op.f("ck_deliveries_status"), _OLD_STATUSES)
