"""Rollouts and scoring on a real local Ray cluster against a real PostgreSQL store.

A run split across Ray workers must equal the same run done locally, and losing a worker (its
process SIGKILLed mid-unit) must lose nothing and write nothing twice.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import pytest

from agentrm.distributed import score_on_ray
from agentrm.executors import LocalExecutor, RayExecutor
from agentrm.rollout.loop import Limits
from agentrm.rollout.policies.parsing import _call
from agentrm.rollout.run import RunOptions, run
from agentrm.traces import open_store
from agentrm.types import ExitStatus, ScoreLevel, Task

pytestmark = [pytest.mark.ray, pytest.mark.docker, pytest.mark.postgres]


def act(tool, **args):
    return {"role": "assistant", "content": "", "tool_calls": [_call(tool, args)]}


def tasks(n: int) -> list[Task]:
    return [Task(id=f"read-{i}", instruction="Read /workspace/n.txt, then submit 42.", answer="42",
                 setup=[f"echo {i} > /workspace/n.txt"],
                 verifier={"kind": "answer", "mode": "numeric"}) for i in range(n)]


@pytest.fixture
def script(tmp_path):
    """Reads the task's number, works on it in the shell, submits (sleeps to be killable)."""
    path = tmp_path / "double.jsonl"
    actions = [act("bash", command="sleep 1; cat /workspace/n.txt"),
               act("bash", command="echo $(( $(cat /workspace/n.txt) * 2 )) > /workspace/answer"),
               act("bash", command="cat /workspace/answer"),
               act("submit", answer="42")]
    path.write_text("\n".join(json.dumps(a) for a in actions))
    return path


@pytest.fixture
def db_url(fresh_postgres_url):
    return fresh_postgres_url


def run_on(executor, n: int, script, db_url: str, run_id: str):
    """The driver with every task group as a unit on `executor` (workers open `db_url`)."""
    return run(tasks(n), f"scripted:{script}", open_store(db_url), group_size=2, executor=executor,
               run_id=run_id, store_url=db_url, options=RunOptions(limits=Limits(max_turns=6)))


def comparable(store, run_id: str) -> dict:
    """A run's trajectories without ids/timings: what must match between executors."""
    out = {}
    for t in store.iter_trajectories(run_id=run_id):
        out[t.task_id + "/" + t.id.rsplit("/", 1)[1]] = {
            "status": t.exit_status.value, "reward": t.reward,
            "turns": [(turn.index, turn.anchor_key, [r.content for r in turn.tool_results])
                      for turn in t.turns],
        }
    return out


def test_ray_run_equals_local_run(ray_cluster, docker_client, db_url, script):
    store = open_store(db_url)
    local = run_on(LocalExecutor(2), 3, script, db_url, "local")
    remote = run_on(RayExecutor(ray_cluster), 3, script, db_url, "ray")
    assert not local.failed and not remote.failed
    expected = comparable(store, "local")
    assert len(expected) == 6
    assert all(t["status"] == "submitted" for t in expected.values())
    assert comparable(store, "ray") == expected


def _ray_worker_pids(title: str) -> list[int]:
    out = subprocess.run(["pgrep", "-f", title], capture_output=True, text=True).stdout
    return [int(p) for p in out.split() if int(p) != os.getpid()]


def test_killing_a_worker_mid_run_loses_nothing(ray_cluster, docker_client, db_url, script):
    import threading

    store = open_store(db_url)
    killed: list[int] = []

    def killer():
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not killed:
            # a unit is mid-rollout once its first turn is in the store
            started = [t for t in store.iter_trajectories(run_id="killed") if t.turns]
            pids = _ray_worker_pids("ray::_run_remote")
            if started and pids:
                os.kill(pids[0], signal.SIGKILL)
                killed.append(pids[0])
            time.sleep(0.2)

    thread = threading.Thread(target=killer)
    thread.start()
    result = run_on(RayExecutor(ray_cluster), 2, script, db_url, "killed")
    thread.join()
    assert killed, "no Ray worker was caught mid-rollout"
    assert not result.failed
    trajs = list(store.iter_trajectories(run_id="killed"))
    assert len(trajs) == 4
    for t in trajs:
        assert t.exit_status is ExitStatus.SUBMITTED, (t.id, t.exit_status)
        assert [turn.index for turn in t.turns] == list(range(len(t.turns)))  # no duplicates
    local = run_on(LocalExecutor(1), 2, script, db_url, "reference")
    assert not local.failed
    assert comparable(store, "killed") == comparable(store, "reference")


