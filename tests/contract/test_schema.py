"""Migrations produce exactly the models' schema, on every backend; version checks."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory

from db import engine as db_engine
from db import schema
from db.errors import NotGridlabDatabase, SchemaMismatch
from db.models import Base

pytestmark = pytest.mark.contract


def test_upgrade_head_matches_models_exactly(db_url):
    eng = db_engine.create(db_url)
    schema.upgrade(eng)
    with eng.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"compare_type": True})
        diff = compare_metadata(ctx, Base.metadata)
    eng.dispose()
    assert diff == []


def test_head_constant_matches_the_migration_scripts():
    script = ScriptDirectory.from_config(schema.alembic_config("sqlite:///unused.db"))
    assert script.get_current_head() == schema.HEAD
    assert [r.revision for r in reversed(list(script.walk_revisions()))] == list(schema.KNOWN)


def test_empty_database_is_migrated_on_first_use(db_url):
    eng = db_engine.create(db_url)
    assert schema.current_revision(eng) is None
    schema.ensure(eng)
    assert schema.current_revision(eng) == schema.HEAD
    eng.dispose()


def test_database_behind_the_code_names_the_upgrade_command(db_url, monkeypatch):
    eng = db_engine.create(db_url)
    schema.upgrade(eng)
    monkeypatch.setattr(schema, "KNOWN", (*schema.KNOWN, "9999"))
    monkeypatch.setattr(schema, "HEAD", "9999")
    with pytest.raises(SchemaMismatch, match="gridlab db upgrade"):
        schema.ensure(eng)
    eng.dispose()


def test_database_from_a_newer_gridlab_is_refused(db_url):
    from sqlalchemy import text

    eng = db_engine.create(db_url)
    schema.upgrade(eng)
    with eng.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = 'zzzz'"))
    with pytest.raises(SchemaMismatch, match="newer gridlab"):
        schema.ensure(eng)
    with pytest.raises(SchemaMismatch, match="newer gridlab"):
        schema.upgrade(eng)
    eng.dispose()


def test_foreign_database_is_refused_untouched(db_url):
    from sqlalchemy import inspect, text

    eng = db_engine.create(db_url)
    with eng.begin() as conn:
        conn.execute(text("CREATE TABLE customers (id INTEGER PRIMARY KEY)"))
    with pytest.raises(NotGridlabDatabase):
        schema.ensure(eng)
    with eng.connect() as conn:
        assert inspect(conn).get_table_names() == ["customers"]
    eng.dispose()


def test_upgrade_from_the_first_schema_keeps_the_data(db_url):
    from alembic import command
    from sqlalchemy import text

    eng = db_engine.create(db_url)
    cfg = schema.alembic_config(eng.url.render_as_string(hide_password=False))
    with eng.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, schema.KNOWN[0])
    with eng.begin() as conn:
        conn.execute(text("INSERT INTO grids (name, created_at) VALUES ('old', 1.0)"))
    with pytest.raises(SchemaMismatch, match="gridlab db upgrade"):
        schema.ensure(eng)
    assert schema.upgrade(eng) == (schema.KNOWN[0], schema.HEAD)
    with eng.connect() as conn:
        assert conn.execute(text("SELECT name FROM grids")).scalar_one() == "old"
    eng.dispose()


def test_attention_rows_revision_downgrades_and_upgrades_again(db_url):
    """0009 adds attention_rows and nothing else: down to 0008 drops the table and keeps the
    rest; up again makes it as the models say."""
    from alembic import command
    from sqlalchemy import inspect, text

    eng = db_engine.create(db_url)
    schema.upgrade(eng)
    with eng.begin() as conn:
        conn.execute(text("INSERT INTO grids (name, created_at) VALUES ('kept', 1.0)"))
    cfg = schema.alembic_config(eng.url.render_as_string(hide_password=False))
    with eng.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0008")
    with eng.connect() as conn:
        assert "attention_rows" not in inspect(conn).get_table_names()
        assert conn.execute(text("SELECT name FROM grids")).scalar_one() == "kept"
    assert schema.upgrade(eng) == ("0008", schema.HEAD)
    with eng.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"compare_type": True})
        assert compare_metadata(ctx, Base.metadata) == []
    eng.dispose()


def test_cells_sharing_revision_downgrades_and_upgrades_again(db_url):
    """0010 adds attempts.cells_sharing and nothing else: down to 0009 drops the column and keeps
    the attempts; up again makes it as the models say, NULL (a device of its own) for old rows."""
    from alembic import command
    from sqlalchemy import inspect, text

    eng = db_engine.create(db_url)
    schema.upgrade(eng)
    with eng.begin() as conn:
        conn.execute(text("INSERT INTO grids (name, created_at) VALUES ('kept', 1.0)"))
        grid_id = conn.execute(text("SELECT id FROM grids")).scalar_one()
        conn.execute(text("INSERT INTO jobs (grid_id, spec_hash, spec, factors, experiment, state, priority, attempts, "
                          "max_attempts, backoff_s, created_at, updated_at, resource_class) VALUES (:g, 'h', '{}', '{}', "
                          "'test', 'running', 0, 1, 3, 0, 1.0, 1.0, 'default')"), {"g": grid_id})
        job_id = conn.execute(text("SELECT id FROM jobs")).scalar_one()
        conn.execute(text("INSERT INTO attempts (job_id, number, worker, host, pid, started_at, devices, cells_sharing) "
                          "VALUES (:j, 1, 'w', 'h', 1, 1.0, 1, 4)"), {"j": job_id})
    cfg = schema.alembic_config(eng.url.render_as_string(hide_password=False))
    with eng.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0009")
    with eng.connect() as conn:
        assert "cells_sharing" not in {c["name"] for c in inspect(conn).get_columns("attempts")}
        assert conn.execute(text("SELECT devices FROM attempts")).scalar_one() == 1
    assert schema.upgrade(eng) == ("0009", schema.HEAD)
    with eng.connect() as conn:
        assert conn.execute(text("SELECT cells_sharing FROM attempts")).scalar_one() is None
        ctx = MigrationContext.configure(conn, opts={"compare_type": True})
        assert compare_metadata(ctx, Base.metadata) == []
    eng.dispose()
