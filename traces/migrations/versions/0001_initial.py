"""Initial trace store schema: runs, tasks, trajectories, turns, scores, advantages.

Revision ID: 0001_initial
Revises: (none)
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0001_initial'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('runs',
    sa.Column('id', sa.String(length=128), nullable=False),
    sa.Column('kind', sa.String(length=32), server_default='run', nullable=False),
    sa.Column('config', sa.JSON(none_as_null=True), nullable=True),
    sa.Column('status', sa.String(length=32), server_default='running', nullable=False),
    sa.Column('started_at', sa.Float(), nullable=False),
    sa.Column('ended_at', sa.Float(), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_runs'))
    )
    op.create_table('tasks',
    sa.Column('id', sa.String(length=256), nullable=False),
    sa.Column('instruction', sa.Text(), nullable=False),
    sa.Column('image', sa.String(length=512), nullable=True),
    sa.Column('setup', sa.JSON(none_as_null=True), nullable=True),
    sa.Column('answer', sa.Text(), nullable=True),
    sa.Column('verifier', sa.JSON(none_as_null=True), nullable=True),
    sa.Column('network', sa.Boolean(), server_default=sa.false(), nullable=False),
    sa.Column('metadata', sa.JSON(none_as_null=True), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_tasks'))
    )
    op.create_table('trajectories',
    sa.Column('pk', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('id', sa.String(length=256), nullable=False),
    sa.Column('run_id', sa.String(length=128), nullable=True),
    sa.Column('task_id', sa.String(length=256), nullable=False),
    sa.Column('group_id', sa.String(length=256), nullable=False),
    sa.Column('policy', sa.String(length=256), nullable=True),
    sa.Column('exit_status', sa.String(length=32), nullable=False),
    sa.Column('failure_kind', sa.String(length=32), nullable=True),
    sa.Column('reward', sa.Float(), nullable=True),
    sa.Column('answer', sa.Text(), nullable=True),
    sa.Column('metadata', sa.JSON(none_as_null=True), nullable=True),
    sa.Column('tail', sa.JSON(none_as_null=True), nullable=True),
    sa.Column('n_turns', sa.Integer(), server_default='0', nullable=False),
    sa.Column('started_at', sa.Float(), nullable=False),
    sa.Column('ended_at', sa.Float(), nullable=True),
    sa.ForeignKeyConstraint(['run_id'], ['runs.id'], name=op.f('fk_trajectories_run_id_runs'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('pk', name=op.f('pk_trajectories')),
    sa.UniqueConstraint('id', name=op.f('uq_trajectories_id'))
    )
    with op.batch_alter_table('trajectories', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_trajectories_exit_status'), ['exit_status'], unique=False)
        batch_op.create_index(batch_op.f('ix_trajectories_group_id'), ['group_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_trajectories_run_id'), ['run_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_trajectories_task_id'), ['task_id'], unique=False)

    op.create_table('advantages',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('estimator', sa.String(length=128), nullable=False),
    sa.Column('config_hash', sa.String(length=64), nullable=False),
    sa.Column('trajectory_id', sa.String(length=256), nullable=False),
    sa.Column('turn_index', sa.Integer(), nullable=False),
    sa.Column('value', sa.Float(), nullable=False),
    sa.Column('details', sa.JSON(none_as_null=True), nullable=True),
    sa.Column('created_at', sa.Float(), nullable=False),
    sa.ForeignKeyConstraint(['trajectory_id'], ['trajectories.id'], name=op.f('fk_advantages_trajectory_id_trajectories'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_advantages')),
    sa.UniqueConstraint('estimator', 'config_hash', 'trajectory_id', 'turn_index', name='uq_advantages_key')
    )
    with op.batch_alter_table('advantages', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_advantages_trajectory_id'), ['trajectory_id'], unique=False)

    op.create_table('scores',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('scorer', sa.String(length=128), nullable=False),
    sa.Column('version', sa.String(length=64), nullable=False),
    sa.Column('config_hash', sa.String(length=64), nullable=False),
    sa.Column('level', sa.String(length=16), nullable=False),
    sa.Column('trajectory_id', sa.String(length=256), nullable=False),
    sa.Column('turn_index', sa.Integer(), nullable=False),
    sa.Column('value', sa.Float(), nullable=True),
    sa.Column('details', sa.JSON(none_as_null=True), nullable=True),
    sa.Column('created_at', sa.Float(), nullable=False),
    sa.ForeignKeyConstraint(['trajectory_id'], ['trajectories.id'], name=op.f('fk_scores_trajectory_id_trajectories'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_scores')),
    sa.UniqueConstraint('scorer', 'config_hash', 'trajectory_id', 'level', 'turn_index', name='uq_scores_key')
    )
    with op.batch_alter_table('scores', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_scores_trajectory_id'), ['trajectory_id'], unique=False)

    op.create_table('turns',
    sa.Column('trajectory_id', sa.String(length=256), nullable=False),
    sa.Column('idx', sa.Integer(), nullable=False),
    sa.Column('observation', sa.JSON(none_as_null=True), nullable=False),
    sa.Column('assistant', sa.JSON(none_as_null=True), nullable=False),
    sa.Column('anchor_key', sa.String(length=64), nullable=False),
    sa.Column('tool_results', sa.JSON(none_as_null=True), nullable=True),
    sa.Column('prompt_tokens', sa.Integer(), nullable=True),
    sa.Column('completion_tokens', sa.Integer(), nullable=True),
    sa.Column('logprobs', sa.JSON(none_as_null=True), nullable=True),
    sa.Column('started_at', sa.Float(), nullable=True),
    sa.Column('duration_s', sa.Float(), nullable=True),
    sa.Column('valid', sa.Boolean(), server_default=sa.true(), nullable=False),
    sa.Column('metadata', sa.JSON(none_as_null=True), nullable=True),
    sa.ForeignKeyConstraint(['trajectory_id'], ['trajectories.id'], name=op.f('fk_turns_trajectory_id_trajectories'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('trajectory_id', 'idx', name=op.f('pk_turns'))
    )
    with op.batch_alter_table('turns', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_turns_anchor_key'), ['anchor_key'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('turns', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_turns_anchor_key'))

    op.drop_table('turns')
    with op.batch_alter_table('scores', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_scores_trajectory_id'))

    op.drop_table('scores')
    with op.batch_alter_table('advantages', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_advantages_trajectory_id'))

    op.drop_table('advantages')
    with op.batch_alter_table('trajectories', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_trajectories_task_id'))
        batch_op.drop_index(batch_op.f('ix_trajectories_run_id'))
        batch_op.drop_index(batch_op.f('ix_trajectories_group_id'))
        batch_op.drop_index(batch_op.f('ix_trajectories_exit_status'))

    op.drop_table('trajectories')
    op.drop_table('tasks')
    op.drop_table('runs')