def test_scoring_actors_equal_local_scoring_and_survive_losing_one(ray_cluster, docker_client,
                                                                   db_url, script):
    from agentrm.scoring import score_trajectories
    from agentrm.verifiers.registry import make_scorer

    store = open_store(db_url)
    run_on(LocalExecutor(2), 4, script, db_url, "to-score")
    ids = sorted(t.id for t in store.iter_trajectories(run_id="to-score"))
    assert len(ids) == 8
    specs = [{"name": "answer", "options": {"mode": "numeric"}}]

    local_scores = score_trajectories(list(store.iter_trajectories(ids=ids)),
                                      [make_scorer("answer", mode="numeric")])
    expected = {(s.trajectory_id, s.level.value, s.turn_index): s.value for s in local_scores}
    assert not store.get_scores(trajectory_ids=ids)  # scored in memory only so far

    killed: list[int] = []

    def on_batch(n):
        if not killed:
            pids = _ray_worker_pids("ray::ScorerWorker")
            if pids:
                os.kill(pids[0], signal.SIGKILL)
                killed.append(pids[0])

    report = score_on_ray(ids, db_url, specs, actors=2, batch_size=2, ray_address=ray_cluster,
                          on_batch=on_batch)
    assert killed and not report["failed"]
    stored = store.get_scores(trajectory_ids=ids, scorer="answer")
    got = {(s.trajectory_id, s.level.value, s.turn_index): s.value for s in stored}
    assert got == expected  # same scores, each written once (keys are unique)
    assert len(stored) == len(got)
    assert any(s.level is ScoreLevel.TRAJECTORY and s.value == 1.0 for s in stored)


def test_cli_runs_rollouts_scoring_and_swebench_on_ray(ray_cluster, docker_client, db_url, script,
                                                       tmp_path):
    from typer.testing import CliRunner

    from agentrm.cli.main import app

    runner = CliRunner()
    task_file = tmp_path / "tasks.jsonl"
    task_file.write_text("\n".join(json.dumps({"id": t.id, "instruction": t.instruction,
                                               "answer": t.answer, "setup": t.setup,
                                               "verifier": t.verifier}) for t in tasks(2)))
    common = ["--executor", "ray", "--ray-address", ray_cluster, "--db", db_url]
    out = runner.invoke(app, ["run", "--tasks", str(task_file), "--policy", f"scripted:{script}",
                              "--group-size", "2", "--run-id", "cli-ray", "--json", *common])
    assert out.exit_code == 0, out.output
    ran = json.loads(out.stdout)
    assert sorted(t["exit_status"] for t in ran["trajectories"]) == ["submitted"] * 4

    out = runner.invoke(app, ["score", "--run", "cli-ray", "-s", "answer", "-o", "mode=numeric",
                              "--actors", "1", "--json", *common])
    assert out.exit_code == 0, out.output
    rows = [r for r in json.loads(out.stdout) if r["level"] == "trajectory"]
    assert len(rows) == 4 and {r["value"] for r in rows} == {1.0}

    ids = "agentrm__textkit-1,agentrm__ministats-1"
    out = runner.invoke(app, ["eval", "swe-bench", "--predictions", "gold", "--instance-ids", ids,
                              "--run-id", "swe-ray", "--run-dir", str(tmp_path / "runs"),
                              "--json", *common])
    assert out.exit_code == 0, out.output
    summary = json.loads(out.stdout)["summary"]
    assert summary["resolved_instances"] == 2 and summary["error_instances"] == 0
    assert (tmp_path / "runs" / "swe-ray").is_dir()
