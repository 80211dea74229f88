"""provenance: the code, environment and machine of every attempt; every grid file version

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02 00:00:00

New tables, each row stored once and shared: ``grid_versions`` (every grid file text an
enqueue read), ``code_versions`` (source files hash, git commit, dirty flag, diff),
``environments`` (key package versions and the full ``pip freeze``), ``machines`` (host,
CPUs, GPUs, driver, CUDA) and ``provenances`` (one code x environment x machine x code
folder). Two nullable columns point at them: ``jobs.grid_version_id`` and
``attempts.provenance_id``.

Rows written before this revision have no provenance (NULL). Each grid's stored text
(``grids.source_text``, the last one enqueued) becomes its version 1; its jobs stay
NULL, since which text created which job was not recorded.

(Written on a branch whose head was 0005; the run-identity work adds 0006. When both
land, this revision's down_revision becomes 0006: it touches nothing 0006 does.)

On SQLite, batch mode adds the two columns by recreating ``jobs`` and ``attempts`` (copy,
DROP, RENAME). Dropping ``jobs`` with foreign keys on would cascade-delete every attempt,
event and metric, so this revision refuses to run with them on; db.schema.upgrade turns
them off for the migration and runs ``PRAGMA foreign_key_check`` before it commits.
"""
from __future__ import annotations

import hashlib

import sqlalchemy as sa
from alembic import op


revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('grid_versions',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('grid_id', sa.Integer(), nullable=False),
    sa.Column('number', sa.Integer(), nullable=False),
    sa.Column('text_hash', sa.String(length=64), nullable=False),
    sa.Column('source_path', sa.Text(), nullable=True),
    sa.Column('source_text', sa.Text(), nullable=False),
    sa.Column('created_at', sa.Double(), nullable=False),
    sa.ForeignKeyConstraint(['grid_id'], ['grids.id'], name=op.f('fk_grid_versions_grid_id_grids'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_grid_versions')),
    sa.UniqueConstraint('grid_id', 'number', name=op.f('uq_grid_versions_grid_id_number')),
    sa.UniqueConstraint('grid_id', 'text_hash', name=op.f('uq_grid_versions_grid_id_text_hash'))
    )
    op.create_table('code_versions',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('fingerprint', sa.String(length=64), nullable=False),
    sa.Column('files_hash', sa.String(length=64), nullable=False),
    sa.Column('files', sa.Integer(), nullable=False),
    sa.Column('git_commit', sa.String(length=64), nullable=True),
    sa.Column('git_dirty', sa.Boolean(), nullable=True),
    sa.Column('diff_hash', sa.String(length=64), nullable=True),
    sa.Column('diff', sa.Text(), nullable=True),
    sa.Column('created_at', sa.Double(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_code_versions')),
    sa.UniqueConstraint('fingerprint', name=op.f('uq_code_versions_fingerprint'))
    )
    op.create_table('environments',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('fingerprint', sa.String(length=64), nullable=False),
    sa.Column('python', sa.String(length=100), nullable=False),
    sa.Column('packages', sa.JSON(), nullable=False),
    sa.Column('freeze', sa.Text(), nullable=False),
    sa.Column('created_at', sa.Double(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_environments')),
    sa.UniqueConstraint('fingerprint', name=op.f('uq_environments_fingerprint'))
    )
    op.create_table('machines',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('fingerprint', sa.String(length=64), nullable=False),
    sa.Column('host', sa.String(length=200), nullable=False),
    sa.Column('platform', sa.String(length=200), nullable=False),
    sa.Column('cpu_count', sa.Integer(), nullable=False),
    sa.Column('gpu_count', sa.Integer(), nullable=False),
    sa.Column('gpu_name', sa.String(length=200), nullable=True),
    sa.Column('gpu_driver', sa.String(length=64), nullable=True),
    sa.Column('cuda_driver', sa.String(length=32), nullable=True),
    sa.Column('created_at', sa.Double(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_machines')),
    sa.UniqueConstraint('fingerprint', name=op.f('uq_machines_fingerprint'))
    )
    op.create_table('provenances',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('fingerprint', sa.String(length=64), nullable=False),
    sa.Column('code_id', sa.Integer(), nullable=False),
    sa.Column('environment_id', sa.Integer(), nullable=False),
    sa.Column('machine_id', sa.Integer(), nullable=False),
    sa.Column('code_root', sa.Text(), nullable=False),
    sa.Column('pinned', sa.Boolean(), nullable=False),
    sa.Column('created_at', sa.Double(), nullable=False),
    sa.ForeignKeyConstraint(['code_id'], ['code_versions.id'], name=op.f('fk_provenances_code_id_code_versions')),
    sa.ForeignKeyConstraint(['environment_id'], ['environments.id'], name=op.f('fk_provenances_environment_id_environments')),
    sa.ForeignKeyConstraint(['machine_id'], ['machines.id'], name=op.f('fk_provenances_machine_id_machines')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_provenances')),
    sa.UniqueConstraint('fingerprint', name=op.f('uq_provenances_fingerprint'))
    )
    _add_reference('jobs', 'grid_version_id', 'grid_versions', ondelete='SET NULL')
    _add_reference('attempts', 'provenance_id', 'provenances')

    # Each grid's stored text (the last one enqueued) is its version 1.
    conn = op.get_bind()
    grids = sa.table('grids', sa.column('id'), sa.column('source_path'), sa.column('source_text'),
                     sa.column('created_at'))
    versions = sa.table('grid_versions', sa.column('grid_id'), sa.column('number'), sa.column('text_hash'),
                        sa.column('source_path'), sa.column('source_text'), sa.column('created_at'))
    rows = conn.execute(sa.select(grids).where(grids.c.source_text.is_not(None))).all()
    if rows:
        conn.execute(sa.insert(versions), [
            {"grid_id": r.id, "number": 1, "text_hash": hashlib.sha256(r.source_text.encode("utf-8", "surrogatepass")).hexdigest(),
             "source_path": r.source_path, "source_text": r.source_text, "created_at": r.created_at}
            for r in rows
        ])


def _add_reference(table: str, column: str, target: str, ondelete: str | None = None) -> None:
    """A nullable integer column referencing ``target.id``, named by the models' convention.
    On SQLite, batch mode recreates the table; db.schema.upgrade runs migrations there with
    foreign keys off (and checks them before committing), so nothing cascades."""
    if op.get_bind().dialect.name == "sqlite":
        on = op.get_bind().exec_driver_sql("PRAGMA foreign_keys").scalar()
        if on:
            raise RuntimeError("0007 recreates tables on SQLite: run it with foreign keys off (`gridlab db upgrade`)")
    with op.batch_alter_table(table, schema=None) as batch_op:
        batch_op.add_column(sa.Column(column, sa.Integer(), nullable=True))
        batch_op.create_foreign_key(batch_op.f(f"fk_{table}_{column}_{target}"), target, [column], ['id'],
                                    ondelete=ondelete)


def downgrade() -> None:
    for table, column, target in (('attempts', 'provenance_id', 'provenances'), ('jobs', 'grid_version_id', 'grid_versions')):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_constraint(batch_op.f(f"fk_{table}_{column}_{target}"), type_='foreignkey')
            batch_op.drop_column(column)
    op.drop_table('provenances')
    op.drop_table('machines')
    op.drop_table('environments')
    op.drop_table('code_versions')
    op.drop_table('grid_versions')
