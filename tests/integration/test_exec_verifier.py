"""Execution verifier in real Docker sandboxes: programs, commands, patches, several cases,
and infrastructure failures that must not become 0."""

from __future__ import annotations

import pytest

from agentrm.protocols import ScoringContext
from agentrm.sandboxes import DockerSandbox
from agentrm.types import ExitStatus, ScoreLevel, Task, Trajectory, Turn
from agentrm.verifiers.exec_verifier import ExecVerifier, outputs_match, program_of
from agentrm.verifiers.registry import make_scorer

CTX = ScoringContext(sandbox_factory=DockerSandbox)
SUM = "import sys\nprint(sum(int(x) for x in sys.stdin.read().split()))\n"


def traj(answer=None, tid="t", submission=None, truth=None, task_id="task"):
    msg = {"role": "assistant", "content": ""}
    if answer is not None:
        msg["tool_calls"] = [{"id": "c", "type": "function", "function": {"name": "submit", "arguments": {"answer": answer}}}]
    t = Trajectory(tid, task_id, "g", turns=[Turn(0, [{"role": "user", "content": "write it"}], msg)],
                   exit_status=ExitStatus.SUBMITTED, answer=truth)
    if submission is not None:
        t.metadata["submission"] = submission
    return t


def test_outputs_match_modes():
    assert outputs_match("3  \n", "3")
    assert not outputs_match("3\n4", "3")
    assert outputs_match("Total:   7\n\n", "total: 7", "normalised")
    assert outputs_match("x = 0.3333334", "x = 0.3333333", "numeric", rel_tol=1e-5)
    assert not outputs_match("y = 0.3333334", "x = 0.3333333", "numeric", rel_tol=1e-5)
    assert not outputs_match("1 2 3 4", "4", "numeric")  # listing candidates does not pass
    assert program_of("here:\n```python\nprint(1)\n```\n") == "print(1)\n"


@pytest.mark.docker
def test_program_cases_and_registry(docker_client):
    cases = [{"stdin": "1 2 3", "expected": "6"}, {"stdin": "10 -4", "expected": "6"}, {"stdin": "5", "expected": "5"}]
    scorer = make_scorer("exec", cases=cases, timeout=20)
    good = traj(f"```python\n{SUM}```", tid="good")
    hard_coded = traj("print(6)", tid="hard")
    crash = traj("raise SystemExit(3)", tid="crash")
    sleepy = traj("import time; time.sleep(30)", tid="slow")
    scorer.options["timeout"] = 3
    rows = {s.trajectory_id: s for s in scorer.score([good, hard_coded, crash, sleepy], CTX)}
    assert rows["good"].value == 1.0 and rows["good"].level == ScoreLevel.TRAJECTORY
    assert rows["hard"].value == pytest.approx(2 / 3)  # hard-coded output fails the third case
    assert rows["crash"].value == 0.0 and rows["crash"].details["cases"][0]["exit_code"] == 3
    assert rows["slow"].value == 0.0 and rows["slow"].details["cases"][0]["timed_out"]


@pytest.mark.docker
def test_command_and_patch_sources_with_task_spec(docker_client):
    task = Task("t1", "fix it", setup=["printf 'print(41)\\n' > /workspace/app.py"],
                verifier={"kind": "exec", "source": "patch", "command": "python3 app.py", "expected": "42"})
    patch = ("--- a/app.py\n+++ b/app.py\n@@ -1 +1 @@\n-print(41)\n+print(42)\n")
    scorer = ExecVerifier(tasks=[task])
    fixed, broken = traj(submission=patch, tid="fixed", task_id="t1"), traj(submission="garbage", tid="broken", task_id="t1")
    rows = {s.trajectory_id: s for s in scorer.score([fixed, broken], CTX)}
    assert rows["fixed"].value == 1.0, rows["fixed"].details
    assert rows["broken"].value == 0.0 and "patch" in rows["broken"].details["reason"]
    cmd = ExecVerifier(source="command", compare="numeric").score([traj("echo $((6*7)).0", truth="42")], CTX)
    assert cmd[0].value == 1.0


@pytest.mark.docker
def test_infrastructure_failure_is_none(docker_client):
    scorer = ExecVerifier(image="agentrm/does-not-exist:never", expected="1")
    (row,) = scorer.score([traj("print(1)")], CTX)
    assert row.value is None and row.details["failure"] == "infrastructure"


def test_abstain_and_nothing_to_run():
    scorer = ExecVerifier()
    assert scorer.score([traj("print(1)")], CTX)[0].value is None  # no expected output: abstain
    assert ExecVerifier(expected="1").score([traj(None)], CTX)[0].value == 0.0  # no program: the model's 0


def test_without_a_sandbox_factory_the_verifier_abstains():
    (row,) = ExecVerifier(expected="1").score([traj("print(1)")], ScoringContext())
    assert row.value is None and row.details["failure"] == "infrastructure"
