"""dependencies, generations, judgments, worker jobs

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23 00:43:16.404508
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op


revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('worker_jobs',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('executor', sa.String(length=16), nullable=False),
    sa.Column('external_id', sa.String(length=64), nullable=False),
    sa.Column('array_index', sa.Integer(), nullable=True),
    sa.Column('state', sa.String(length=24), nullable=False),
    sa.Column('reason', sa.Text(), nullable=True),
    sa.Column('folder', sa.Text(), nullable=True),
    sa.Column('submitted_at', sa.Double(), nullable=False),
    sa.Column('updated_at', sa.Double(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_worker_jobs')),
    sa.UniqueConstraint('executor', 'external_id', name=op.f('uq_worker_jobs_executor_external_id'))
    )
    with op.batch_alter_table('worker_jobs', schema=None) as batch_op:
        batch_op.create_index('ix_worker_jobs_state', ['state'], unique=False)

    op.create_table('generations',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('job_id', sa.Integer(), nullable=False),
    sa.Column('attempt', sa.Integer(), nullable=False),
    sa.Column('prompt_set', sa.String(length=200), nullable=False),
    sa.Column('question_id', sa.String(length=100), nullable=False),
    sa.Column('category', sa.String(length=100), nullable=True),
    sa.Column('turn', sa.Integer(), nullable=False),
    sa.Column('prompt', sa.Text(), nullable=False),
    sa.Column('output', sa.Text(), nullable=False),
    sa.Column('new_tokens', sa.Integer(), nullable=False),
    sa.Column('latency_s', sa.Double(), nullable=False),
    sa.Column('decoding', sa.JSON(), nullable=False),
    sa.Column('created_at', sa.Double(), nullable=False),
    sa.ForeignKeyConstraint(['job_id'], ['jobs.id'], name=op.f('fk_generations_job_id_jobs'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_generations')),
    sa.UniqueConstraint('job_id', 'prompt_set', 'question_id', 'turn', name=op.f('uq_generations_job_id_prompt_set_question_id_turn'))
    )
    op.create_table('job_dependencies',
    sa.Column('job_id', sa.Integer(), nullable=False),
    sa.Column('depends_on', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['depends_on'], ['jobs.id'], name=op.f('fk_job_dependencies_depends_on_jobs'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['job_id'], ['jobs.id'], name=op.f('fk_job_dependencies_job_id_jobs'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('job_id', 'depends_on', name=op.f('pk_job_dependencies'))
    )
    with op.batch_alter_table('job_dependencies', schema=None) as batch_op:
        batch_op.create_index('ix_job_dependencies_depends_on', ['depends_on'], unique=False)

    op.create_table('judgments',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('job_id', sa.Integer(), nullable=False),
    sa.Column('arm_a', sa.Integer(), nullable=False),
    sa.Column('arm_b', sa.Integer(), nullable=False),
    sa.Column('judge', sa.String(length=100), nullable=False),
    sa.Column('prompt_set', sa.String(length=200), nullable=False),
    sa.Column('question_id', sa.String(length=100), nullable=False),
    sa.Column('turn', sa.Integer(), nullable=False),
    sa.Column('winner', sa.String(length=8), nullable=False),
    sa.Column('logit', sa.Double(), nullable=False),
    sa.Column('created_at', sa.Double(), nullable=False),
    sa.ForeignKeyConstraint(['arm_a'], ['jobs.id'], name=op.f('fk_judgments_arm_a_jobs'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['arm_b'], ['jobs.id'], name=op.f('fk_judgments_arm_b_jobs'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['job_id'], ['jobs.id'], name=op.f('fk_judgments_job_id_jobs'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_judgments')),
    sa.UniqueConstraint('job_id', 'prompt_set', 'question_id', 'turn', name=op.f('uq_judgments_job_id_prompt_set_question_id_turn'))
    )


def downgrade() -> None:
    op.drop_table('judgments')
    with op.batch_alter_table('job_dependencies', schema=None) as batch_op:
        batch_op.drop_index('ix_job_dependencies_depends_on')

    op.drop_table('job_dependencies')
    op.drop_table('generations')
    with op.batch_alter_table('worker_jobs', schema=None) as batch_op:
        batch_op.drop_index('ix_worker_jobs_state')

    op.drop_table('worker_jobs')
