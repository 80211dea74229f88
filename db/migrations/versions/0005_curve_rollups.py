"""curve roll-ups: finished jobs' curves in buckets, for the dashboard

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30 00:20:00

The queue rolls up every curve of a job when the job reaches a final state
(jobs.queries.write_curve_rollups); the dashboard's Curves page reads those buckets
instead of every logged point. This migration also rolls up the jobs that were
already final, with the same rule (per level, grain = ceil(span / 1000) and
ceil(span / 250) steps): a minute or so per 10 million metric points.
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op


revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None

#: db.models.ROLLUP_LEVELS when this migration was written (frozen here).
ROLLUP_LEVELS = (1000, 250)
FINAL_STATES = "('succeeded', 'failed', 'diverged', 'cancelled')"


def upgrade() -> None:
    op.create_table('curve_rollups',
    sa.Column('job_id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('level', sa.Integer(), nullable=False),
    sa.Column('first_step', sa.Integer(), nullable=False),
    sa.Column('last_step', sa.Integer(), nullable=False),
    sa.Column('grain', sa.Integer(), nullable=False),
    sa.Column('points', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['job_id'], ['jobs.id'], name=op.f('fk_curve_rollups_job_id_jobs'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('job_id', 'name', 'level', name=op.f('pk_curve_rollups'))
    )
    op.create_table('curve_buckets',
    sa.Column('job_id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('level', sa.Integer(), nullable=False),
    sa.Column('bucket', sa.Integer(), nullable=False),
    sa.Column('last_step', sa.Integer(), nullable=False),
    sa.Column('points', sa.Integer(), nullable=False),
    sa.Column('value_count', sa.Integer(), nullable=False),
    sa.Column('value_sum', sa.Double(), nullable=True),
    sa.Column('value_min', sa.Double(), nullable=True),
    sa.Column('value_max', sa.Double(), nullable=True),
    sa.ForeignKeyConstraint(['job_id', 'name', 'level'], ['curve_rollups.job_id', 'curve_rollups.name', 'curve_rollups.level'],
                            name=op.f('fk_curve_buckets_job_id_curve_rollups'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('job_id', 'name', 'level', 'bucket', name=op.f('pk_curve_buckets')),
    sqlite_with_rowid=False,
    )
    # Jobs that were final before this upgrade: the queue will not finish them again.
    for level, buckets in enumerate(ROLLUP_LEVELS):
        op.execute(
            "INSERT INTO curve_rollups (job_id, name, level, first_step, last_step, grain, points) "
            f"SELECT m.job_id, m.name, {level}, MIN(m.step), MAX(m.step), (MAX(m.step) - MIN(m.step) + {buckets}) / {buckets}, "
            f"COUNT(*) FROM metrics m JOIN jobs j ON j.id = m.job_id WHERE j.state IN {FINAL_STATES} "
            "GROUP BY m.job_id, m.name"
        )
    op.execute(
        "INSERT INTO curve_buckets (job_id, name, level, bucket, last_step, points, value_count, value_sum, value_min, "
        "value_max) SELECT m.job_id, m.name, r.level, (m.step - r.first_step) / r.grain, MAX(m.step), COUNT(*), "
        "COUNT(m.value), SUM(m.value), MIN(m.value), MAX(m.value) "
        "FROM curve_rollups r JOIN metrics m ON m.job_id = r.job_id AND m.name = r.name "
        "GROUP BY m.job_id, m.name, r.level, (m.step - r.first_step) / r.grain"
    )


def downgrade() -> None:
    op.drop_table('curve_buckets')
    op.drop_table('curve_rollups')
