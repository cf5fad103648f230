"""grade outbox learner index

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01
"""

from collections.abc import Sequence

from alembic import op


revision: str = '0005'
down_revision: str | None = '0004'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('grade_outbox', schema=None) as batch_op:
        batch_op.create_index(
            'ix_grade_outbox_user_id_lineitem_url_scored_at', ['user_id', 'lineitem_url', 'scored_at'], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table('grade_outbox', schema=None) as batch_op:
        batch_op.drop_index('ix_grade_outbox_user_id_lineitem_url_scored_at')
