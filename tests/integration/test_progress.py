"""PAV-style progress in real Docker sandboxes: the agent's recorded actions are replayed and
snapshotted at each turn boundary, a prover continues from every boundary in forked sandboxes,
and the progress lands on the turn that made success possible."""

from __future__ import annotations

import json

import pytest

from agentrm.protocols import PolicyOutput
from agentrm.testing import FailingPolicy
from agentrm.types import ExitStatus, ScoreLevel, Task, Trajectory, Turn
from agentrm.verifiers.progress import ProgressScorer, prefixes, progress_values

TASK = Task("state", "Write the answer to /workspace/state, then submit it.", answer="42",
            verifier={"kind": "answer", "mode": "exact"})


class ReadAndSubmit:
    """A prover that reads /workspace/state and submits what it found: it succeeds exactly when
    the state it was forked from already holds the answer."""

    name = "read-and-submit"

    def act(self, messages, tools):
        n = sum(1 for m in messages if m.get("role") == "assistant")
        last_tool = next((m for m in reversed(messages) if m.get("role") == "tool"), None)
        if last_tool is None or not last_tool["content"].startswith("state:"):
            return PolicyOutput({"role": "assistant", "content": "", "tool_calls": [
                {"id": f"p{n}", "type": "function",
                 "function": {"name": "bash", "arguments": json.dumps({"command": "echo state:$(cat /workspace/state 2>/dev/null)"})}}]})
        found = last_tool["content"].strip().removeprefix("state:")
        return PolicyOutput({"role": "assistant", "content": "", "tool_calls": [
            {"id": f"p{n}", "type": "function", "function": {"name": "submit", "arguments": json.dumps({"answer": found})}}]})


def bash(i, command):
    return {"role": "assistant", "content": "", "tool_calls": [
        {"id": f"c{i}", "type": "function", "function": {"name": "bash", "arguments": json.dumps({"command": command})}}]}


def agent(tid="a1", reward=1.0):
    actions = [bash(0, "echo 41 > /workspace/state"), bash(1, "echo 42 > /workspace/state"), bash(2, "ls /workspace")]
    turns, obs = [], [{"role": "system", "content": "sys"}, {"role": "user", "content": TASK.instruction}]
    for i, action in enumerate(actions):
        turns.append(Turn(i, obs, action))
        obs = [{"role": "tool", "tool_call_id": f"c{i}", "content": ""}]
    submit = {"role": "assistant", "content": "", "tool_calls": [
        {"id": "s", "type": "function", "function": {"name": "submit", "arguments": json.dumps({"answer": "42"})}}]}
    turns.append(Turn(3, obs, submit))
    return Trajectory(tid, TASK.id, "g", turns=turns, exit_status=ExitStatus.SUBMITTED, answer="42", reward=reward)


def test_prefixes_and_values():
    traj = agent()
    pre = prefixes(traj)
    assert len(pre) == 5 and len(pre[0]) == 2 and pre[1][-1]["role"] == "tool"
    assert progress_values([0.0, 0.0, 1.0, 1.0, 1.0]) == [0.0, 1.0, 0.0, 0.0]
    # telescoping: padding with repeated turns cannot raise the sum (it is V_T − V_0)
    assert sum(progress_values([0.2, 0.9, 0.1, 0.9, 1.0])) == pytest.approx(1.0 - 0.2)


@pytest.mark.docker
def test_progress_on_the_turn_that_made_success_possible(docker_client, tmp_path):
    cache = tmp_path / "cache.json"
    scorer = ProgressScorer(prover_policy=ReadAndSubmit(), branches=2, branch_turns=3, tasks=[TASK], cache=str(cache))
    scores = scorer.score([agent()])
    assert [s.turn_index for s in scores] == [0, 1, 2, 3]
    assert all(s.level == ScoreLevel.TURN and s.scorer == "progress" for s in scores)
    assert [s.value for s in scores] == [0.0, 1.0, 0.0, 0.0]
    assert scores[1].details["value_after"]["successes"] == 2
    assert scores[3].details["value_after"]["source"] == "outcome"
    assert scorer.branches_run == 2 * 4  # h_0..h_3 branched, h_4 is the outcome

    # a second rollout of the same group: every boundary is a cache hit, no sandbox needed
    again = ProgressScorer(prover_policy=ReadAndSubmit(), branches=2, branch_turns=3, tasks=[TASK], cache=str(cache))
    scores2 = again.score([agent("a2")])
    assert [s.value for s in scores2] == [0.0, 1.0, 0.0, 0.0] and again.branches_run == 0
    assert scores2[0].details["value_before"]["source"] == "cache"


@pytest.mark.docker
def test_budget_and_unknown_task(docker_client, tmp_path):
    scorer = ProgressScorer(prover_policy=ReadAndSubmit(), branches=2, branch_turns=3, tasks=[TASK],
                            cache=str(tmp_path / "c.json"), max_branches=4)
    scores = scorer.score([agent()])
    assert scores[0].value is not None  # h_0, h_1 fit in the budget of 4 branches
    assert scores[2].value is None and scores[2].details["abstain"] == "branch budget exhausted"
    unknown = ProgressScorer(prover_policy=ReadAndSubmit(), cache=str(tmp_path / "d.json"))
    (row,) = unknown.score([agent()])
    assert row.value is None and "unknown" in row.details["abstain"]


@pytest.mark.docker
def test_failed_prover_abstains_never_zero(docker_client, tmp_path):
    """A prover that fails gives no outcome: its branches abstain, they are not failures (0)."""
    cache = tmp_path / "c.json"
    scorer = ProgressScorer(prover_policy=FailingPolicy(RuntimeError("prover down")), branches=2, branch_turns=3, tasks=[TASK], cache=str(cache))
    scores = scorer.score([agent()])
    assert [s.turn_index for s in scores] == [0, 1, 2, 3]
    assert all(s.value is None and "no branch had an outcome" in s.details["abstain"] for s in scores)
    assert json.loads(cache.read_text()) == {}  # an unknown value is never cached


def test_infrastructure_trajectory_is_none(tmp_path):
    traj = agent()
    traj.exit_status = ExitStatus.CRASHED
    (row,) = ProgressScorer(prover_policy=ReadAndSubmit(), tasks=[TASK], cache=str(tmp_path / "c.json")).score([traj])
    assert row.value is None and row.details["failure"] == "infrastructure"


def test_bad_branches_is_input_error():
    from agentrm.errors import InputError

    with pytest.raises(InputError, match="--branches"):
        ProgressScorer(branches=0)
