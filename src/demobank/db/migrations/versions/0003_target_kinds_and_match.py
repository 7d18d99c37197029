"""Event targets: the ``airflow_dag`` kind and the ``match`` data filter.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26

SQLite cannot alter a CHECK constraint: batch mode recreates ``event_targets`` (its rows are copied). The old table
is described explicitly (``copy_from``) because SQLite's reflection would not carry the named CHECK constraint.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | tuple[str, ...] | None = None
depends_on: str | tuple[str, ...] | None = None

_OLD_KINDS = "kind IN ('eventbridge')"
_NEW_KINDS = "kind IN ('eventbridge', 'airflow_dag')"


def _event_targets(kinds: str, with_match: bool) -> sa.Table:
    columns = [
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("description", sa.String(length=500), nullable=True),
        sa.Column("config", sa.JSON(), nullable=False),
        sa.Column("event_types", sa.JSON(), nullable=False),
        sa.Column("enabled", sa.Boolean(), server_default=sa.true(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.current_timestamp(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.func.current_timestamp(), nullable=False),
    ]
    if with_match:
        columns.insert(6, sa.Column("match", sa.JSON(), nullable=True))
    return sa.Table(
        "event_targets",
        sa.MetaData(),
        *columns,
        sa.CheckConstraint(kinds, name="ck_event_targets_kind"),
        sa.PrimaryKeyConstraint("id", name="pk_event_targets"),
        sa.UniqueConstraint("name", name="uq_event_targets_name"),
    )


def upgrade() -> None:
    """Allow ``kind = 'airflow_dag'``; add the nullable ``match`` column."""
    with op.batch_alter_table("event_targets", copy_from=_event_targets(_OLD_KINDS, with_match=False)) as batch:
        batch.drop_constraint(op.f("ck_event_targets_kind"), type_="check")
        batch.create_check_constraint(op.f("ck_event_targets_kind"), _NEW_KINDS)
        batch.add_column(sa.Column("match", sa.JSON(), nullable=True))


def downgrade() -> None:
    """Back to EventBridge targets only; ``airflow_dag`` targets (and their deliveries) are deleted."""
    op.execute("DELETE FROM event_targets WHERE kind = 'airflow_dag'")
    with op.batch_alter_table("event_targets", copy_from=_event_targets(_NEW_KINDS, with_match=True)) as batch:
        batch.drop_column("match")
        batch.drop_constraint(op.f("ck_event_targets_kind"), type_="check")
        batch.create_check_constraint(op.f("ck_event_targets_kind"), _OLD_KINDS)
