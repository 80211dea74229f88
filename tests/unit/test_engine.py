"""Database URLs: normalisation, redaction, clear errors."""

from __future__ import annotations

import pytest

from db import engine as db_engine
from db.errors import DatabaseUnavailable

pytestmark = pytest.mark.unit


def test_postgres_urls_use_psycopg3():
    assert db_engine.resolve_url("postgresql://u@h/db").drivername == "postgresql+psycopg"
    assert db_engine.resolve_url("postgres://u@h/db").drivername == "postgresql+psycopg"


def test_default_and_env(monkeypatch):
    monkeypatch.delenv("GRIDLAB_DB", raising=False)
    assert db_engine.resolve_url(None).database == "gridlab.db"
    monkeypatch.setenv("GRIDLAB_DB", "sqlite:///other.db")
    assert db_engine.resolve_url(None).database == "other.db"


@pytest.mark.parametrize("url", ["mysql://root@localhost/x", "http://example.org", "sqlite://", "not a url"])
def test_unsupported_urls_are_refused(url):
    with pytest.raises(DatabaseUnavailable) as err:
        db_engine.resolve_url(url)
    assert "\n" not in str(err.value)


def test_passwords_never_appear_in_messages():
    with pytest.raises(DatabaseUnavailable) as err:
        db_engine.resolve_url("mysql://alice:s3cret@db/x")
    assert "s3cret" not in str(err.value)
    assert "s3cret" not in db_engine.redact("postgresql://alice:s3cret@db/x")
