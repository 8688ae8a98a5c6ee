"""Engines tuned for the trace store: SQLite in WAL mode, safe with several writer processes.

SQLite, why each setting:
- WAL lets readers run while one process writes; `synchronous=NORMAL` is durable across process
  crashes in WAL mode (only an OS crash can lose the last commits).
- pysqlite's own transaction handling is switched off and we emit BEGIN ourselves, so a writer
  can take the write lock up front (`BEGIN IMMEDIATE`): a deferred transaction that later upgrades
  to a writer fails with "database is locked" without waiting for busy_timeout.
- `busy_timeout` makes a blocked writer wait; `retrying` below covers what remains.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from typing import TypeVar

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.exc import OperationalError

log = logging.getLogger("agentrm.traces.engine")
T = TypeVar("T")
BUSY_TIMEOUT_MS = 30_000


def make_engine(url: str) -> sa.Engine:
    if url.startswith("sqlite"):
        return _sqlite_engine(url)
    return sa.create_engine(url, pool_pre_ping=True, future=True)


def _sqlite_engine(url: str) -> sa.Engine:
    engine = sa.create_engine(url, connect_args={"timeout": BUSY_TIMEOUT_MS / 1000})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn, _record):
        dbapi_conn.isolation_level = None  # we emit BEGIN ourselves (see module docstring)
        cursor = dbapi_conn.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        if not _is_memory(url):
            cursor.execute("PRAGMA journal_mode = WAL")
            cursor.execute("PRAGMA synchronous = NORMAL")
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn):
        mode = conn.get_execution_options().get("sqlite_begin", "")
        conn.exec_driver_sql(f"BEGIN {mode}".strip())

    return engine


def _is_memory(url: str) -> bool:
    return url in ("sqlite://", "sqlite:///:memory:") or "mode=memory" in url


def is_locked_error(exc: BaseException) -> bool:
    text = str(getattr(exc, "orig", exc)).lower()
    return "database is locked" in text or "database table is locked" in text or "busy" in text


def retrying(fn: Callable[[], T], attempts: int = 8) -> T:
    """Run a whole write transaction again when SQLite reports lock contention (writes are upserts)."""
    for attempt in range(attempts):
        try:
            return fn()
        except OperationalError as exc:
            if not is_locked_error(exc) or attempt == attempts - 1:
                raise
            delay = min(2.0, 0.05 * 2**attempt) * (0.5 + random.random())
            log.debug("database locked, retrying in %.2fs (%s)", delay, exc.orig)
            time.sleep(delay)
    raise AssertionError("unreachable")
