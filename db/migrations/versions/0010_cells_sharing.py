"""attempts.cells_sharing: how many cells the attempt's device was shared between

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-01 19:40:00

A worker of a ``cells_per_gpu: K`` class (or ``gridlab work --cells-per-device K``) runs up to K
cells at once on its one GPU. Each attempt was charged its wall time x its devices, so K cells
sharing a GPU for an hour counted K GPU-hours. ``cells_sharing`` records K (NULL: the device
was the attempt's alone), and device-seconds are wall time x devices / K from this revision on;
attempts that ended before it keep the figure they were given.
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op


revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('attempts', schema=None) as batch_op:
        batch_op.add_column(sa.Column('cells_sharing', sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('attempts', schema=None) as batch_op:
        batch_op.drop_column('cells_sharing')
