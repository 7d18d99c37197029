"""Create the delivery ledger (deliveries) and the demo customers (demo_customers).

Revision ID: 0001
Revises:
Create Date: 2026-11-26

Written by hand to match demobank.db.models; runs on SQLite and PostgreSQL.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0001"
down_revision: str | None = None
branch_labels: str | tuple[str, ...] | None = None
depends_on: str | tuple[str, ...] | None = None


def upgrade() -> None:
    """Create ``deliveries`` and ``demo_customers`` with their constraints and indexes."""
    op.create_table(
        "deliveries",
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
        sa.CheckConstraint("channel IN ('sms', 'email')", name=op.f("ck_deliveries_channel")),
        sa.CheckConstraint("provider IN ('twilio', 'sendgrid')", name=op.f("ck_deliveries_provider")),
        sa.CheckConstraint("status IN ('pending', 'accepted', 'failed')", name=op.f("ck_deliveries_status")),
        sa.CheckConstraint("attempts >= 0", name=op.f("ck_deliveries_attempts_not_negative")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_deliveries")),
        sa.UniqueConstraint("idempotency_key", name=op.f("uq_deliveries_idempotency_key")),
    )
    op.create_index(op.f("ix_deliveries_dag_id_run_id"), "deliveries", ["dag_id", "run_id"])
    op.create_index(op.f("ix_deliveries_status_created_at"), "deliveries", ["status", "created_at"])

    op.create_table(
        "demo_customers",
        sa.Column("customer_id", sa.String(length=32), nullable=False),
        sa.Column("full_name", sa.String(length=200), nullable=False),
        sa.Column("phone", sa.String(length=16), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=False),
        sa.Column("payment_due_date", sa.Date(), nullable=True),
        sa.Column("amount_due", sa.Numeric(precision=18, scale=2), nullable=True),
        sa.Column("currency", sa.CHAR(length=3), server_default="USD", nullable=False),
        sa.CheckConstraint("phone LIKE '+%'", name=op.f("ck_demo_customers_phone_e164")),
        sa.CheckConstraint(
            "amount_due IS NULL OR amount_due >= 0", name=op.f("ck_demo_customers_amount_due_not_negative")
        ),
        sa.PrimaryKeyConstraint("customer_id", name=op.f("pk_demo_customers")),
    )
    op.create_index(op.f("ix_demo_customers_payment_due_date"), "demo_customers", ["payment_due_date"])


def downgrade() -> None:
    """Drop both tables."""
    op.drop_index(op.f("ix_demo_customers_payment_due_date"), table_name="demo_customers")
    op.drop_table("demo_customers")
    op.drop_index(op.f("ix_deliveries_status_created_at"), table_name="deliveries")
    op.drop_index(op.f("ix_deliveries_dag_id_run_id"), table_name="deliveries")
    op.drop_table("deliveries")
