"""Resume: kill `agentrm run` mid-run (SIGKILL, or Ctrl-C), rerun the same --run-id: finished
trajectories are skipped, the interrupted one continues from its recorded turns, and no turn is
written twice."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time

import pytest

from agentrm.rollout.run import run
from agentrm.tasks import bundled_tasks
from agentrm.traces import open_store
from agentrm.types import ExitStatus

pytestmark = pytest.mark.docker
ACTIONS = [
    {"tool": "bash", "args": {"command": "echo a >> /workspace/log"}},
    {"tool": "bash", "args": {"command": "sleep 3; echo slept"}},
    {"tool": "bash", "args": {"command": "cat /workspace/log"}},
    {"tool": "submit", "args": {"answer": "137"}},
]


def _wait_for(pred, timeout=120):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if pred():
            return True
        time.sleep(0.1)
    return False


def _state(db):
    try:
        with sqlite3.connect(db, timeout=5) as conn:
            rows = conn.execute("select id, exit_status, n_turns from trajectories order by id").fetchall()
    except sqlite3.Error:
        return {}
    return {r[0]: (r[1], r[2]) for r in rows}


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT], ids=["kill", "ctrl-c"])
def test_killed_run_resumes_without_duplicates(docker_client, tmp_path, sig):
    script = tmp_path / "acts.jsonl"
    script.write_text("\n".join(json.dumps(a) for a in ACTIONS))
    db = tmp_path / "t.db"
    run_id = f"resume-{sig.name.lower()}"
    cmd = [sys.executable, "-c", "from agentrm.cli.main import main; main()", "run",
           "--tasks", "builtin", "--task", "count-lines", "--policy", f"scripted:{script}",
           "--group-size", "2", "--concurrency", "1", "--run-id", run_id, "--db", f"sqlite:///{db}"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    first, second = f"{run_id}/count-lines/0", f"{run_id}/count-lines/1"
    try:
        # kill while the second trajectory sleeps in its turn 1 (turn 0 recorded)
        assert _wait_for(lambda: _state(db).get(second, ("", 0))[1] >= 1), proc.communicate(timeout=5)
        time.sleep(0.5)
        os.kill(proc.pid, sig)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    if sig == signal.SIGINT:
        assert proc.returncode == 130, err
    state = _state(db)
    assert state[first] == ("submitted", 4)
    expected = "crashed" if sig == signal.SIGINT else "running"
    assert state[second][0] == expected and 1 <= state[second][1] < 4
    from agentrm.sandboxes import cleanup
    cleanup(run_id)  # containers of the killed process

    store = open_store(f"sqlite:///{db}")
    before = store.get_trajectory(second).turns
    tasks = [t for t in bundled_tasks() if t.id == "count-lines"]
    summary = run(tasks, f"scripted:{script}", store, run_id=run_id, group_size=2)
    assert summary.skipped == [first]
    assert [t["id"] for t in summary.trajectories] == [second]
    resumed = store.get_trajectory(second)
    assert resumed.exit_status is ExitStatus.SUBMITTED and resumed.reward == 1.0
    assert [t.index for t in resumed.turns] == [0, 1, 2, 3]
    assert resumed.turns[0].started_at == before[0].started_at  # recorded turn kept, not redone
    assert resumed.turns[2].tool_results[0].content == "a"  # replayed once into the fresh fork
    with sqlite3.connect(db) as conn:
        (n,) = conn.execute("select count(*) from turns where trajectory_id = ?", (second,)).fetchone()
    assert n == 4
    again = run(tasks, f"scripted:{script}", store, run_id=run_id, group_size=2)
    assert sorted(again.skipped) == [first, second] and again.trajectories == []
