"""Bulk import: many trajectories in one transaction, at close to the driver's executemany speed.

Why it is fast: rows are built once with JSON pre-serialised, and on SQLite inserted through
mirror tables whose JSON columns are typed Text, so SQLAlchemy adds no per-value processing;
turns of new trajectories are plain INSERTs (no ON CONFLICT) in batches of thousands.
Re-importing a trajectory id replaces its turns and keeps its scores.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from itertools import islice
from typing import Any

import sqlalchemy as sa

from agentrm.traces import rows as R
from agentrm.traces.schema import runs, trajectories, turns
from agentrm.types import Trajectory

CHUNK = 500  # trajectories per round of statements


def _text_mirror(table: sa.Table) -> sa.Table:
    cols = [sa.Column(c.name, sa.Text if isinstance(c.type, sa.JSON) else c.type,
                      primary_key=c.primary_key) for c in table.columns]
    return sa.Table(table.name, sa.MetaData(), *cols)


_RAW = {t.name: _text_mirror(t) for t in (trajectories, turns)}
_JSON_COLS = {t.name: [c.name for c in t.columns if isinstance(c.type, sa.JSON)]
              for t in (trajectories, turns)}
_dumps = json.JSONEncoder(separators=(",", ":")).encode


def _serialise(table_name: str, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    for row in rows:
        for name in _JSON_COLS[table_name]:
            value = row[name]
            row[name] = None if value is None else _dumps(value)
        if "valid" in row:
            row["valid"] = 1 if row["valid"] else 0
    return rows


def _chunks(items: Iterable[Trajectory], size: int) -> Iterator[list[Trajectory]]:
    it = iter(items)
    while chunk := list(islice(it, size)):
        yield chunk


def bulk_import(conn: sa.Connection, trajs: Iterable[Trajectory], run_id: str | None,
                on_progress: Callable[[int], None] | None = None,
                run_config: dict[str, Any] | None = None) -> int:
    from agentrm.traces.store import _insert, upsert

    raw = conn.dialect.name == "sqlite"
    seen_runs: set[str] = set()
    total = 0
    for chunk in _chunks(trajs, CHUNK):
        traj_rows = [R.trajectory_row(t, run_id) for t in chunk]
        turn_rows = [R.turn_row(t.id, turn) for t in chunk for turn in t.turns]
        for rid in {r["run_id"] for r in traj_rows} - seen_runs - {None}:
            upsert(conn, runs, {"id": rid, "kind": "import", "config": run_config, "status": "finished",
                                "started_at": traj_rows[0]["started_at"]}, ["id"], update=[])
            seen_runs.add(rid)
        ids = [r["id"] for r in traj_rows]
        existing = set(conn.execute(sa.select(trajectories.c.id).where(trajectories.c.id.in_(ids)))
                       .scalars())
        if existing:
            conn.execute(turns.delete().where(turns.c.trajectory_id.in_(existing)))
        if raw:
            traj_rows, turn_rows = _serialise("trajectories", traj_rows), _serialise("turns", turn_rows)
        t_table = _RAW["trajectories"] if raw else trajectories
        stmt = _insert(conn, t_table)
        update = {c: stmt.excluded[c] for c in traj_rows[0] if c not in ("id", "started_at")}
        conn.execute(stmt.on_conflict_do_update(index_elements=["id"], set_=update), traj_rows)
        if turn_rows:
            conn.execute(sa.insert(_RAW["turns"] if raw else turns), turn_rows)
        total += len(chunk)
        if on_progress:
            on_progress(len(chunk))
    return total
