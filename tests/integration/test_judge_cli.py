"""The sandbox scorers end to end from the command line: `agentrm score -s exec|judge|progress`
writes their rows to the trace store (real Docker, real SQLite store)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

pytestmark = pytest.mark.docker

TRAJ = {"id": "cli-1", "task_id": "sum", "group_id": "g", "answer": "6", "reward": 1.0, "messages": [
    {"role": "user", "content": "Write a program that prints the sum of the numbers on stdin."},
    {"role": "assistant", "content": "", "tool_calls": [{"id": "c1", "type": "function", "function": {
        "name": "bash", "arguments": json.dumps({"command": "echo 6 > /workspace/out"})}}]},
    {"role": "tool", "tool_call_id": "c1", "content": ""},
    {"role": "assistant", "content": "", "tool_calls": [{"id": "c2", "type": "function", "function": {
        "name": "submit", "arguments": json.dumps({"answer": "import sys\nprint(sum(map(int, sys.stdin.read().split())))"})}}]},
]}
TASKS = """tasks:
  - id: sum
    instruction: Write a program that prints the sum of the numbers on stdin.
    answer: "6"
    verifier: {kind: answer, mode: exact}
    metadata:
      exec_verifier: {cases: [{stdin: "1 2 3", expected: "6"}, {stdin: "4 5", expected: "9"}]}
"""


def agentrm(*args, cwd):
    return subprocess.run([sys.executable, "-m", "agentrm.cli.main", *args], capture_output=True, text=True,
                          timeout=600, cwd=cwd)


@pytest.fixture
def workdir(tmp_path):
    (tmp_path / "trajs.jsonl").write_text(json.dumps(TRAJ) + "\n")
    (tmp_path / "tasks.yaml").write_text(TASKS)
    (tmp_path / "judge.jsonl").write_text(json.dumps({"tool": "bash", "args": {"command": "cat /workspace/answer.txt"}})
                                          + "\n" + json.dumps({"tool": "submit", "args": {"answer": "PASS"}}) + "\n")
    # a scripted policy acts by position (its k-th action after k assistant messages), so the
    # prover needs an action for every boundary it continues from: h_0 and h_1 here
    (tmp_path / "prover.jsonl").write_text((json.dumps({"tool": "submit", "args": {"answer": "6"}}) + "\n") * 2)
    return tmp_path


def stored(db):
    from agentrm.traces import open_store

    return {(s.scorer, s.turn_index): s for s in open_store(db).get_scores(trajectory_ids=["cli-1"])}


def test_sandbox_scorers_from_the_cli(docker_client, workdir):
    db = f"sqlite:///{workdir / 'cli.db'}"
    r = agentrm("score", "trajs.jsonl", "--db", db, "-s", "exec", "-o", "tasks=tasks.yaml", cwd=workdir)
    assert r.returncode == 0, r.stderr
    r = agentrm("score", "trajs.jsonl", "--db", db, "-s", "judge", "-o", "policy=scripted:judge.jsonl",
                cwd=workdir)  # the judge's trajectory goes to the store of --db (ScoringContext)
    assert r.returncode == 0, r.stderr
    # the prover continues from each boundary and submits "6" (success): progress 0 on both turns
    r = agentrm("score", "trajs.jsonl", "--db", db, "-s", "progress", "-o", "prover=scripted:prover.jsonl",
                "-o", "tasks=tasks.yaml", "-o", "branches=1", "-o", f"cache={workdir / 'pc.json'}", cwd=workdir)
    assert r.returncode == 0, r.stderr
    rows = stored(db)
    assert rows[("exec", None)].value == 1.0 and len(rows[("exec", None)].details["cases"]) == 2
    assert rows[("judge", None)].value == 1.0 and rows[("judge", None)].details["judge_trajectory_id"]
    assert rows[("progress", 0)].value == 0.0 and rows[("progress", 1)].value == 0.0
