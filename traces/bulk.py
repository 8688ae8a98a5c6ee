"""Bulk import: many trajectories in one transaction, at close to the driver's executemany speed.

Why it is fast on SQLite: rows are built once as tuples with JSON pre-serialised (orjson when
installed) and handed straight to the driver's executemany through the SQLAlchemy connection
(`exec_driver_sql`), so there is no per-value type processing; turns of new trajectories are
plain INSERTs (no ON CONFLICT). PostgreSQL takes the portable Core path. Re-importing a
trajectory id replaces its turns and keeps its scores.
"""

from __future__ import annotations

import gc
import json
import math
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from itertools import islice
from typing import Any

import sqlalchemy as sa

from agentrm.hashing import anchor_key
from agentrm.traces import rows as R
from agentrm.traces.schema import runs, trajectories, turns
from agentrm.types import Trajectory, Turn

CHUNK = 500  # trajectories per round of statements

try:  # 5-10x faster than json for the large message lists; falls back where it differs
    import orjson

    def dumps(value: Any) -> str:
        try:
            return orjson.dumps(value).decode()
        except (TypeError, orjson.JSONEncodeError):  # non-str keys, lone surrogates, ...
            return json.dumps(value)

    def _results_json(results: list) -> str:
        try:  # orjson serialises the ToolResult dataclasses directly, as tool_result_dict would
            return orjson.dumps(results).decode()
        except (TypeError, orjson.JSONEncodeError):
            return json.dumps([R.tool_result_dict(r) for r in results])
except ImportError:  # pragma: no cover - orjson comes with langgraph
    _compact = json.JSONEncoder(separators=(",", ":"))

    def dumps(value: Any) -> str:
        return _compact.encode(value)

    def _results_json(results: list) -> str:
        return dumps([R.tool_result_dict(r) for r in results])

TURN_COLS = [c.name for c in turns.columns]
TRAJ_COLS = [c.name for c in trajectories.columns if c.name != "pk"]


def _finite(values: list[float] | None) -> bool:
    return values is None or all(map(math.isfinite, values))


def _turn_tuple(traj_id: str, t: Turn) -> tuple:
    # orjson writes NaN/inf as null; log-probs can be -inf, so those keep json's spelling
    logprobs = None if t.logprobs is None else (
        dumps(t.logprobs) if _finite(t.logprobs) else json.dumps(t.logprobs))
    tok = t.tokens
    return (traj_id, t.index, dumps(t.observation), dumps(t.assistant),
            t.anchor_key or anchor_key(t.observation),
            _results_json(t.tool_results) if t.tool_results else None,
            t.prompt_tokens, t.completion_tokens, logprobs, t.started_at, t.duration_s,
            1 if t.valid else 0, dumps(t.metadata) if t.metadata else None,
            *(_NO_TOKENS if tok is None else (
                tok.prefix_len, dumps(tok.prompt_ids), dumps(tok.completion_ids),
                tok.tokenizer or None, tok.template_hash or None, tok.prompt_hash or None)))


_NO_TOKENS = (None,) * len(R.TOKEN_COLS)


def _traj_tuple(row: dict[str, Any]) -> tuple:
    return tuple(dumps(row[c]) if c in ("metadata", "tail") and row[c] is not None else row[c]
                 for c in TRAJ_COLS)


def _sql(table: str, cols: list[str], tail: str = "") -> str:
    return f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))}){tail}"


_TRAJ_UPSERT = _sql("trajectories", TRAJ_COLS, " ON CONFLICT (id) DO UPDATE SET " + ", ".join(
    f"{c} = excluded.{c}" for c in TRAJ_COLS if c not in ("id", "started_at")))
_TURN_INSERT = _sql("turns", TURN_COLS)
assert len(TURN_COLS) == 13 + len(R.TOKEN_COLS) and TURN_COLS[13:] == list(R.TOKEN_COLS), \
    "update _turn_tuple with the turns table"


# The cyclic garbage collector is paused while a chunk is parsed and written. Import builds
# hundreds of thousands of short-lived, acyclic dicts and lists per chunk; each young-generation
# collection traverses all that are still alive, which cost a quarter of the import time
# (bench/import_traces.py). Refcounting frees everything as usual; the collector runs again
# between chunks, so anything cyclic is still collected.
PAUSE_GC = True


@contextmanager
def _gc_paused() -> Iterator[None]:
    paused = PAUSE_GC and gc.isenabled()
    if paused:
        gc.disable()
    try:
        yield
    finally:
        if paused:
            gc.enable()


def _imported_scores(conn: sa.Connection, chunk: list[Trajectory]) -> None:
    """Scores the file carried for its steps (ATIF step rewards), written with the turns."""
    import time

    from agentrm.traces.formats import imported_scores
    from agentrm.traces.schema import scores
    from agentrm.traces.store import upsert

    now = time.time()
    rows = [R.score_row(s, now) for t in chunk for s in imported_scores(t)]
    if rows:
        upsert(conn, scores, rows, ["scorer", "config_hash", "trajectory_id", "level", "turn_index"])


def bulk_import(conn: sa.Connection, trajs: Iterable[Trajectory], run_id: str | None,
                on_progress: Callable[[int], None] | None = None,
                run_config: dict[str, Any] | None = None) -> int:
    sqlite = conn.dialect.name == "sqlite"
    seen_runs: set[str] = set()
    source = iter(trajs)
    total = 0
    while True:
        with _gc_paused():  # the chunk is parsed, written and freed inside
            done = _import_chunk(conn, source, run_id, run_config, seen_runs, sqlite)
        if not done:
            return total
        total += done
        if on_progress:
            on_progress(done)


def _import_chunk(conn: sa.Connection, source: Iterator[Trajectory], run_id: str | None,
                  run_config: dict[str, Any] | None, seen_runs: set[str], sqlite: bool) -> int:
    """Read up to CHUNK trajectories from `source` and write them; 0 when it is exhausted."""
    from agentrm.traces.store import upsert

    chunk = list(islice(source, CHUNK))
    if not chunk:
        return 0
    traj_rows = [R.trajectory_row(t, run_id) for t in chunk]
    for rid in {r["run_id"] for r in traj_rows} - seen_runs - {None}:
        upsert(conn, runs, {"id": rid, "kind": "import", "config": run_config,
                            "status": "finished", "started_at": traj_rows[0]["started_at"]},
               ["id"], update=[])
        seen_runs.add(rid)
    ids = [r["id"] for r in traj_rows]
    existing = set(conn.execute(sa.select(trajectories.c.id).where(trajectories.c.id.in_(ids)))
                   .scalars())
    if existing:
        conn.execute(turns.delete().where(turns.c.trajectory_id.in_(existing)))
    if sqlite:
        conn.exec_driver_sql(_TRAJ_UPSERT, [_traj_tuple(r) for r in traj_rows])
        conn.exec_driver_sql(_TURN_INSERT, [_turn_tuple(t.id, u) for t in chunk for u in t.turns])
    else:
        upsert(conn, trajectories, traj_rows, ["id"],
               update=[c for c in TRAJ_COLS if c != "started_at"])
        turn_rows = [R.turn_row(t.id, u) for t in chunk for u in t.turns]
        if turn_rows:
            conn.execute(sa.insert(turns), turn_rows)
    _imported_scores(conn, chunk)
    return len(chunk)
