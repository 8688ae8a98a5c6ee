"""Run leases: one live driver per run id, kept alive by a heartbeat.

Revision ID: 0002_run_lease
Revises: 0001_initial
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0002_run_lease'
down_revision = '0001_initial'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('run_leases',
    sa.Column('run_id', sa.String(length=128), nullable=False),
    sa.Column('holder', sa.String(length=256), nullable=False),
    sa.Column('acquired_at', sa.Float(), nullable=False),
    sa.Column('heartbeat_at', sa.Float(), nullable=False),
    sa.Column('ttl_s', sa.Float(), nullable=False),
    sa.PrimaryKeyConstraint('run_id', name=op.f('pk_run_leases'))
    )


def downgrade() -> None:
    op.drop_table('run_leases')
