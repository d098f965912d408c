"""approval_calendar_years: the calendar years an administrator loaded at supervision

Revision ID: 2026_12_07_0002
Revises: 2026_12_07_0001
Create Date: 2026-12-07 16:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "2026_12_07_0002"
down_revision = "2026_12_07_0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "approval_calendar_years",
        sa.Column("year", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("holidays", sa.JSON(), nullable=False),
        sa.Column("workdays", sa.JSON(), nullable=False),
        sa.Column("source", sa.String(length=255), nullable=False),
        sa.Column("loaded_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("year"),
    )


def downgrade() -> None:
    op.drop_table("approval_calendar_years")
