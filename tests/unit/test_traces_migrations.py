"""Migrations: the shipped revisions build exactly the tables schema.py declares, and
HEAD_REVISION (the fast path of open_store) names the newest revision."""

from __future__ import annotations

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory

from agentrm.traces import open_store
from agentrm.traces.engine import make_engine
from agentrm.traces.migrate import alembic_config, downgrade, upgrade
from agentrm.traces.schema import HEAD_REVISION, metadata


def test_head_revision_constant_matches_scripts():
    assert ScriptDirectory.from_config(alembic_config()).get_current_head() == HEAD_REVISION


def test_migrated_database_matches_metadata(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'm.db'}")
    upgrade(engine)
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), metadata)
    assert diff == []
    downgrade(engine, "base")
    assert set(sa.inspect(engine).get_table_names()) == {"alembic_version"}
    upgrade(engine)
    assert "turns" in sa.inspect(engine).get_table_names()
    engine.dispose()


def test_sqlite_pragmas(tmp_path):
    with open_store(f"sqlite:///{tmp_path / 'p.db'}") as store, store.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() >= 10_000


def test_bad_url_is_an_input_error():
    import pytest

    from agentrm.errors import InputError
    with pytest.raises(InputError):
        open_store("agentrm.db")
    with pytest.raises(InputError):
        open_store("nosuchdialect://x")
