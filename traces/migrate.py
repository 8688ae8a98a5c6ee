"""Bring a database to the newest schema with Alembic, programmatically (users need no alembic.ini).

Several processes may open a fresh database at once, so the check-and-upgrade runs under a lock:
SQLite's `BEGIN IMMEDIATE` (see engine.py) and a PostgreSQL transaction-scoped advisory lock.
"""

from __future__ import annotations

import logging

import sqlalchemy as sa

from agentrm.traces.schema import HEAD_REVISION

log = logging.getLogger("agentrm.traces.migrate")
_PG_LOCK_KEY = 0x61676E74  # "agnt": arbitrary, constant across processes


def current_revision(conn: sa.Connection) -> str | None:
    if not sa.inspect(conn).has_table("alembic_version"):
        return None
    return conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar()


def alembic_config(conn: sa.Connection | None = None):
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", "agentrm.traces:migrations")
    if conn is not None:
        cfg.attributes["connection"] = conn
    return cfg


def upgrade(engine: sa.Engine, revision: str = "head") -> None:
    """Upgrade to `revision` unless already at the head (the common, fast case: one SELECT)."""
    with engine.connect() as probe:
        if revision == "head" and current_revision(probe) == HEAD_REVISION:
            return
    from alembic import command

    with engine.connect().execution_options(sqlite_begin="IMMEDIATE") as conn:
        with conn.begin():
            if conn.dialect.name == "postgresql":
                conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_LOCK_KEY})
            if revision == "head" and current_revision(conn) == HEAD_REVISION:
                return  # another process migrated while we waited for the lock
            log.info("migrating %s to %s", engine.url.render_as_string(hide_password=True), revision)
            command.upgrade(alembic_config(conn), revision)


def downgrade(engine: sa.Engine, revision: str = "base") -> None:
    from alembic import command

    with engine.connect().execution_options(sqlite_begin="IMMEDIATE") as conn:
        with conn.begin():
            command.downgrade(alembic_config(conn), revision)
