"""run identity: the database's own id, the recorded checkpoint's step, exact retries

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01 09:00:00

- ``gridlab_meta`` holds ``database_id``, a random id minted here: run folders on disk are
  named by it, so two databases (or a dropped and recreated one) never share a run folder;
- ``jobs.checkpoint_step``: the step of the sealed checkpoint the database recorded, which a
  retried attempt resumes from (its curve is cut back to that step);
- ``jobs.metrics_batch``: the newest metrics batch the running attempt stored;
- ``attempts.error_type`` (the failure's exception type) and ``attempts.resumed_from_step``.
"""
from __future__ import annotations

import uuid

import sqlalchemy as sa
from alembic import op


revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    meta = op.create_table('gridlab_meta',
    sa.Column('key', sa.String(length=64), nullable=False),
    sa.Column('value', sa.Text(), nullable=False),
    sa.PrimaryKeyConstraint('key', name=op.f('pk_gridlab_meta'))
    )
    op.bulk_insert(meta, [{'key': 'database_id', 'value': uuid.uuid4().hex}])
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('checkpoint_step', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('metrics_batch', sa.Integer(), server_default='0', nullable=False))
    with op.batch_alter_table('attempts', schema=None) as batch_op:
        batch_op.add_column(sa.Column('error_type', sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column('resumed_from_step', sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('attempts', schema=None) as batch_op:
        batch_op.drop_column('resumed_from_step')
        batch_op.drop_column('error_type')
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.drop_column('metrics_batch')
        batch_op.drop_column('checkpoint_step')
    op.drop_table('gridlab_meta')
