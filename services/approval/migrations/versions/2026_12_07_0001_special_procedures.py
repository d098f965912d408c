"""approval_special_procedures; plans.special_procedures, tasks.special_procedure (行政许可法 Art. 45)

Revision ID: 2026_12_07_0001
Revises: 2026_11_26_0001
Create Date: 2026-12-07 16:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "2026_12_07_0001"
down_revision = "2026_11_26_0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "approval_special_procedures",
        sa.Column("procedure_id", sa.String(length=36), nullable=False),
        sa.Column("task_id", sa.String(length=36), nullable=False),
        sa.Column("case_number", sa.String(length=64), nullable=False),
        sa.Column("department", sa.String(length=32), nullable=False),
        sa.Column("procedure", sa.String(length=32), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("expected_days", sa.Integer(), nullable=False),
        sa.Column("expected_end", sa.DateTime(timezone=True), nullable=True),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("started_by", sa.JSON(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ended_by", sa.JSON(), nullable=True),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("result", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("procedure_id"),
    )
    with op.batch_alter_table("approval_special_procedures", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_approval_special_procedures_task_id"), ["task_id"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_approval_special_procedures_case_number"), ["case_number"], unique=False
        )
    with op.batch_alter_table("approval_plans", schema=None) as batch_op:
        batch_op.add_column(sa.Column("special_procedures", sa.JSON(), nullable=False, server_default="[]"))
    with op.batch_alter_table("approval_tasks", schema=None) as batch_op:
        batch_op.add_column(sa.Column("special_procedure", sa.String(length=32), nullable=False, server_default=""))


def downgrade() -> None:
    with op.batch_alter_table("approval_tasks", schema=None) as batch_op:
        batch_op.drop_column("special_procedure")
    with op.batch_alter_table("approval_plans", schema=None) as batch_op:
        batch_op.drop_column("special_procedures")
    op.drop_table("approval_special_procedures")
