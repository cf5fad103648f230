"""lti plugin state and platform health

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = '0002'
down_revision: str | None = '0001'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:

    op.create_table('jwks_cache',
    sa.Column('jwks_url', sa.String(length=1000), nullable=False),
    sa.Column('jwks_json', sa.Text(), nullable=True),
    sa.Column('fetched_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('attempted_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('jwks_url', name=op.f('pk_jwks_cache'))
    )
    op.create_table('lti_nonces',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('issuer', sa.String(length=500), nullable=False),
    sa.Column('nonce', sa.String(length=255), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_lti_nonces')),
    sa.UniqueConstraint('issuer', 'nonce', name=op.f('uq_lti_nonces_issuer_nonce'))
    )
    with op.batch_alter_table('lti_nonces', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_lti_nonces_expires_at'), ['expires_at'], unique=False)

    op.create_table('tool_keys',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('kid', sa.String(length=64), nullable=False),
    sa.Column('private_key_pem', sa.Text(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('activated_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('retire_after', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_tool_keys')),
    sa.UniqueConstraint('kid', name=op.f('uq_tool_keys_kid'))
    )
    op.create_table('lti_login_states',
    sa.Column('state', sa.String(length=64), nullable=False),
    sa.Column('nonce', sa.String(length=64), nullable=False),
    sa.Column('platform_id', sa.Integer(), nullable=False),
    sa.Column('target_link_uri', sa.String(length=2000), nullable=False),
    sa.Column('storage_target', sa.String(length=200), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('used_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['platform_id'], ['platforms.id'], name=op.f('fk_lti_login_states_platform_id_platforms'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('state', name=op.f('pk_lti_login_states'))
    )
    with op.batch_alter_table('lti_login_states', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_lti_login_states_expires_at'), ['expires_at'], unique=False)

    op.create_table('lti_launches',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('token_hash', sa.String(length=64), nullable=False),
    sa.Column('platform_id', sa.Integer(), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=True),
    sa.Column('placement_id', sa.Integer(), nullable=True),
    sa.Column('message_type', sa.String(length=60), nullable=False),
    sa.Column('roles', sa.JSON(), nullable=False),
    sa.Column('context', sa.JSON(), nullable=False),
    sa.Column('state', sa.String(length=64), nullable=False),
    sa.Column('browser_bound', sa.Boolean(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('completed_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['placement_id'], ['placements.id'], name=op.f('fk_lti_launches_placement_id_placements'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['platform_id'], ['platforms.id'], name=op.f('fk_lti_launches_platform_id_platforms'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_lti_launches_user_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_lti_launches')),
    sa.UniqueConstraint('token_hash', name=op.f('uq_lti_launches_token_hash'))
    )
    with op.batch_alter_table('lti_launches', schema=None) as batch_op:
        batch_op.create_index('ix_lti_launches_expires_at', ['expires_at'], unique=False)

    with op.batch_alter_table('platforms', schema=None) as batch_op:
        batch_op.add_column(sa.Column('frame_origins', sa.JSON(), nullable=False, server_default='[]'))
        batch_op.add_column(sa.Column('last_launch_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('last_error_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('last_error', sa.Text(), nullable=True))
        batch_op.add_column(sa.Column('clock_skew_seconds', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('keys_status', sa.String(length=300), nullable=True))
        batch_op.add_column(sa.Column('keys_checked_at', sa.DateTime(timezone=True), nullable=True))




def downgrade() -> None:

    with op.batch_alter_table('platforms', schema=None) as batch_op:
        batch_op.drop_column('keys_checked_at')
        batch_op.drop_column('keys_status')
        batch_op.drop_column('clock_skew_seconds')
        batch_op.drop_column('last_error')
        batch_op.drop_column('last_error_at')
        batch_op.drop_column('last_launch_at')
        batch_op.drop_column('frame_origins')

    with op.batch_alter_table('lti_launches', schema=None) as batch_op:
        batch_op.drop_index('ix_lti_launches_expires_at')

    op.drop_table('lti_launches')
    with op.batch_alter_table('lti_login_states', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_lti_login_states_expires_at'))

    op.drop_table('lti_login_states')
    op.drop_table('tool_keys')
    with op.batch_alter_table('lti_nonces', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_lti_nonces_expires_at'))

    op.drop_table('lti_nonces')
    op.drop_table('jwks_cache')

