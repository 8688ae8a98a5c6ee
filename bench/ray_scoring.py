"""Scoring throughput on a local Ray cluster (1 and 2 scorer actors) vs the local executor.

    python bench/ray_scoring.py [--trajectories 48] [--steps 20]

A tiny token-classification PRM (random weights, 4 layers, hidden 256) scores 20-step
trajectories stored in a SQLite trace store (one file per configuration, so no run skips work
another already stored). Prints trajectories/s per configuration, the scaling ratio of 2 actors
over 1, and Ray's per-task overhead (a no-op task round trip vs a local call).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path


def noop(x: int) -> int:
    return x


def fill_store(url: str, n: int, steps: int) -> list[str]:
    from agentrm.traces import open_store
    from agentrm.verifiers.prm_tiny import sample_trajectory

    store = open_store(url)
    ids = []
    for i in range(n):
        traj = sample_trajectory(f"t{i}", steps, seed=i)
        store.begin_trajectory(traj)
        for turn in traj.turns:
            store.append_turn(traj.id, turn)
        ids.append(traj.id)
    store.close()
    return ids


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trajectories", type=int, default=48)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=4)
    args = parser.parse_args()
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # keep Ray on loopback
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # a throwaway loopback cluster

    from rich.console import Console
    from rich.table import Table

    from agentrm.distributed import ScorerWorker, score_on_ray
    from agentrm.verifiers.prm_tiny import build_tiny_prm

    work = Path(tempfile.mkdtemp(prefix="agentrm-ray-bench-"))
    model = work / "prm"
    build_tiny_prm(model, "token-cls", layers=4, hidden=256, heads=4)
    specs = [{"name": "prm", "options": {"model": str(model), "style": "token-cls"}}]
    rows = []

    url = f"sqlite:///{work}/local.db"
    ids = fill_store(url, args.trajectories, args.steps)
    worker = ScorerWorker(url, specs, args.batch_size)
    start = time.perf_counter()
    for i in range(0, len(ids), args.batch_size):
        worker.score(ids[i:i + args.batch_size])
    local_s = time.perf_counter() - start
    rows.append(("local executor (in-process)", local_s))

    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    for actors in (1, 2):
        url = f"sqlite:///{work}/ray{actors}.db"
        ids = fill_store(url, args.trajectories, args.steps)
        start = time.perf_counter()
        report = score_on_ray(ids, url, specs, actors=actors, batch_size=args.batch_size)
        assert not report["failed"], report["failed"]
        rows.append((f"ray, {actors} actor(s)", time.perf_counter() - start))

    remote_noop = ray.remote(noop)
    ray.get([remote_noop.remote(i) for i in range(20)])  # warm the worker pool
    n = 500
    start = time.perf_counter()
    ray.get([remote_noop.remote(i) for i in range(n)])
    ray_task_s = (time.perf_counter() - start) / n
    start = time.perf_counter()
    for i in range(n):
        noop(i)
    local_call_s = (time.perf_counter() - start) / n
    ray.shutdown()

    table = Table(title=f"scoring {args.trajectories} trajectories × {args.steps} steps (tiny PRM)")
    for column in ("configuration", "seconds", "trajectories/s", "vs local"):
        table.add_column(column)
    for name, seconds in rows:
        table.add_row(name, f"{seconds:.2f}", f"{args.trajectories / seconds:.1f}",
                      f"{local_s / seconds:.2f}×")
    console = Console()
    console.print(table)
    one, two = rows[1][1], rows[2][1]
    console.print(f"scaling 2 actors over 1: {one / two:.2f}× (ideal 2× on 2 free cores; "
                  f"actor start-up and model load included)")
    console.print(f"Ray per-task overhead: {ray_task_s * 1e3:.2f} ms per no-op task "
                  f"(batch of {n}, amortised) vs {local_call_s * 1e6:.2f} µs per local call")


if __name__ == "__main__":
    main()
