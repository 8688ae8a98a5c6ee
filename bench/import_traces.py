"""Benchmark: import 10,000 trajectories × 20 turns into SQLite.

    python bench/import_traces.py [--trajectories 10000] [--turns 20]

Three timings in one process, each into a fresh SQLite file with the same schema and pragmas
(WAL, synchronous=NORMAL, one transaction):
  store     SQLStore.import_trajectories(trajectories) — from Trajectory objects, all work included
  floor     plain sqlite3: build the same rows (json.dumps) + executemany
  floor-db  plain sqlite3 executemany only, rows prebuilt (the driver's raw insert speed)
and end to end: `agentrm traces import` of the same data as a JSONL file (parse + validate +
anchor keys + store), twice: as it is now and as it was before (restored here by patching:
seven regex passes per text for anchor keys, json instead of orjson for lines and tool-call
arguments, the cyclic garbage collector left running), so the end-to-end
speed-up and both end-to-end rates relative to the sqlite3 floor come from one run.
Prints turns/s and ratios; goals: store within 2× of the floor, end to end ≥ 2× the previous.
"""

from __future__ import annotations

import argparse
import json
import re
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

from agentrm.hashing import anchor_key, stable_hash
from agentrm.traces import open_store
from agentrm.traces.io import read_trajectories, write_jsonl
from agentrm.types import ExitStatus, ToolResult, Trajectory, Turn


def make_trajectories(n: int, turns: int) -> list[Trajectory]:
    out = []
    for i in range(n):
        steps = []
        for k in range(turns):
            obs = [{"role": "tool", "tool_call_id": f"c{k - 1}",
                    "content": f"total {k}\n-rw-r--r-- 1 agent agent {100 + k} file_{i}_{k}.py\n" * 3}]
            if k == 0:
                obs = [{"role": "system", "content": "You are an agent."},
                       {"role": "user", "content": f"Task {i % 100}: fix the bug in module {i}."}]
            call = {"id": f"c{k}", "type": "function",
                    "function": {"name": "bash", "arguments": json.dumps({"command": f"ls -la dir{k}"})}}
            steps.append(Turn(index=k, observation=obs, anchor_key=anchor_key(obs),
                              assistant={"role": "assistant", "content": f"Step {k}: look around.",
                                         "tool_calls": [call]},
                              tool_results=[ToolResult(f"c{k}", "ok", 0, duration_s=0.01)],
                              prompt_tokens=100 + k, completion_tokens=12, started_at=1.0e9 + k,
                              duration_s=0.5))
        out.append(Trajectory(id=f"traj-{i:06d}", task_id=f"task-{i % 100}", group_id=f"g-{i % 1000}",
                              turns=steps, exit_status=ExitStatus.SUBMITTED, reward=float(i % 2)))
    return out


def _rows(trajs: list[Trajectory]):
    """The exact rows the store writes (same columns, same JSON text)."""
    from agentrm.traces import rows as R
    from agentrm.traces.bulk import TRAJ_COLS, TURN_COLS, _traj_tuple, _turn_tuple

    return ([_traj_tuple(R.trajectory_row(t)) for t in trajs], TRAJ_COLS,
            [_turn_tuple(t.id, u) for t in trajs for u in t.turns], TURN_COLS)


_PREVIOUS = [(re.compile(p), r) for p, r in [
    (r"\b\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:Z|[+-]\d{2}:?\d{2})?\b", "<TIME>"),
    (r"\b\d{2}:\d{2}:\d{2}(?:\.\d+)?\b", "<TIME>"), (r"/tmp/[\w.\-/]+", "<TMP>"),
    (r"\b(?:pid|PID)[ =:]+\d+\b", "pid <PID>"), (r"\b0x[0-9a-fA-F]{6,}\b", "<ADDR>"),
    (r"\b[0-9a-f]{12,64}\b", "<HEX>"), (r"\b\d+(?:\.\d+)?\s?(?:ms|s|sec|seconds)\b", "<DURATION>")]]


def previous_anchor_key(observation) -> str:
    """The anchor key as computed before the one-pass normalisation (same keys, slower)."""
    parts = []
    for message in observation:
        content = message.get("content")
        if not isinstance(content, str):
            content = json.dumps(content, sort_keys=True, default=str)
        text = content or ""
        for pattern, replacement in _PREVIOUS:
            text = pattern.sub(replacement, text)
        parts.append([message.get("role", ""), " ".join(text.split())])
    return stable_hash(parts)


