"""Token-faithful turns: prompt ids (prefix reference + new ids), completion ids, tokenizer
identity and chat-template hash, so exports never re-tokenise what the policy sampled.

Revision ID: 0003_turn_tokens
Revises: 0002_run_lease
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0003_turn_tokens'
down_revision = '0002_run_lease'
branch_labels = None
depends_on = None

_COLUMNS = ["prompt_prefix_len", "prompt_ids", "completion_ids", "tokenizer", "template_hash",
            "prompt_hash"]


def upgrade() -> None:
    # spelled out (not imported from schema.py): a migration must not change when the model does
    with op.batch_alter_table('turns') as batch:
        batch.add_column(sa.Column('prompt_prefix_len', sa.Integer(), nullable=True))
        batch.add_column(sa.Column('prompt_ids', sa.JSON(none_as_null=True), nullable=True))
        batch.add_column(sa.Column('completion_ids', sa.JSON(none_as_null=True), nullable=True))
        batch.add_column(sa.Column('tokenizer', sa.String(length=256), nullable=True))
        batch.add_column(sa.Column('template_hash', sa.String(length=64), nullable=True))
        batch.add_column(sa.Column('prompt_hash', sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('turns') as batch:
        for name in reversed(_COLUMNS):
            batch.drop_column(name)
