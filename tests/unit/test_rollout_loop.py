"""The loop's branches: every exit status, invalid turns, limits, store writes as turns complete.

Runs on a host-directory sandbox (agentrm.testing.DirSandbox) and a real SQLite trace store;
the Docker path is in tests/integration/test_rollout_docker.py.
"""

from __future__ import annotations

import threading

import pytest

from agentrm.hashing import anchor_key
from agentrm.protocols import PolicyOutput
from agentrm.rollout.loop import Limits, run_trajectory
from agentrm.rollout.policies import ScriptedPolicy
from agentrm.rollout.policies.parsing import _call
from agentrm.testing import DirSandbox, FailingPolicy
from agentrm.traces import open_store
from agentrm.types import ExitStatus, Task

TASK = Task(id="count", instruction="How many lines in data.txt?", answer="3",
            verifier={"kind": "answer", "mode": "numeric"})


def act(tool, **args):
    return {"role": "assistant", "content": "", "tool_calls": [_call(tool, args)]}


def text(t):
    from agentrm.rollout.policies.parsing import assistant_message
    return assistant_message(t)


@pytest.fixture
def sb(tmp_path):
    box = DirSandbox(tmp_path / "ws")
    box.write_file("/workspace/data.txt", "a\nb\nc\n")
    return box


@pytest.fixture
def store(tmp_path):
    s = open_store(f"sqlite:///{tmp_path}/t.db")
    yield s
    s.close()


def run(actions, sb, store=None, **limits):
    policy = ScriptedPolicy(actions)
    return run_trajectory(TASK, policy, sb, store, Limits(**limits), group_id="g",
                          trajectory_id="t1", run_id=store and store.begin_run({}, "r"))


def test_submitted_with_reward_and_turns_in_store(sb, store):
    traj = run([act("bash", command="wc -l < data.txt"), act("submit", answer="3")], sb, store)
    assert traj.exit_status is ExitStatus.SUBMITTED and traj.reward == 1.0
    saved = store.get_trajectory("t1")
    assert saved.exit_status is ExitStatus.SUBMITTED and saved.reward == 1.0
    assert [t.index for t in saved.turns] == [0, 1] and saved.group_id == "g"
    first, second = saved.turns
    assert first.observation[0]["role"] == "system" and first.anchor_key == anchor_key(first.observation)
    assert second.observation == [{"role": "tool", "tool_call_id": first.assistant["tool_calls"][0]["id"],
                                   "content": "3"}]
    assert first.tool_results[0].exit_code == 0 and first.tool_results[0].duration_s is not None
    assert saved.tail[0]["content"] == "3" and saved.metadata["submission"] == "3"
    assert saved.messages() == traj.messages()


def test_wrong_answer_scores_zero(sb):
    traj = run([act("submit", answer="4")], sb)
    assert traj.exit_status is ExitStatus.SUBMITTED and traj.reward == 0.0


def test_malformed_calls_mark_turns_invalid_then_format_error(sb, store):
    actions = [text("<tool_call>{oops</tool_call>"), act("launch_missiles"), act("bash"),
               act("bash", command="true"), text("I think the answer is 3"), text("{}"), text("...")]
    traj = run(actions, sb, store, max_format_errors=3)
    assert [t.valid for t in traj.turns] == [False, False, False]
    assert traj.exit_status is ExitStatus.FORMAT_ERROR and traj.reward == 0.0
    reasons = [t.metadata["invalid"][0] for t in store.get_trajectory("t1").turns]
    assert "bad JSON" in reasons[0] and "unknown tool" in reasons[1] and "missing" in reasons[2]
    # the agent saw each problem as an observation
    assert "Error: bad JSON" in traj.turns[1].observation[0]["content"]


def test_invalid_streak_resets_on_a_valid_turn(sb):
    actions = [act("nope"), act("nope"), act("bash", command="true"), text("prose"),
               act("submit", answer="3")]
    traj = run(actions, sb, max_format_errors=3)
    assert [t.valid for t in traj.turns] == [False, False, True, False, True]
    assert traj.exit_status is ExitStatus.SUBMITTED
    assert traj.turns[4].observation[0]["role"] == "user"  # the "no tool call" nudge


def test_turn_limit(sb):
    traj = run([act("bash", command="true")] * 5, sb, max_turns=2)
    assert traj.exit_status is ExitStatus.TURN_LIMIT and len(traj.turns) == 2 and traj.reward == 0.0


def test_token_limit_from_counts(sb):
    class Counting(ScriptedPolicy):
        def act(self, messages, tools):
            out = super().act(messages, tools)
            return PolicyOutput(out.message, prompt_tokens=50 * len(messages), completion_tokens=10)
    traj = run_trajectory(TASK, Counting([act("bash", command="true")] * 9), sb,
                          limits=Limits(max_tokens=200))
    assert traj.exit_status is ExitStatus.TOKEN_LIMIT and traj.turns[-1].prompt_tokens == 200


