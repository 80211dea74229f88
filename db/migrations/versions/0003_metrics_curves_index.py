"""covering index for the dashboard's curves

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23 01:10:00

The dashboard reads one metric of many jobs at a time, bucketed by step. On a
10-million-point table this index lets both backends answer from the index alone
(PostgreSQL otherwise scans the whole table). On a big PostgreSQL database, building
it locks metric writes for a while: upgrade between grid runs.
"""
from __future__ import annotations

from alembic import op


revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('metrics', schema=None) as batch_op:
        batch_op.create_index('ix_metrics_curves', ['job_id', 'name', 'step', 'value'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('metrics', schema=None) as batch_op:
        batch_op.drop_index('ix_metrics_curves')
