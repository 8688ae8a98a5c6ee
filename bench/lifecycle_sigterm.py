"""SIGTERM to `agentrm run` half-way, N times: containers left behind and trajectories left
`running` in the store (both should be 0). Baseline in the same process: the same count after
SIGKILL (no handler can run), which `agentrm sandbox cleanup` then has to remove.

    python bench/lifecycle_sigterm.py --runs 20
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid

import docker

from agentrm.sandboxes.engine import LABEL_RUN


def containers(api, run_id: str) -> int:
    return len(api.containers(all=True, filters={"label": f"{LABEL_RUN}={run_id}"}))


def one(api, tmp: str, sig: int) -> tuple[int, int]:
    run_id = f"bench-sig-{uuid.uuid4().hex[:8]}"
    db = os.path.join(tmp, f"{run_id}.db")
    script = os.path.join(tmp, "sleep.jsonl")
    with open(script, "w") as fh:
        fh.write(json.dumps({"tool": "bash", "args": {"command": "sleep 30"}}) + "\n")
    proc = subprocess.Popen(
        [sys.executable, "-m", "cli.main", "run", "--policy", f"scripted:{script}",
         "--group-size", "2", "--concurrency", "2", "--run-id", run_id, "--db", f"sqlite:///{db}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while containers(api, run_id) < 2 and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(1.0)  # the commands are running
    proc.send_signal(sig)
    proc.wait(timeout=120)
    time.sleep(1.0)
    left = containers(api, run_id)
    stuck = 0
    if os.path.exists(db):
        with sqlite3.connect(db) as con:
            stuck = con.execute("select count(*) from trajectories where exit_status = 'running'"
                                ).fetchone()[0]
    subprocess.run([sys.executable, "-m", "cli.main", "sandbox", "cleanup", "--run-id", run_id,
                    "--force"], capture_output=True)
    return left, stuck


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=20)
    args = ap.parse_args()
    api = docker.APIClient()
    with tempfile.TemporaryDirectory() as tmp:
        term = [one(api, tmp, signal.SIGTERM) for _ in range(args.runs)]
        kill = [one(api, tmp, signal.SIGKILL) for _ in range(min(3, args.runs))]
    print(f"SIGTERM x{len(term)}: containers left {sum(c for c, _ in term)}, "
          f"trajectories left running {sum(s for _, s in term)}")
    print(f"SIGKILL x{len(kill)} (baseline, no handler): containers left "
          f"{sum(c for c, _ in kill)}, trajectories left running {sum(s for _, s in kill)}")


if __name__ == "__main__":
    main()
