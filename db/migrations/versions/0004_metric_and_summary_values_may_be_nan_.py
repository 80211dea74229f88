"""metric and summary values may be NaN (stored as NULL)

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23 01:29:58.886601
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op


revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('metrics', schema=None) as batch_op:
        batch_op.alter_column('value',
               existing_type=sa.Double(),
               nullable=True)

    with op.batch_alter_table('summaries', schema=None) as batch_op:
        batch_op.alter_column('value',
               existing_type=sa.Double(),
               nullable=True)



def downgrade() -> None:
    with op.batch_alter_table('summaries', schema=None) as batch_op:
        batch_op.alter_column('value',
               existing_type=sa.Double(),
               nullable=False)

    with op.batch_alter_table('metrics', schema=None) as batch_op:
        batch_op.alter_column('value',
               existing_type=sa.Double(),
               nullable=False)

