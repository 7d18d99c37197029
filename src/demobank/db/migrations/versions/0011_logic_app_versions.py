"""Logic Apps: the deployed versions of each workflow definition (``logic_app_versions``).

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-04

Written by hand to match :class:`demobank.db.models.LogicAppVersion`; a new table only, so it runs as is on SQLite
and PostgreSQL. The unique constraint ``(name, number)`` is what keeps two concurrent deploys of one workflow from
taking the same number (:mod:`demobank.logic_apps.versions` retries on it), and its index serves the lookups of a
workflow's latest version and history.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | tuple[str, ...] | None = None
depends_on: str | tuple[str, ...] | None = None


def upgrade() -> None:
    """Create ``logic_app_versions``."""
    op.create_table(
        "logic_app_versions",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("name", sa.String(length=63), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("content_hash", sa.String(length=64), nullable=False),
        sa.Column("definition", sa.Text(), nullable=False),
        sa.Column("author", sa.String(length=250), nullable=False),
        sa.Column("deployed_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("number >= 1", name=op.f("ck_logic_app_versions_number_positive")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_logic_app_versions")),
        sa.UniqueConstraint("name", "number", name=op.f("uq_logic_app_versions_name_number")),
    )


def downgrade() -> None:
    """Drop the version history (the definitions' files stay; deploy them again to record them)."""
    op.drop_table("logic_app_versions")
