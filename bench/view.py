"""Benchmark: `agentrm view` on a store of 100,000 trajectories × 20 turns (SQLite).

    python bench/view.py [--trajectories 100000] [--turns 20] [--db /tmp/agentrm-view-bench.db]
                         [--requests 200] [--fresh]

The store is generated once through the store's bulk import (two runs over shared tasks, a
trajectory-level `tests` score per trajectory, a `prm` score and a `gigpo` advantage per turn)
and reused while its size matches. Then, in one process, each page is requested through the ASGI
app (routing, the store's queries, template rendering: the server's whole time, no network)
and the same page's data is read with plain sqlite3 (the baseline: the raw SQL a hand-written
page would run). Prints p50/p95 per page and the ratio to the baseline; the goal is list page and
trajectory page p95 ≤ 200 ms.
"""

from __future__ import annotations

import argparse
import json
import random
import sqlite3
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import quote

from agentrm.traces import open_store
from agentrm.types import Advantage, ExitStatus, Score, ScoreLevel, ToolResult, Trajectory, Turn

RUNS = ("bench-a", "bench-b")
STATUSES = [ExitStatus.SUBMITTED] * 6 + [ExitStatus.TURN_LIMIT] * 3 + [ExitStatus.SANDBOX_ERROR]


def trajectories(start: int, stop: int, turns: int) -> Iterator[Trajectory]:
    for i in range(start, stop):
        steps = []
        for k in range(turns):
            obs = ([{"role": "system", "content": "You are an agent."},
                    {"role": "user", "content": f"Task {i % 5000}: fix the bug in module {i}."}]
                   if k == 0 else [{"role": "tool", "tool_call_id": f"c{k - 1}",
                                    "content": f"-rw-r--r-- 1 agent agent {100 + k} file_{k}.py\n" * 4}])
            call = {"id": f"c{k}", "type": "function",
                    "function": {"name": "bash", "arguments": json.dumps({"command": f"ls -la dir{k}"})}}
            steps.append(Turn(k, obs, {"role": "assistant", "content": f"Step {k}: look around.",
                                       "tool_calls": [call]},
                              anchor_key=f"{(i % 5000) * 64 + k:064x}",  # synthetic: generation speed
                              tool_results=[ToolResult(f"c{k}", "ok\n" * 5, 0, duration_s=0.01)],
                              prompt_tokens=100 + k, completion_tokens=12, duration_s=0.5))
        status = STATUSES[i % len(STATUSES)]
        reward = None if status is ExitStatus.SANDBOX_ERROR else float((i * 7919) % 3 == 0)
        patch = f"--- a/m{i}.py\n+++ b/m{i}.py\n@@ -1 +1 @@\n-x = {i}\n+x = {i + 1}\n"
        yield Trajectory(f"{RUNS[i % 2]}/traj-{i:06d}", f"task-{i % 5000}", f"task-{i % 5000}", steps,
                         exit_status=status, reward=reward, run_id=RUNS[i % 2],
                         metadata={"model_patch": patch, "swebench": {"model_name_or_path": RUNS[i % 2]}})


def generate(path: Path, n: int, turns: int) -> None:
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    store = open_store(f"sqlite:///{path}")
    for run in RUNS:
        store.begin_run({"bench": True}, run)
    start, chunk = time.perf_counter(), 5000
    for lo in range(0, n, chunk):
        batch = list(trajectories(lo, min(lo + chunk, n), turns))
        store.import_trajectories(batch)  # one transaction per chunk; each carries its run id
        store.write_scores([Score("tests", t.id, t.reward, level=ScoreLevel.TRAJECTORY,
                                  details={"status": "resolved" if t.reward else "unresolved"})
                            for t in batch])
        store.write_scores([Score("prm", t.id, ((k * 37 + int(t.id[-6:])) % 100) / 100, turn_index=k,
                                  details={"reason": f"step {k} looks plausible"})
                            for t in batch for k in range(turns)])
        store.write_advantages([Advantage("gigpo", t.id, k, ((k * 13 + int(t.id[-6:])) % 41 - 20) / 10,
                                          details={"episode": 0.1, "step": 0.2})
                                for t in batch for k in range(turns)])
        done = lo + len(batch)
        rate = done / (time.perf_counter() - start)
        print(f"\r  generated {done:,}/{n:,} trajectories ({rate:,.0f}/s)", end="", file=sys.stderr,
              flush=True)
    print(file=sys.stderr)
    store.close()


def store_size(path: Path) -> tuple[int, int]:
    if not path.is_file():
        return 0, 0
    conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    try:
        return tuple(conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0]  # type: ignore[return-value]
                     for t in ("trajectories", "turns"))
    except sqlite3.Error:
        return 0, 0
    finally:
        conn.close()


# -- the baseline: the same pages' data with plain sqlite3 ----------------------------------
LIST_COLS = "pk, id, run_id, task_id, group_id, policy, exit_status, failure_kind, reward, n_turns, started_at, ended_at"


def raw_list(conn: sqlite3.Connection, after: int, where: str = "", args: tuple = ()) -> list:
    sql = f"SELECT {LIST_COLS} FROM trajectories WHERE pk > ? {where} ORDER BY pk LIMIT 51"
    return conn.execute(sql, (after, *args)).fetchall()


