"""completion, grades, rosters and exports

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = '0004'
down_revision: str | None = '0003'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('export_runs',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('platform_id', sa.Integer(), nullable=True),
    sa.Column('requested_by', sa.String(length=300), nullable=False),
    sa.Column('channel', sa.String(length=10), nullable=False),
    sa.Column('format', sa.String(length=10), nullable=False),
    sa.Column('filters', sa.JSON(), nullable=False),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('row_count', sa.Integer(), nullable=False),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('error', sa.Text(), nullable=True),
    sa.CheckConstraint("channel IN ('web', 'cli', 'api')", name=op.f('ck_export_runs_channel')),
    sa.CheckConstraint("status IN ('running', 'complete', 'failed')", name=op.f('ck_export_runs_status')),
    sa.ForeignKeyConstraint(['platform_id'], ['platforms.id'], name=op.f('fk_export_runs_platform_id_platforms'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_export_runs'))
    )
    op.create_table('lti_service_tokens',
    sa.Column('platform_id', sa.Integer(), nullable=False),
    sa.Column('scopes', sa.String(length=1000), nullable=False),
    sa.Column('access_token', sa.Text(), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['platform_id'], ['platforms.id'], name=op.f('fk_lti_service_tokens_platform_id_platforms'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('platform_id', 'scopes', name=op.f('pk_lti_service_tokens'))
    )
    op.create_table('roster_members',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('platform_id', sa.Integer(), nullable=False),
    sa.Column('context_id', sa.Integer(), nullable=False),
    sa.Column('sub', sa.String(length=255), nullable=False),
    sa.Column('name', sa.String(length=300), nullable=True),
    sa.Column('email', sa.String(length=320), nullable=True),
    sa.Column('lis_person_sourcedid', sa.String(length=255), nullable=True),
    sa.Column('roles', sa.JSON(), nullable=False),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('first_seen_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('last_seen_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('extra', sa.JSON(), nullable=False),
    sa.ForeignKeyConstraint(['context_id'], ['contexts.id'], name=op.f('fk_roster_members_context_id_contexts'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['platform_id'], ['platforms.id'], name=op.f('fk_roster_members_platform_id_platforms'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_roster_members')),
    sa.UniqueConstraint('context_id', 'sub', name=op.f('uq_roster_members_context_id_sub'))
    )
    with op.batch_alter_table('completion_records', schema=None) as batch_op:
        batch_op.add_column(sa.Column('case_attempts', sa.Integer(), nullable=False, server_default='0'))
        batch_op.add_column(sa.Column('seconds_spent', sa.Integer(), nullable=False, server_default='0'))
        batch_op.add_column(sa.Column('valid_until', sa.DateTime(timezone=True), nullable=True))
        batch_op.create_index('ix_completion_records_platform_id_completed_at', ['platform_id', 'completed_at'], unique=False)

    with op.batch_alter_table('contexts', schema=None) as batch_op:
        batch_op.add_column(sa.Column('roster_differences_url', sa.String(length=2000), nullable=True))

    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.add_column(sa.Column('erased_at', sa.DateTime(timezone=True), nullable=True))



def downgrade() -> None:
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.drop_column('erased_at')

    with op.batch_alter_table('contexts', schema=None) as batch_op:
        batch_op.drop_column('roster_differences_url')

    with op.batch_alter_table('completion_records', schema=None) as batch_op:
        batch_op.drop_index('ix_completion_records_platform_id_completed_at')
        batch_op.drop_column('valid_until')
        batch_op.drop_column('seconds_spent')
        batch_op.drop_column('case_attempts')

    op.drop_table('roster_members')
    op.drop_table('lti_service_tokens')
    op.drop_table('export_runs')
