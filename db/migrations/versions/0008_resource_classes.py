"""resource classes: what each job needs to run

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01 10:00:00

``jobs.resource_class``: the canonical name of the resources a cell needs (jobs.resources),
``default`` for every job enqueued before (a worker launched without a class claims any job);
``worker_jobs.resource_class``: the class a dispatched worker was submitted for;
``attempts.devices`` and ``attempts.device_seconds``: the GPUs an attempt had and their seconds.
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op


revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('resource_class', sa.String(length=200), server_default='default', nullable=False))
    with op.batch_alter_table('worker_jobs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('resource_class', sa.String(length=200), nullable=True))
    with op.batch_alter_table('attempts', schema=None) as batch_op:
        batch_op.add_column(sa.Column('devices', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('device_seconds', sa.Double(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('attempts', schema=None) as batch_op:
        batch_op.drop_column('device_seconds')
        batch_op.drop_column('devices')
    with op.batch_alter_table('worker_jobs', schema=None) as batch_op:
        batch_op.drop_column('resource_class')
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.drop_column('resource_class')