def raw_trajectory(conn: sqlite3.Connection, traj_id: str) -> tuple:
    loads = json.loads
    traj = conn.execute("SELECT * FROM trajectories WHERE id = ?", (traj_id,)).fetchone()
    turns = [(r[0], loads(r[1]), loads(r[2]), loads(r[3]) if r[3] else None) for r in conn.execute(
        "SELECT idx, observation, assistant, tool_results FROM turns WHERE trajectory_id = ? ORDER BY idx",
        (traj_id,))]
    scores = conn.execute("SELECT scorer, level, turn_index, value, details FROM scores "
                          "WHERE trajectory_id = ? ORDER BY id", (traj_id,)).fetchall()
    advs = conn.execute("SELECT estimator, turn_index, value, details FROM advantages "
                        "WHERE trajectory_id = ? ORDER BY id", (traj_id,)).fetchall()
    pk = traj[0]
    nav = conn.execute("SELECT (SELECT id FROM trajectories WHERE run_id = ? AND pk < ? ORDER BY pk DESC LIMIT 1),"
                       " (SELECT id FROM trajectories WHERE run_id = ? AND pk > ? ORDER BY pk LIMIT 1)",
                       (traj[2], pk, traj[2], pk)).fetchone()
    return traj, turns, scores, advs, nav


def timed(fn: Callable[[], object], repeat: int) -> list[float]:
    out = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        out.append(time.perf_counter() - start)
    return out


def p95(xs: list[float]) -> float:
    return statistics.quantiles(xs, n=20, method="inclusive")[18] if len(xs) > 1 else xs[0]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--trajectories", type=int, default=100_000)
    ap.add_argument("--turns", type=int, default=20)
    ap.add_argument("--db", type=Path, default=Path("/tmp/agentrm-view-bench.db"))
    ap.add_argument("--requests", type=int, default=200)
    ap.add_argument("--fresh", action="store_true", help="regenerate the store even if it matches")
    args = ap.parse_args()
    want = (args.trajectories, args.trajectories * args.turns)
    if args.fresh or store_size(args.db) != want:
        print(f"generating {args.trajectories:,} trajectories × {args.turns} turns in {args.db} …",
              file=sys.stderr)
        started = time.perf_counter()
        generate(args.db, args.trajectories, args.turns)
        print(f"  took {time.perf_counter() - started:.0f} s", file=sys.stderr)

    open_store(f"sqlite:///{args.db}").close()  # a store made by an older agentrm: migrate it
    from starlette.testclient import TestClient

    from agentrm.traces.views import open_readonly
    from agentrm.view.app import create_app

    rng = random.Random(0)
    n, reps = args.trajectories, args.requests
    store = open_readonly(f"sqlite:///{args.db}")
    raw = sqlite3.connect(f"{args.db.resolve().as_uri()}?mode=ro", uri=True)
    ids = [f"{RUNS[i % 2]}/traj-{i:06d}" for i in (rng.randrange(n) for _ in range(reps))]
    cursors = [rng.randrange(n) for _ in range(reps)]
    rows: list[tuple[str, list[float], list[float] | None]] = []
    with TestClient(create_app(store), base_url="http://127.0.0.1") as client:
        def get(url: str) -> None:
            response = client.get(url)
            assert response.status_code == 200, (url, response.status_code, response.text[:300])

        it = iter(range(10**9))
        pages = [
            ("list page (first 50)", lambda: get("/trajectories"), lambda: raw_list(raw, 0)),
            ("list page (random cursor)", lambda: get(f"/trajectories?after={cursors[next(it) % reps]}"),
             lambda: raw_list(raw, cursors[next(it) % reps])),
            ("list page (run + status)", lambda: get(f"/trajectories?run={RUNS[1]}&status=turn_limit"),
             lambda: raw_list(raw, 0, "AND run_id = ? AND exit_status = ?", (RUNS[1], "turn_limit"))),
            ("trajectory page (20 turns)", lambda: get("/t/" + quote(ids[next(it) % reps])),
             lambda: raw_trajectory(raw, ids[next(it) % reps])),
        ]
        for name, page, baseline in pages:
            get_times = timed(page, 3) and timed(page, reps)  # 3 warm-up requests first
            base_times = timed(baseline, 3) and timed(baseline, reps)
            rows.append((name, get_times, base_times))
            print(f"  {name}: p95 {1000 * p95(get_times):.1f} ms", file=sys.stderr, flush=True)
        # not part of the goal, reported so a reader knows what the aggregate pages cost
        for name, url in [("runs page (all runs, aggregates)", "/"),
                          ("list page (scorer prm, min 0.9)", "/trajectories?scorer=prm&min=0.9"),
                          ("run page (coverage, 4 histograms)", f"/runs/{RUNS[0]}")]:
            rows.append((name, timed(lambda u=url: get(u), 5), None))
    store.close()
    raw.close()
    print(f"agentrm view on {n:,} trajectories × {args.turns} turns (SQLite, {args.db}); "
          f"{reps} requests per page")
    print(f"{'page':36} {'p50 ms':>8} {'p95 ms':>8} {'raw p95':>8} {'ratio':>6}")
    ok = True
    for name, times, base in rows:
        line = f"{name:36} {1000 * statistics.median(times):8.1f} {1000 * p95(times):8.1f}"
        if base is not None:
            line += f" {1000 * p95(base):8.2f} {p95(times) / p95(base):6.1f}×"
            ok &= p95(times) <= 0.200
        print(line)
    print(f"goal: list and trajectory pages p95 ≤ 200 ms: {'met' if ok else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
