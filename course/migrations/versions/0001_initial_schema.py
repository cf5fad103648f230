"""initial schema

Revision ID: 0001
Revises: 
Create Date: 2026-11-23
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = '0001'
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:

    op.create_table('login_throttles',
    sa.Column('key', sa.String(length=200), nullable=False),
    sa.Column('failures', sa.Integer(), nullable=False),
    sa.Column('window_started_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('locked_until', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('key', name=op.f('pk_login_throttles'))
    )
    op.create_table('platforms',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('issuer', sa.String(length=500), nullable=False),
    sa.Column('client_id', sa.String(length=255), nullable=False),
    sa.Column('auth_login_url', sa.String(length=1000), nullable=False),
    sa.Column('auth_token_url', sa.String(length=1000), nullable=False),
    sa.Column('auth_token_audience', sa.String(length=1000), nullable=True),
    sa.Column('jwks_url', sa.String(length=1000), nullable=False),
    sa.Column('registration', sa.String(length=20), nullable=False),
    sa.Column('role_overrides', sa.JSON(), nullable=False),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint("registration IN ('static', 'dynamic', 'development')", name=op.f('ck_platforms_registration_kind')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_platforms')),
    sa.UniqueConstraint('issuer', 'client_id', name=op.f('uq_platforms_issuer_client_id'))
    )
    op.create_table('api_tokens',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('platform_id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('role', sa.String(length=20), nullable=False),
    sa.Column('token_hash', sa.String(length=64), nullable=False),
    sa.Column('prefix', sa.String(length=16), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('revoked_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('last_used_at', sa.DateTime(timezone=True), nullable=True),
    sa.CheckConstraint("role IN ('hr', 'admin')", name=op.f('ck_api_tokens_role')),
    sa.ForeignKeyConstraint(['platform_id'], ['platforms.id'], name=op.f('fk_api_tokens_platform_id_platforms'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_api_tokens')),
    sa.UniqueConstraint('token_hash', name=op.f('uq_api_tokens_token_hash'))
    )
    op.create_table('content_items',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('platform_id', sa.Integer(), nullable=True),
    sa.Column('kind', sa.String(length=10), nullable=False),
    sa.Column('slug', sa.String(length=100), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint("kind IN ('lesson', 'case')", name=op.f('ck_content_items_kind')),
    sa.ForeignKeyConstraint(['platform_id'], ['platforms.id'], name=op.f('fk_content_items_platform_id_platforms'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_content_items'))
    )
    with op.batch_alter_table('content_items', schema=None) as batch_op:
        batch_op.create_index('uq_content_items_platform_kind_slug', ['platform_id', 'kind', 'slug'], unique=True, sqlite_where=sa.text('platform_id IS NOT NULL'), postgresql_where=sa.text('platform_id IS NOT NULL'))
        batch_op.create_index('uq_content_items_shipped_kind_slug', ['kind', 'slug'], unique=True, sqlite_where=sa.text('platform_id IS NULL'), postgresql_where=sa.text('platform_id IS NULL'))

    op.create_table('deployments',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('platform_id', sa.Integer(), nullable=False),
    sa.Column('deployment_id', sa.String(length=255), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['platform_id'], ['platforms.id'], name=op.f('fk_deployments_platform_id_platforms'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_deployments')),
    sa.UniqueConstraint('platform_id', 'deployment_id', name=op.f('uq_deployments_platform_id_deployment_id'))
    )
    op.create_table('local_accounts',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('username', sa.String(length=80), nullable=False),
    sa.Column('email', sa.String(length=320), nullable=True),
    sa.Column('role', sa.String(length=20), nullable=False),
    sa.Column('platform_id', sa.Integer(), nullable=True),
    sa.Column('password_hash', sa.String(length=255), nullable=False),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('password_changed_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('last_login_at', sa.DateTime(timezone=True), nullable=True),
    sa.CheckConstraint("role = 'admin' OR platform_id IS NOT NULL", name=op.f('ck_local_accounts_tenant_required')),
    sa.CheckConstraint("role IN ('hr', 'trainer', 'admin')", name=op.f('ck_local_accounts_role')),
    sa.ForeignKeyConstraint(['platform_id'], ['platforms.id'], name=op.f('fk_local_accounts_platform_id_platforms'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_local_accounts')),
    sa.UniqueConstraint('username', name=op.f('uq_local_accounts_username'))
    )
    op.create_table('users',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('platform_id', sa.Integer(), nullable=False),
    sa.Column('sub', sa.String(length=255), nullable=False),
    sa.Column('name', sa.String(length=300), nullable=True),
    sa.Column('given_name', sa.String(length=200), nullable=True),
    sa.Column('family_name', sa.String(length=200), nullable=True),
    sa.Column('email', sa.String(length=320), nullable=True),
    sa.Column('lis_person_sourcedid', sa.String(length=255), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('last_launch_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['platform_id'], ['platforms.id'], name=op.f('fk_users_platform_id_platforms'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_users')),
    sa.UniqueConstraint('platform_id', 'sub', name=op.f('uq_users_platform_id_sub'))
    )
    op.create_table('content_versions',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('item_id', sa.Integer(), nullable=False),
    sa.Column('number', sa.Integer(), nullable=False),
    sa.Column('title', sa.String(length=300), nullable=False),
    sa.Column('source', sa.Text(), nullable=False),
    sa.Column('checksum', sa.String(length=64), nullable=False),
    sa.Column('meta', sa.JSON(), nullable=False),
    sa.Column('published_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('published_by', sa.String(length=300), nullable=True),
    sa.CheckConstraint('number >= 1', name=op.f('ck_content_versions_number_positive')),
    sa.ForeignKeyConstraint(['item_id'], ['content_items.id'], name=op.f('fk_content_versions_item_id_content_items'), ondelete='RESTRICT'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_content_versions')),
    sa.UniqueConstraint('item_id', 'number', name=op.f('uq_content_versions_item_id_number'))
    )
    op.create_table('contexts',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('platform_id', sa.Integer(), nullable=False),
    sa.Column('deployment_id', sa.Integer(), nullable=False),
    sa.Column('lms_context_id', sa.String(length=255), nullable=False),
    sa.Column('title', sa.String(length=500), nullable=True),
    sa.Column('label', sa.String(length=200), nullable=True),
    sa.Column('memberships_url', sa.String(length=1000), nullable=True),
    sa.Column('roster_synced_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['deployment_id'], ['deployments.id'], name=op.f('fk_contexts_deployment_id_deployments'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['platform_id'], ['platforms.id'], name=op.f('fk_contexts_platform_id_platforms'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_contexts')),
    sa.UniqueConstraint('deployment_id', 'lms_context_id', name=op.f('uq_contexts_deployment_id_lms_context_id'))
    )
    op.create_table('content_drafts',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('item_id', sa.Integer(), nullable=False),
    sa.Column('source', sa.Text(), nullable=False),
    sa.Column('revision', sa.Integer(), nullable=False),
    sa.Column('based_on_version_id', sa.Integer(), nullable=True),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_by', sa.String(length=300), nullable=True),
    sa.ForeignKeyConstraint(['based_on_version_id'], ['content_versions.id'], name=op.f('fk_content_drafts_based_on_version_id_content_versions'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['item_id'], ['content_items.id'], name=op.f('fk_content_drafts_item_id_content_items'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_content_drafts')),
    sa.UniqueConstraint('item_id', name=op.f('uq_content_drafts_item_id'))
    )
    op.create_table('placements',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('platform_id', sa.Integer(), nullable=False),
    sa.Column('context_id', sa.Integer(), nullable=False),
    sa.Column('resource_link_id', sa.String(length=255), nullable=False),
    sa.Column('title', sa.String(length=500), nullable=True),
    sa.Column('target_kind', sa.String(length=20), nullable=False),
    sa.Column('target_ref', sa.String(length=100), nullable=True),
    sa.Column('lineitem_url', sa.String(length=1000), nullable=True),
    sa.Column('lineitems_url', sa.String(length=1000), nullable=True),
    sa.Column('settings', sa.JSON(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint("target_kind IN ('course', 'module', 'lesson', 'case')", name=op.f('ck_placements_target_kind')),
    sa.ForeignKeyConstraint(['context_id'], ['contexts.id'], name=op.f('fk_placements_context_id_contexts'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['platform_id'], ['platforms.id'], name=op.f('fk_placements_platform_id_platforms'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_placements')),
    sa.UniqueConstraint('context_id', 'resource_link_id', name=op.f('uq_placements_context_id_resource_link_id'))
    )
    op.create_table('case_attempts',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('placement_id', sa.Integer(), nullable=False),
    sa.Column('case_slug', sa.String(length=100), nullable=False),
    sa.Column('content_version_id', sa.Integer(), nullable=False),
    sa.Column('number', sa.Integer(), nullable=False),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('current_node', sa.String(length=100), nullable=True),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('last_step_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('ended_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('ending_node', sa.String(length=100), nullable=True),
    sa.Column('score', sa.Integer(), nullable=False),
    sa.Column('percent', sa.Integer(), nullable=True),
    sa.Column('passed', sa.Boolean(), nullable=True),
    sa.Column('seconds_spent', sa.Integer(), nullable=False),
    sa.CheckConstraint("status IN ('active', 'ended', 'abandoned')", name=op.f('ck_case_attempts_status')),
    sa.CheckConstraint('number >= 1', name=op.f('ck_case_attempts_number_positive')),
    sa.CheckConstraint('percent IS NULL OR (percent >= 0 AND percent <= 100)', name=op.f('ck_case_attempts_percent')),
    sa.ForeignKeyConstraint(['content_version_id'], ['content_versions.id'], name=op.f('fk_case_attempts_content_version_id_content_versions'), ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['placement_id'], ['placements.id'], name=op.f('fk_case_attempts_placement_id_placements'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_case_attempts_user_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_case_attempts')),
    sa.UniqueConstraint('user_id', 'placement_id', 'case_slug', 'number', name=op.f('uq_case_attempts_user_id_placement_id_case_slug_number'))
    )
    op.create_table('completion_records',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('public_id', sa.String(length=36), nullable=False),
    sa.Column('platform_id', sa.Integer(), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=True),
    sa.Column('placement_id', sa.Integer(), nullable=True),
    sa.Column('sequence', sa.Integer(), nullable=False),
    sa.Column('learner_sub', sa.String(length=255), nullable=True),
    sa.Column('learner_name', sa.String(length=300), nullable=True),
    sa.Column('learner_email', sa.String(length=320), nullable=True),
    sa.Column('context_lms_id', sa.String(length=255), nullable=False),
    sa.Column('context_title', sa.String(length=500), nullable=True),
    sa.Column('resource_link_id', sa.String(length=255), nullable=False),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('score_percent', sa.Integer(), nullable=True),
    sa.Column('completed_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('content_versions', sa.JSON(), nullable=False),
    sa.Column('attested_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('attestation_text', sa.Text(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint("status IN ('completed', 'passed', 'failed')", name=op.f('ck_completion_records_status')),
    sa.CheckConstraint('score_percent IS NULL OR (score_percent >= 0 AND score_percent <= 100)', name=op.f('ck_completion_records_score_percent')),
    sa.ForeignKeyConstraint(['placement_id'], ['placements.id'], name=op.f('fk_completion_records_placement_id_placements'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['platform_id'], ['platforms.id'], name=op.f('fk_completion_records_platform_id_platforms'), ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_completion_records_user_id_users'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_completion_records')),
    sa.UniqueConstraint('public_id', name=op.f('uq_completion_records_public_id')),
    sa.UniqueConstraint('user_id', 'placement_id', 'sequence', name=op.f('uq_completion_records_user_id_placement_id_sequence'))
    )
    op.create_table('grade_outbox',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('platform_id', sa.Integer(), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('placement_id', sa.Integer(), nullable=False),
    sa.Column('lineitem_url', sa.String(length=1000), nullable=False),
    sa.Column('dedupe_key', sa.String(length=200), nullable=False),
    sa.Column('score_given', sa.Double(), nullable=False),
    sa.Column('score_maximum', sa.Double(), nullable=False),
    sa.Column('activity_progress', sa.String(length=30), nullable=False),
    sa.Column('grading_progress', sa.String(length=30), nullable=False),
    sa.Column('comment', sa.Text(), nullable=True),
    sa.Column('scored_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('next_attempt_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('locked_until', sa.DateTime(timezone=True), nullable=True),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('sent_at', sa.DateTime(timezone=True), nullable=True),
    sa.CheckConstraint("status IN ('pending', 'sent', 'failed')", name=op.f('ck_grade_outbox_status')),
    sa.CheckConstraint('attempts >= 0', name=op.f('ck_grade_outbox_attempts_not_negative')),
    sa.ForeignKeyConstraint(['placement_id'], ['placements.id'], name=op.f('fk_grade_outbox_placement_id_placements'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['platform_id'], ['platforms.id'], name=op.f('fk_grade_outbox_platform_id_platforms'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_grade_outbox_user_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_grade_outbox')),
    sa.UniqueConstraint('dedupe_key', name=op.f('uq_grade_outbox_dedupe_key'))
    )
    with op.batch_alter_table('grade_outbox', schema=None) as batch_op:
        batch_op.create_index('ix_grade_outbox_due', ['status', 'next_attempt_at'], unique=False)

    op.create_table('lesson_progress',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('placement_id', sa.Integer(), nullable=False),
    sa.Column('lesson_slug', sa.String(length=100), nullable=False),
    sa.Column('content_version_id', sa.Integer(), nullable=False),
    sa.Column('first_opened_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('last_opened_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('completed_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('completed_version_id', sa.Integer(), nullable=True),
    sa.Column('seconds_spent', sa.Integer(), nullable=False),
    sa.CheckConstraint('seconds_spent >= 0', name=op.f('ck_lesson_progress_seconds_spent_not_negative')),
    sa.ForeignKeyConstraint(['completed_version_id'], ['content_versions.id'], name=op.f('fk_lesson_progress_completed_version_id_content_versions'), ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['content_version_id'], ['content_versions.id'], name=op.f('fk_lesson_progress_content_version_id_content_versions'), ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['placement_id'], ['placements.id'], name=op.f('fk_lesson_progress_placement_id_placements'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_lesson_progress_user_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_lesson_progress')),
    sa.UniqueConstraint('user_id', 'placement_id', 'lesson_slug', name=op.f('uq_lesson_progress_user_id_placement_id_lesson_slug'))
    )
    op.create_table('case_steps',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('attempt_id', sa.Integer(), nullable=False),
    sa.Column('position', sa.Integer(), nullable=False),
    sa.Column('node_id', sa.String(length=100), nullable=False),
    sa.Column('choice_id', sa.String(length=100), nullable=False),
    sa.Column('score', sa.Integer(), nullable=False),
    sa.Column('withdrawn', sa.Boolean(), nullable=False),
    sa.Column('answered_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint('position >= 1', name=op.f('ck_case_steps_position_positive')),
    sa.ForeignKeyConstraint(['attempt_id'], ['case_attempts.id'], name=op.f('fk_case_steps_attempt_id_case_attempts'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_case_steps')),
    sa.UniqueConstraint('attempt_id', 'position', name=op.f('uq_case_steps_attempt_id_position'))
    )



def downgrade() -> None:

    op.drop_table('case_steps')
    op.drop_table('lesson_progress')
    with op.batch_alter_table('grade_outbox', schema=None) as batch_op:
        batch_op.drop_index('ix_grade_outbox_due')

    op.drop_table('grade_outbox')
    op.drop_table('completion_records')
    op.drop_table('case_attempts')
    op.drop_table('placements')
    op.drop_table('content_drafts')
    op.drop_table('contexts')
    op.drop_table('content_versions')
    op.drop_table('users')
    op.drop_table('local_accounts')
    op.drop_table('deployments')
    with op.batch_alter_table('content_items', schema=None) as batch_op:
        batch_op.drop_index('uq_content_items_shipped_kind_slug', sqlite_where=sa.text('platform_id IS NULL'), postgresql_where=sa.text('platform_id IS NULL'))
        batch_op.drop_index('uq_content_items_platform_kind_slug', sqlite_where=sa.text('platform_id IS NOT NULL'), postgresql_where=sa.text('platform_id IS NOT NULL'))

    op.drop_table('content_items')
    op.drop_table('api_tokens')
    op.drop_table('platforms')
    op.drop_table('login_throttles')

