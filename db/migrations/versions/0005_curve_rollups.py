"""curve roll-ups: finished jobs' curves in buckets, for the dashboard

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30 00:20:00

The queue rolls up every curve of a job when the job reaches a final state
(jobs.queries.write_curve_rollups); the dashboard's Curves page reads those buckets
instead of every logged point. This migration also rolls up the jobs that were
already final, with the same rule (level 0: grain = ceil(span / 1000) steps; level 1:
4 grains of level 0): a minute or so per 10 million metric points.
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op


revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None

#: db.models.ROLLUP_BUCKETS and ROLLUP_FACTOR when this migration was written (frozen here).
ROLLUP_BUCKETS = 1000
ROLLUP_FACTOR = 4
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
    # As jobs.queries.write_curve_rollups, for all of them at once.
    op.execute(
        "INSERT INTO curve_rollups (job_id, name, level, first_step, last_step, grain, points) "
        f"SELECT m.job_id, m.name, 0, MIN(m.step), MAX(m.step), (MAX(m.step) - MIN(m.step) + {ROLLUP_BUCKETS}) / "
        f"{ROLLUP_BUCKETS}, COUNT(*) FROM metrics m JOIN jobs j ON j.id = m.job_id WHERE j.state IN {FINAL_STATES} "
        "GROUP BY m.job_id, m.name"
    )
    op.execute(
        "INSERT INTO curve_rollups (job_id, name, level, first_step, last_step, grain, points) "
        f"SELECT job_id, name, 1, first_step, last_step, grain * {ROLLUP_FACTOR}, points FROM curve_rollups"
    )
    op.execute(
        "INSERT INTO curve_buckets (job_id, name, level, bucket, last_step, points, value_count, value_sum, value_min, "
        "value_max) SELECT m.job_id, m.name, 0, (m.step - r.first_step) / r.grain, MAX(m.step), COUNT(*), "
        "COUNT(m.value), SUM(m.value), MIN(m.value), MAX(m.value) "
        "FROM curve_rollups r JOIN metrics m ON m.job_id = r.job_id AND m.name = r.name WHERE r.level = 0 "
        "GROUP BY m.job_id, m.name, (m.step - r.first_step) / r.grain "
        "ORDER BY m.job_id, m.name, (m.step - r.first_step) / r.grain"  # a curve's rows share heap pages
    )
    op.execute(
        "INSERT INTO curve_buckets (job_id, name, level, bucket, last_step, points, value_count, value_sum, value_min, "
        f"value_max) SELECT job_id, name, 1, bucket / {ROLLUP_FACTOR}, MAX(last_step), SUM(points), SUM(value_count), "
        "SUM(value_sum), MIN(value_min), MAX(value_max) FROM curve_buckets WHERE level = 0 "
        f"GROUP BY job_id, name, bucket / {ROLLUP_FACTOR} ORDER BY job_id, name, bucket / {ROLLUP_FACTOR}"
    )


def downgrade() -> None:
    op.drop_table('curve_buckets')
    op.drop_table('curve_rollups')
