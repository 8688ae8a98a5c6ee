"""Judge verifier with tools: a scripted judge runs commands in its own Docker sandbox, its
trajectory is stored and linked from the Score; failures of the judge are not a 0."""

from __future__ import annotations

import pytest

from agentrm.errors import InfrastructureError
from agentrm.protocols import ScoringContext
from agentrm.types import ExitStatus, ScoreLevel, Trajectory, Turn
from agentrm.verifiers.judge import JudgeVerifier, parse_verdict

pytestmark = pytest.mark.docker

QUESTION = "What is six times seven? Give the number."


def agent(answer: str, tid: str = "agent-1") -> Trajectory:
    msg = {"role": "assistant", "content": "",
           "tool_calls": [{"id": "s", "type": "function", "function": {"name": "submit", "arguments": {"answer": answer}}}]}
    return Trajectory(tid, "mult", "g", turns=[Turn(0, [{"role": "user", "content": QUESTION}], msg)],
                      exit_status=ExitStatus.SUBMITTED, answer="42")


def judge_policy(*actions):
    from agentrm.rollout.policies import ScriptedPolicy

    return ScriptedPolicy([{"role": "assistant", "content": "", "tool_calls": [
        {"id": f"j{i}", "type": "function", "function": {"name": name, "arguments": args}}]}
        for i, (name, args) in enumerate(actions)], name="scripted-judge")


@pytest.fixture
def store_url(tmp_path):
    return f"sqlite:///{tmp_path / 'judge.db'}"


def test_parse_verdict():
    assert parse_verdict("PASS") == 1.0 and parse_verdict("fail") == 0.0 and parse_verdict("0.25") == 0.25
    assert parse_verdict("<verdict>correct</verdict>") == 1.0
    assert parse_verdict("pass or fail, hard to say") is None  # hedging is no verdict
    assert parse_verdict("") is None and parse_verdict("maybe") is None


def test_judge_uses_tools_and_is_traced(docker_client, store_url):
    from agentrm.traces import open_store

    policy = judge_policy(("bash", {"command": "python3 -c 'print(6*7)'; cat /workspace/answer.txt"}),
                          ("submit", {"answer": "PASS"}))
    scorer = JudgeVerifier(judge_policy=policy)
    context = ScoringContext(store=open_store(store_url))  # the judge opens no store of its own
    (score,) = scorer.score([agent("42")], context)
    assert score.value == 1.0 and score.level == ScoreLevel.TRAJECTORY and score.scorer == "judge"
    judged = open_store(store_url).get_trajectory(score.details["judge_trajectory_id"])
    run_id = f"judge-{scorer.config_hash()}"  # the driver's conventions: RUN/TASK, RUN/TASK/K
    assert judged.group_id == f"{run_id}/judge:agent-1" and judged.id == f"{run_id}/judge:agent-1/0"
    assert judged.metadata["judges"] == "agent-1" and judged.run_id == run_id
    assert score.details["judge_tool_calls"] == 2
    observation = judged.turns[1].observation[0]["content"]  # the bash result the judge saw
    assert "42" in observation and judged.exit_status == ExitStatus.SUBMITTED
    # re-judging replaces the stored transcript instead of piling up turns
    again = JudgeVerifier(judge_policy=judge_policy(("bash", {"command": "true"}), ("submit", {"answer": "PASS"}))
                          ).score([agent("42")], context)[0]
    assert again.details["judge_trajectory_id"] == score.details["judge_trajectory_id"]
    assert len(open_store(store_url).get_trajectory(again.details["judge_trajectory_id"]).turns) == 2


def test_judge_without_store_keeps_transcript(docker_client):
    (score,) = JudgeVerifier(judge_policy=judge_policy(("submit", {"answer": "FAIL"}))).score([agent("41")])
    assert score.value == 0.0 and score.details["judge_messages"]


def test_restated_question_fails_before_the_judge(docker_client):
    """Known hack: answer with the question itself. A lenient judge would pass it."""
    lenient = JudgeVerifier(judge_policy=judge_policy(("submit", {"answer": "PASS"})))
    (score,) = lenient.score([agent("What is six times seven? Give the number.")])
    assert score.value == 0.0 and score.details["reason"] == "restates the question"
    assert "judge_trajectory_id" not in score.details


def test_judge_failures_are_infrastructure(docker_client):
    no_verdict = JudgeVerifier(judge_policy=judge_policy(("submit", {"answer": "it depends"})))
    (s1,) = no_verdict.score([agent("42")])
    assert s1.value is None and s1.details["failure"] == "infrastructure"
    exhausted = JudgeVerifier(judge_policy=judge_policy(("bash", {"command": "true"})))  # never submits
    (s2,) = exhausted.score([agent("42")])
    assert s2.value is None and s2.details["failure"] == "infrastructure"
    def broken(config):  # the context's factory cannot start the judge's sandbox
        raise InfrastructureError("no engine")

    lenient = JudgeVerifier(judge_policy=judge_policy(("submit", {"answer": "PASS"})))
    (s3,) = lenient.score([agent("42")], ScoringContext(sandbox_factory=broken))
    assert s3.value is None and s3.details["failure"] == "infrastructure" and "no engine" in s3.details["error"]
    crashed = agent("42")
    crashed.exit_status = ExitStatus.SANDBOX_ERROR
    assert JudgeVerifier(judge_policy=judge_policy()).score([crashed])[0].value is None
