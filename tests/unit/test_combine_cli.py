"""`agentrm rewards --combine` against a real SQLite trace store."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from agentrm.types import ExitStatus, Score, ScoreLevel, Trajectory, Turn


@pytest.fixture
def db(tmp_path):
    from agentrm.traces import open_store

    url = f"sqlite:///{tmp_path / 'r.db'}"
    store = open_store(url)
    run = store.begin_run({"test": True}, run_id="r1")
    for tid, outcome in (("a", 1.0), ("b", 0.0)):
        traj = Trajectory(tid, "task", "g", run_id=run)
        store.begin_trajectory(traj)
        for i in range(3):
            store.append_turn(tid, Turn(i, [{"role": "user", "content": "q"}] if i == 0 else [],
                                        {"role": "assistant", "content": f"step {i}"}))
        store.end_trajectory(tid, ExitStatus.SUBMITTED, outcome)
        store.write_scores([Score("prm", tid, v, ScoreLevel.TURN, i, "1", "h")
                            for i, v in enumerate([0.9, 0.3, 0.6])])
        store.write_scores([Score("tests", tid, outcome, ScoreLevel.TRAJECTORY, None, "1", "k")])
    store.write_scores([Score("judge", "b", None, ScoreLevel.TRAJECTORY, None, "1", "j",
                              {"error": "sandbox gone", "failure": "infrastructure"})])
    return url


def agentrm(*args):
    return subprocess.run([sys.executable, "-m", "agentrm.cli.main", *args], capture_output=True, text=True, timeout=120)


def test_rewards_json(db):
    r = agentrm("rewards", "--db", db, "--run", "r1", "--combine", "tests + prm|clip:0.5 ; gate=tests>=1", "--json")
    assert r.returncode == 0, r.stderr
    rows = {row["trajectory_id"]: row for row in json.loads(r.stdout)}
    clipped = [min(v - 0.5, 0.0) for v in (0.9, 0.3, 0.6)]
    assert rows["a"]["rewards"] == pytest.approx([clipped[0], clipped[1], clipped[2] + 1.0])
    assert rows["b"]["rewards"] == [0.0, 0.0, 0.0]  # gate closed: outcome 0 < 1


def test_rewards_table_and_infra(db):
    r = agentrm("rewards", "--db", db, "--combine", "judge + prm")
    assert r.returncode == 0, r.stderr
    assert "n/a" in r.stdout and "infrastructure" in r.stdout


@pytest.mark.parametrize("spec,msg", [("prm|bogus", "unknown transform"), ("nosuch", "no stored scores")])
def test_rewards_bad_input(db, spec, msg):
    r = agentrm("rewards", "--db", db, "--combine", spec)
    assert r.returncode == 2 and msg in r.stderr and "Traceback" not in r.stderr
