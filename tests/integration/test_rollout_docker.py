"""Group rollouts in real Docker sandboxes with the scripted policy, into a real SQLite store."""

from __future__ import annotations

import json
import threading
import time

import pytest

from agentrm.rollout.events import (
    GroupFailed,
    RunPlanned,
    TrajectoryEnded,
    TrajectoryStarted,
    TurnDone,
)
from agentrm.rollout.loop import Limits
from agentrm.rollout.policies import ScriptedPolicy
from agentrm.rollout.policies.parsing import _call
from agentrm.rollout.run import RunOptions, run
from agentrm.tasks import bundled_tasks
from agentrm.traces import open_store
from agentrm.types import ExitStatus, Task

pytestmark = pytest.mark.docker
BUILTIN = {t.id: t for t in bundled_tasks()}


def act(tool, **args):
    return {"role": "assistant", "content": "", "tool_calls": [_call(tool, args)]}


@pytest.fixture
def store(tmp_path):
    s = open_store(f"sqlite:///{tmp_path}/traces.db")
    yield s
    s.close()


def test_group_forks_share_initial_state_and_anchors(docker_client, store, tmp_path):
    script = tmp_path / "count.jsonl"
    script.write_text("\n".join(json.dumps(a) for a in [
        {"tool": "bash", "args": {"command": "echo x >> /workspace/marker; wc -l < /workspace/marker; wc -l < data.txt"}},
        "<tool_call>{\"name\": \"bash\", \"arguments\": {\"command\": </tool_call>",
        {"tool": "submit", "args": {"answer": "137"}},
    ]))
    events = []
    summary = run([BUILTIN["count-lines"]], f"scripted:{script}", store, run_id="g1",
                  group_size=3, options=RunOptions(concurrency=3), on_event=events.append)
    assert summary.counts == {"submitted": 3} and not summary.skipped
    assert events[0] == RunPlanned("g1", 3, 0)
    ended = sorted((e for e in events if isinstance(e, TrajectoryEnded)), key=lambda e: e.trajectory_id)
    assert [(e.trajectory_id, e.status, e.turns, e.reward) for e in ended] == [
        (f"g1/count-lines/{k}", "submitted", 3, 1.0) for k in range(3)]
    assert sum(isinstance(e, TrajectoryStarted) for e in events) == 3
    turns = [e for e in events if isinstance(e, TurnDone) and e.trajectory_id == "g1/count-lines/0"]
    assert [(e.turn, e.valid) for e in turns] == [(1, True), (2, False), (3, True)]
    trajs = list(store.iter_trajectories(run_id="g1"))
    assert len(trajs) == 3 and {t.group_id for t in trajs} == {"g1/count-lines"}
    for t in trajs:
        assert t.exit_status is ExitStatus.SUBMITTED and t.reward == 1.0
        first = t.turns[0].tool_results[0]
        assert first.content == "1\n137"  # forks are separate; each sees the setup once
        assert first.output_events and first.duration_s > 0
        assert [turn.valid for turn in t.turns] == [True, False, True]
    for i in range(3):  # identical states -> identical anchor keys (GiGPO step groups)
        assert len({t.turns[i].anchor_key for t in trajs}) == 1


def test_fix_task_edit_and_patch_submission(docker_client, store):
    actions = [act("view_file", path="calc/calc.py"),
               act("edit_file", path="calc/calc.py", old_str="sum(xs[1:])", new_str="sum(list(xs[1:]))"),
               act("edit_file", path="calc/calc.py", old_str="nothing like this", new_str="x"),
               act("edit_file", path="/workspace/calc/calc.py", old_str="list(xs[1:])", new_str="list(xs)"),
               act("bash", command="cd calc && python3 test_calc.py"),
               act("submit")]
    summary = run([BUILTIN["fix-total"]], ScriptedPolicy(actions), store, run_id="f1",
                  options=RunOptions(limits=Limits(max_turns=10)))
    (row,) = summary.trajectories
    assert row["exit_status"] == "submitted" and row["reward"] == 1.0, row
    traj = store.get_trajectory(row["id"])
    results = [t.tool_results[0].content for t in traj.turns]
    assert "3      return sum(xs[1:])" in results[0]
    assert "Edited" in results[1] and "not found" in results[2]
    assert results[4] == "ok"
    patch = traj.metadata["submission"]
    assert "-    return sum(xs[1:])" in patch and "+    return sum(list(xs))" in patch


def test_wrong_fix_scores_zero_even_if_tests_are_edited(docker_client, store):
    cheat = [act("bash", command="echo 'print(\"ok\")' > calc/test_calc.py"), act("submit")]
    summary = run([BUILTIN["fix-total"]], ScriptedPolicy(cheat), store, run_id="c1")
    assert summary.trajectories[0]["exit_status"] == "submitted"
    assert summary.trajectories[0]["reward"] == 0.0  # the verifier restored the test file


def test_container_killed_mid_trajectory_is_sandbox_error(docker_client, store):
    task = Task(id="slow", instruction="wait", answer="1")
    policy = ScriptedPolicy([act("bash", command="sleep 20"), act("submit", answer="1")])

    def killer():
        deadline = time.time() + 60
        while time.time() < deadline:
            found = docker_client.containers.list(filters={"label": "agentrm.run_id=k1"})
            if found:
                time.sleep(1.5)
                for c in found:
                    c.remove(force=True)
                return
            time.sleep(0.2)
    thread = threading.Thread(target=killer)
    thread.start()
    summary = run([task], policy, store, run_id="k1")
    thread.join()
    (row,) = summary.trajectories
    assert row["exit_status"] == "sandbox_error" and row["reward"] is None, store.get_trajectory(row["id"]).turns[0].tool_results
    saved = store.get_trajectory(row["id"])
    assert saved.exit_status is ExitStatus.SANDBOX_ERROR and saved.reward is None
    assert saved.failure_kind.value == "infrastructure"


def test_broken_setup_closes_the_group_as_sandbox_error(docker_client, store):
    task = Task(id="bad-setup", instruction="x", answer="1", setup=["exit 7"])
    events = []
    summary = run([task], ScriptedPolicy([]), store, run_id="s1", group_size=2, on_event=events.append)
    assert summary.counts == {"sandbox_error": 2}
    assert all("setup command failed (exit 7)" in t["error"] for t in summary.trajectories)
    failed = [e for e in events if isinstance(e, GroupFailed)]
    assert len(failed) == 1 and failed[0].task_id == "bad-setup" and "exit 7" in failed[0].error


def test_limits_in_docker(docker_client, store):
    policy = ScriptedPolicy([act("bash", command="sleep 3")] * 4)
    task = Task(id="t", instruction="x", answer="1")
    summary = run([task], policy, store, run_id="l1",
                  options=RunOptions(limits=Limits(max_turns=4, max_seconds=2, command_timeout=30)))
    assert summary.trajectories[0]["exit_status"] == "time_limit"
    assert summary.trajectories[0]["reward"] == 0.0


def test_group_snapshots_are_removed_after_the_run(docker_client, store):
    policy = ScriptedPolicy([act("submit", answer="137")])
    run([BUILTIN["count-lines"]], policy, store, run_id="snap1", group_size=2)
    left = docker_client.images.list(filters={"label": ["agentrm.kind=snapshot", "agentrm.run_id=snap1"]})
    assert left == []
