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
