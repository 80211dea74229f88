"""attention rows: a job's per-layer, per-head attention probes

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01 12:45:00

``attention_rows``: one row per (job, step, phase, stack, layer) with the head values as JSON
lists (entropy, normalised entropy, NaN counts) and the layer's maximum entropy; what the
run-detail page draws as its layer x head heatmap. Until now these lived only in each run
folder's ``attention.jsonl``; rows of runs made before this revision are not imported.
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op


revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('attention_rows',
    sa.Column('job_id', sa.Integer(), nullable=False),
    sa.Column('step', sa.Integer(), nullable=False),
    sa.Column('phase', sa.String(length=16), nullable=False),
    sa.Column('stack', sa.String(length=16), nullable=False),
    sa.Column('layer', sa.Integer(), nullable=False),
    sa.Column('attempt', sa.Integer(), nullable=False),
    sa.Column('entropy', sa.JSON(), nullable=False),
    sa.Column('entropy_norm', sa.JSON(), nullable=False),
    sa.Column('nan', sa.JSON(), nullable=False),
    sa.Column('max_entropy', sa.Double(), nullable=True),
    sa.CheckConstraint("phase IN ('train', 'eval', 'diverged')", name=op.f('ck_attention_rows_phase')),
    sa.ForeignKeyConstraint(['job_id'], ['jobs.id'], name=op.f('fk_attention_rows_job_id_jobs'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('job_id', 'step', 'phase', 'stack', 'layer', name=op.f('pk_attention_rows')),
    sqlite_with_rowid=False,
    )


def downgrade() -> None:
    op.drop_table('attention_rows')
