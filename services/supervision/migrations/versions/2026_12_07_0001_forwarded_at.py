"""supervision_cases.forwarded_at: when a case went up to the parent (statistics count forwarded cases)

Revision ID: 2026_12_07_0001
Revises: 2026_11_26_0001
Create Date: 2026-12-07 10:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "2026_12_07_0001"
down_revision = "2026_11_26_0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("supervision_cases", schema=None) as batch_op:
        batch_op.add_column(sa.Column("forwarded_at", sa.DateTime(timezone=True), nullable=True))
    # Cases forwarded before: a case decided above went up as it was accepted (routing forwards it on
    # acceptance); a preliminary review went up when it concluded approving (its case clock's stop).
    op.execute(
        "UPDATE supervision_cases SET forwarded_at = accepted_at "
        "WHERE forward_reason = 'decided_above' AND forwarded_at IS NULL"
    )
    op.execute(
        "UPDATE supervision_cases SET forwarded_at = ("
        "  SELECT c.stopped_at FROM supervision_clocks c"
        "  WHERE c.case_id = supervision_cases.case_id AND c.task_id = '' AND c.outcome IN (1, 3)"
        ") WHERE forward_reason = 'preliminary_review' AND forwarded_at IS NULL"
    )


def downgrade() -> None:
    with op.batch_alter_table("supervision_cases", schema=None) as batch_op:
        batch_op.drop_column("forwarded_at")
