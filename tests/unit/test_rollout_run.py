"""The driver without Docker: an injected sandbox factory (host directories), a real SQLite
store. The resume rule, the id conventions, typed events, finalize, and the task preparation
(tasks/prepare.py) that the driver, --rerun and progress branches share."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agentrm.rollout import events as ev
from agentrm.rollout.loop import Limits
from agentrm.rollout.policies import ScriptedPolicy
from agentrm.rollout.run import RunOptions, run
from agentrm.tasks import prepare
from agentrm.testing import DirSandbox
from agentrm.traces import open_store
from agentrm.types import ExitStatus, Task, ToolCall, Turn

TASK = Task(id="count", instruction="Count the lines of log, then submit the count.", answer="2",
            verifier={"kind": "answer", "mode": "exact"})


def act(i, name, **args):
    return {"role": "assistant", "content": "", "tool_calls": [
        {"id": f"c{i}", "type": "function", "function": {"name": name, "arguments": json.dumps(args)}}]}


ACTIONS = [act(0, "bash", command="echo a >> /workspace/log"),
           act(1, "bash", command="echo b >> /workspace/log"),
           act(2, "bash", command="wc -l < /workspace/log"),
           act(3, "submit", answer="2")]


class Factory:
    """Host-directory sandboxes, one fresh directory per sandbox (the config is ignored)."""

    def __init__(self, root: Path):
        self.root, self.made = root, []

    def __call__(self, config):
        box = DirSandbox(self.root / f"sb{len(self.made)}")
        self.made.append(box)
        return box


@pytest.fixture
def store(tmp_path):
    s = open_store(f"sqlite:///{tmp_path}/t.db")
    yield s
    s.close()


def drive(store, factory, run_id="r", **kw):
    events: list = []
    summary = run([TASK], ScriptedPolicy(ACTIONS), store, group_size=2, sandbox_factory=factory,
                  run_id=run_id, on_event=events.append, **kw)
    return summary, events


def test_group_ids_events_and_finalize(store, tmp_path):
    factory = Factory(tmp_path)
    seen = []
    summary, events = drive(store, factory, finalize=lambda t, sb: seen.append((t.id, sb.read_file("/workspace/log"))))
    assert [t["id"] for t in summary.trajectories] == ["r/count/0", "r/count/1"]
    assert {t["group_id"] for t in summary.trajectories} == {"r/count"} and summary.counts == {"submitted": 2}
    assert sorted(seen) == [("r/count/0", b"a\nb\n"), ("r/count/1", b"a\nb\n")]  # before removal
    assert all(box.closed for box in factory.made) and len(factory.made) == 2
    assert events[0] == ev.RunPlanned("r", 2, 0)
    per = [e for e in events if getattr(e, "trajectory_id", None) == "r/count/0"]
    assert [type(e) for e in per] == [ev.TrajectoryStarted] + [ev.TurnDone] * 4 + [ev.TrajectoryEnded]
    assert per[-1] == ev.TrajectoryEnded("r/count/0", "count", "submitted", 4, 1.0, None)


def test_resume_rule_skips_finished_and_continues_the_rest(store, tmp_path):
    drive(store, Factory(tmp_path / "first"))
    # member 1 died after two turns: its record says running, with turns 0 and 1
    store.reset_trajectory("r/count/1")
    for i, action in enumerate(ACTIONS[:2]):
        store.append_turn("r/count/1", Turn(i, [], action, metadata={"recorded": True}))
    factory = Factory(tmp_path / "second")
    summary, events = drive(store, factory)
    assert summary.skipped == ["r/count/0"] and [t["id"] for t in summary.trajectories] == ["r/count/1"]
    assert ev.TrajectorySkipped("r/count/0", "count", "submitted", 4) in events
    assert ev.TrajectoryStarted("r/count/1", "count", 2) in events
    (box,) = factory.made  # one fresh sandbox, the two recorded actions replayed into it once
    assert box.commands[:2] == ["echo a >> /workspace/log", "echo b >> /workspace/log"]
    resumed = store.get_trajectory("r/count/1")
    assert resumed.exit_status is ExitStatus.SUBMITTED and resumed.reward == 1.0
    assert [t.index for t in resumed.turns] == [0, 1, 2, 3]
    assert resumed.turns[0].metadata == {"recorded": True}  # kept, not written again
    assert resumed.turns[2].tool_results[0].content == "2"
    again, _ = drive(store, Factory(tmp_path / "third"))
    assert sorted(again.skipped) == ["r/count/0", "r/count/1"] and again.trajectories == []
    fresh, _ = drive(store, Factory(tmp_path / "fourth"), options=RunOptions(resume=False))
    assert not fresh.skipped and len(fresh.trajectories) == 2  # reset and run afresh


def test_infrastructure_failures_are_continued(store, tmp_path):
    """A member whose sandbox dies ends sandbox_error (reward None); a rerun continues it."""
    class Dying(Factory):
        def __call__(self, config):
            box = super().__call__(config)
            box.die_after = 2 if len(self.made) == 1 else None
            return box

    first, _ = drive(store, Dying(tmp_path / "a"))
    assert first.counts == {"sandbox_error": 1, "submitted": 1}
    second, _ = drive(store, Factory(tmp_path / "b"))
    assert [t["exit_status"] for t in second.trajectories] == ["submitted"] and len(second.skipped) == 1


def test_no_store_and_bad_input(tmp_path):
    summary, _ = drive(None, Factory(tmp_path), run_id="mem")
    assert summary.counts == {"submitted": 2} and len(summary.results) == 2
    from agentrm.errors import InputError

    with pytest.raises(InputError, match="at least 1"):
        run([TASK], ScriptedPolicy([]), None, group_size=0)
    with pytest.raises(InputError, match="unique"):
        run([TASK, TASK], ScriptedPolicy([]), None)
    with pytest.raises(InputError, match="policy spec"):
        from agentrm.executors import LocalExecutor

        run([TASK], ScriptedPolicy([]), None, executor=LocalExecutor(1), options=RunOptions(limits=Limits()))


def call(i, name, **args):
    return ToolCall.from_message(act(i, name, **args)["tool_calls"][0])


def test_prepare_setup_and_replay_rules(tmp_path):
    box = DirSandbox(tmp_path / "ws")
    prepare.setup(box, Task(id="t", instruction="x", setup=["cd /tmp", "echo 1 > /workspace/f"]))
    assert box.read_file("/workspace/f") == b"1\n"
    with pytest.raises(prepare.SetupFailed, match=r"task t: setup command failed \(exit 3\)"):
        prepare.setup(box, Task(id="t", instruction="x", setup=["exit 3"]))
    how = prepare.Replay()
    calls = [call(0, "bash", command="echo x >> /workspace/g"), call(1, "submit", bogus=1),
             call(2, "submit", answer="ok"), call(3, "bash", command="echo never >> /workspace/g")]
    ran = [(c.id, r.content) for c, r in prepare.run_calls(box, calls, how)]
    # an invalid submit is no submit (runs on as the loop does); nothing runs after a valid one
    assert [c for c, _ in ran] == ["c0", "c1", "c2"] and ran[2][1] == "ok"
    assert box.read_file("/workspace/g") == b"x\n"
    prepare.replay_turns(box, [Turn(0, [], act(0, "bash", command="echo y >> /workspace/g"))], how)
    assert box.read_file("/workspace/g") == b"x\ny\n"