def test_time_limit_caps_commands(sb):
    traj = run([act("bash", command="sleep 5")] * 3, sb, max_seconds=1.0)
    assert traj.exit_status is ExitStatus.TIME_LIMIT
    assert traj.turns[0].tool_results[0].timed_out


def test_script_exhausted_is_model_error_not_zero(sb, store):
    traj = run([act("bash", command="true")], sb, store)
    assert traj.exit_status is ExitStatus.MODEL_ERROR and traj.reward is None
    saved = store.get_trajectory("t1")
    assert saved.exit_status is ExitStatus.MODEL_ERROR and saved.reward is None
    assert "exhausted" in saved.metadata["error"] and len(saved.turns) == 1


def test_policy_exception_is_model_error(sb):
    traj = run_trajectory(TASK, FailingPolicy(RuntimeError("CUDA out of memory")), sb)
    assert traj.exit_status is ExitStatus.MODEL_ERROR and "RuntimeError" in traj.metadata["error"]


def test_sandbox_death_is_sandbox_error_and_turn_kept(tmp_path, store):
    box = DirSandbox(tmp_path / "ws", die_after=2)
    traj = run([act("bash", command="true"), act("bash", command="true"), act("submit", answer="3")],
               box, store)
    assert traj.exit_status is ExitStatus.SANDBOX_ERROR and traj.reward is None
    saved = store.get_trajectory("t1")
    assert len(saved.turns) == 2 and "SandboxGone" in saved.turns[1].metadata["error"]


def test_store_failure_mid_run_still_closes(sb, tmp_path):
    class FlakyStore:
        def __init__(self):
            self.ended = None

        def begin_trajectory(self, traj):
            pass

        def append_turn(self, traj_id, turn):
            raise OSError("disk full")

        def set_tail(self, *a):
            pass

        def update_trajectory(self, *a, **kw):
            pass

        def end_trajectory(self, traj_id, status, reward=None):
            self.ended = status
    flaky = FlakyStore()
    traj = run_trajectory(TASK, ScriptedPolicy([act("submit", answer="3")]), sb, flaky)
    assert traj.exit_status is ExitStatus.CRASHED and flaky.ended is ExitStatus.CRASHED
    assert traj.reward is None


def test_cancel_closes_as_interrupted(sb):
    cancel = threading.Event()
    cancel.set()
    traj = run_trajectory(TASK, ScriptedPolicy([act("submit", answer="3")]), sb, cancel=cancel)
    assert traj.exit_status is ExitStatus.CRASHED and traj.metadata["error"] == "interrupted"


def test_replay_prefix_is_not_rewritten_and_continues(sb, store):
    run([act("bash", command="echo x >> log.txt")], sb, store)  # model_error after one turn
    before = store.get_trajectory("t1").turns
    actions = [act("bash", command="echo x >> log.txt"), act("submit", answer="3")]
    sb2 = DirSandbox(sb.root.parent / "ws2")
    sb2.write_file("/workspace/data.txt", "a\nb\nc\n")
    traj = run_trajectory(TASK, ScriptedPolicy(actions), sb2, store, group_id="g", trajectory_id="t1",
                          run_id="r", replay=before)
    assert traj.exit_status is ExitStatus.SUBMITTED
    saved = store.get_trajectory("t1")
    assert len(saved.turns) == 2 and saved.turns[0].started_at == before[0].started_at
    assert sb2.read_file("/workspace/log.txt") == b"x\n"  # the recorded action was re-run


def test_no_answer_task_gets_no_reward(sb):
    task = Task(id="open", instruction="explore")
    traj = run_trajectory(task, ScriptedPolicy([act("submit", answer="whatever")]), sb)
    assert traj.exit_status is ExitStatus.SUBMITTED and traj.reward is None


@pytest.mark.parametrize("limits", [{}, {"max_turns": 2}, {"max_format_errors": 1}])
def test_direct_engine_matches_the_langgraph_graph(tmp_path, limits):
    actions = [act("bash", command="wc -l < data.txt"), text("no call"), act("submit", answer="3")]
    out = {}
    for engine in ("langgraph", "direct"):
        box = DirSandbox(tmp_path / engine)
        box.write_file("/workspace/data.txt", "a\nb\nc\n")
        traj = run_trajectory(TASK, ScriptedPolicy(actions), box, limits=Limits(**limits),
                              engine=engine)
        out[engine] = (traj.exit_status, traj.reward, [(t.anchor_key, t.valid) for t in traj.turns],
                       [m.get("content") for m in traj.messages()])
    assert out["langgraph"] == out["direct"]


def test_turns_are_in_the_store_while_the_trajectory_runs(sb, store):
    seen = []

    class Watching(ScriptedPolicy):
        def act(self, messages, tools):
            seen.append(len(store.get_trajectory("t1").turns))
            return super().act(messages, tools)
    actions = [act("bash", command="true")] * 3 + [act("submit", answer="3")]
    run_trajectory(TASK, Watching(actions), sb, store, trajectory_id="t1", run_id=store.begin_run({}, "r"))
    # every completed turn is committed before the next model call starts
    assert seen == [0, 1, 2, 3]