def floor(path: Path, trajs: list[Trajectory], prebuilt=None) -> float:
    """Plain sqlite3 into the same schema (created by the store's migration, then closed)."""
    open_store(f"sqlite:///{path}").close()
    start = time.perf_counter()
    t_rows, t_cols, u_rows, u_cols = prebuilt if prebuilt else _rows(trajs)
    if prebuilt:
        start = time.perf_counter()
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA foreign_keys=ON")
    conn.execute("BEGIN IMMEDIATE")
    conn.executemany(f"INSERT INTO trajectories ({','.join(t_cols)}) VALUES ({','.join('?' * len(t_cols))})", t_rows)
    conn.executemany(f"INSERT INTO turns ({','.join(u_cols)}) VALUES ({','.join('?' * len(u_cols))})", u_rows)
    conn.execute("COMMIT")
    conn.close()
    return time.perf_counter() - start


def store_import(path: Path, trajs: list[Trajectory]) -> float:
    store = open_store(f"sqlite:///{path}")
    start = time.perf_counter()
    store.import_trajectories(trajs)
    elapsed = time.perf_counter() - start
    store.close()
    return elapsed


def end_to_end(path: Path, jsonl: Path, previous: bool = False) -> float:
    """`previous`: as the import was when the token-faithful issue was filed — sequential
    anchor normalisation, json (not orjson) for the lines and for every tool call's arguments,
    and the cyclic garbage collector running during the import."""
    import types

    import agentrm.traces.bulk as bulk
    import agentrm.traces.io as io
    import agentrm.traces.messages as messages
    import agentrm.types as core

    store = open_store(f"sqlite:///{path}")
    saved = messages.anchor_key, io.orjson, core._orjson_loads, bulk.PAUSE_GC
    if previous:
        messages.anchor_key = previous_anchor_key
        bulk.PAUSE_GC = False
        io.orjson = types.SimpleNamespace(loads=lambda t: json.loads(t, parse_constant=io._reject_constant),
                                          JSONDecodeError=json.JSONDecodeError)
        core._orjson_loads = json.loads
    try:
        start = time.perf_counter()
        store.import_trajectories(read_trajectories(jsonl))
        elapsed = time.perf_counter() - start
    finally:
        messages.anchor_key, io.orjson, core._orjson_loads, bulk.PAUSE_GC = saved
    store.close()
    return elapsed


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trajectories", type=int, default=10_000)
    ap.add_argument("--turns", type=int, default=20)
    ap.add_argument("--repeat", type=int, default=1, help="Best of N (the machine may be busy).")
    ap.add_argument("--skip-e2e", action="store_true", help="Skip the slow JSONL end-to-end timing.")
    args = ap.parse_args(argv)
    trajs = make_trajectories(args.trajectories, args.turns)
    n_turns = args.trajectories * args.turns
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        t_store = t_floor = t_raw = t_e2e = t_prev = float("inf")
        prebuilt = _rows(trajs)
        for r in range(args.repeat):  # interleaved, so load changes hit all three alike
            t_store = min(t_store, store_import(tmp / f"store{r}.db", trajs))
            t_floor = min(t_floor, floor(tmp / f"floor{r}.db", trajs))
            t_raw = min(t_raw, floor(tmp / f"raw{r}.db", trajs, prebuilt=prebuilt))
            check = sqlite3.connect(tmp / f"store{r}.db").execute("SELECT count(*) FROM turns").fetchone()[0]
            assert check == n_turns, (check, n_turns)
            for f in tmp.glob(f"*{r}.db*"):
                f.unlink()
        if not args.skip_e2e:
            write_jsonl(trajs, tmp / "in.jsonl")
            # `agentrm traces import` holds no other trajectories in memory; neither does this
            # (live objects make every garbage collection of the "before" import slower)
            del trajs, prebuilt
            for r in range(args.repeat):
                t_prev = min(t_prev, end_to_end(tmp / f"prev{r}.db", tmp / "in.jsonl", previous=True))
                t_e2e = min(t_e2e, end_to_end(tmp / f"e2e{r}.db", tmp / "in.jsonl"))
    print(f"{args.trajectories} trajectories x {args.turns} turns = {n_turns} turns into SQLite")
    for name, t in [("store (SQLStore.import_trajectories)", t_store),
                    ("floor (sqlite3: build rows + executemany)", t_floor),
                    ("floor-db (sqlite3 executemany, rows prebuilt)", t_raw),
                    ("end to end (JSONL parse+validate+store)", t_e2e),
                    ("end to end, as before (regex passes, json)", t_prev)]:
        if t == float("inf"):
            continue
        print(f"  {name:<48} {t:7.2f} s  {n_turns / t:10,.0f} turns/s")
    print(f"ratio store/floor    = {t_store / t_floor:.2f}x (goal <= 2x)")
    print(f"ratio store/floor-db = {t_store / t_raw:.2f}x")
    if t_e2e != float("inf"):
        print(f"end to end / floor   = {t_e2e / t_floor:.2f}x now, {t_prev / t_floor:.2f}x before")
        print(f"end-to-end speed-up  = {t_prev / t_e2e:.2f}x (goal >= 2x)")
    sys.exit(0 if t_store / t_floor <= 2 else 1)


if __name__ == "__main__":
    main()
