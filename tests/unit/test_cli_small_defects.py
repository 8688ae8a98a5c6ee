"""The small defects a new user hit (issue 20), each pinned by a test: exports of unknown runs,
exports into a closed pipe, read-only commands creating ./agentrm.db, rich markup eating
bracketed text, the exec scorer running a number, and docs citing files users do not have."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from rich.console import Console

from agentrm.traces import open_store
from agentrm.types import ExitStatus, Task, Trajectory, Turn

REPO = Path(__file__).resolve().parents[2]
DATA = REPO / "tests" / "data" / "traces"


@pytest.fixture
def store_url(tmp_path, cli):
    url = f"sqlite:///{tmp_path / 'store.db'}"
    assert cli("traces", "import", str(DATA / "good.jsonl"), "--db", url, "--run-id", "r1").returncode == 0
    return url


def test_export_of_an_unknown_run_is_one_line_and_writes_no_file(cli, store_url, tmp_path):
    out = tmp_path / "out.jsonl"
    result = cli("traces", "export", "--run", "nope", "-o", str(out), "--db", store_url)
    assert result.returncode == 4
    assert result.stderr.strip() == "error: unknown run 'nope'"
    assert not out.exists() and list(tmp_path.glob(".out.jsonl.*")) == []
    # a known run still exports, and a failed write leaves nothing behind either
    assert cli("traces", "export", "--run", "r1", "-o", str(out), "--db", store_url).returncode == 0
    assert out.read_text().count("\n") == len((DATA / "good.jsonl").read_text().splitlines())
    bad = tmp_path / "missing-dir" / "x.jsonl"
    result = cli("traces", "export", "-o", str(bad), "--db", store_url)
    assert result.returncode == 2 and "cannot write" in result.stderr and not bad.parent.exists()


def test_export_into_a_closed_pipe_ends_quietly(tmp_path):
    url = f"sqlite:///{tmp_path / 'big.db'}"
    store = open_store(url)
    turn = Turn(0, [{"role": "user", "content": "x" * 2000}], {"role": "assistant", "content": "ok"})
    store.import_trajectories([Trajectory(f"t{i}", "task", "g", [turn], exit_status=ExitStatus.SUBMITTED)
                               for i in range(400)], run_id="big")  # ~800 kB: more than a pipe holds
    store.close()
    # `agentrm traces export | head -c 100`: the reader takes a little and goes away
    proc = subprocess.Popen([sys.executable, "-m", "agentrm.cli.main", "traces", "export", "--db", url],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert len(proc.stdout.read(100)) == 100
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 141  # 128 + SIGPIPE, like `cat` in the same pipeline
    assert err == ""


@pytest.mark.parametrize("args", [("traces", "list"), ("traces", "show", "x"), ("traces", "runs"),
                                  ("traces", "export"), ("view",)])
def test_read_only_commands_do_not_create_a_store(cli, tmp_path, monkeypatch, args):
    monkeypatch.chdir(tmp_path)
    result = cli(*args)
    assert result.returncode == 2
    assert result.stderr.strip() == "error: no trace store at agentrm.db (pass --db URL or set AGENTRM_DB)"
    assert list(tmp_path.iterdir()) == []


def test_doctor_does_not_create_a_store_and_says_there_is_none_yet(tmp_path, monkeypatch):
    from agentrm.cli.doctor import check_database

    monkeypatch.chdir(tmp_path)
    check = check_database("sqlite:///agentrm.db")
    assert check.ok and "no store yet" in check.detail
    assert list(tmp_path.iterdir()) == []


def test_doctor_prints_bracketed_text_as_written():
    from agentrm.cli.doctor import _table, check_database

    check = check_database("postgresql+psycopg://agentrm:x@127.0.0.1:1/nowhere")  # nothing listens
    assert not check.ok
    console = Console(record=True, width=2000)
    console.print(_table([check]))
    assert "pip install 'agentrm[postgres]'" in console.export_text()


def test_paths_with_brackets_are_reported_as_written(cli, tmp_path):
    src = tmp_path / "runs[v2].jsonl"
    shutil.copy(DATA / "good.jsonl", src)
    url = f"sqlite:///{tmp_path / 'b.db'}"
    result = cli("traces", "import", str(src), "--db", url, "--run-id", "[bold]r[/]")
    assert result.returncode == 0, result.stderr
    shown = result.stdout.replace("\n", "")
    assert "runs[v2].jsonl" in shown and "[bold]r[/]" in result.stdout  # wraps may split lines
    out = tmp_path / "out[v2].jsonl"
    result = cli("traces", "export", "-o", str(out), "--db", url)
    assert "out[v2].jsonl" in result.stderr.replace("\n", "") and out.exists()


def _submitted(answer: str, truth: str | None = None, task_id: str = "sum") -> Trajectory:
    call = {"id": "c", "type": "function", "function": {"name": "submit", "arguments": {"answer": answer}}}
    return Trajectory("t", task_id, "g", [Turn(0, [{"role": "user", "content": "?"}],
                                               {"role": "assistant", "content": "", "tool_calls": [call]})],
                      exit_status=ExitStatus.SUBMITTED, answer=truth)


def _no_sandbox(*_a, **_k):
    raise AssertionError("a numeric answer must not be run")


def test_exec_scorer_does_not_run_a_number_and_says_why():
    from agentrm.verifiers.exec_verifier import ExecVerifier

    # a math task scored by exec by mistake: the scorer does not apply, and says so
    score = ExecVerifier(sandbox_factory=_no_sandbox).score_one(_submitted("42", truth="42"))
    assert score.value is None
    assert "is a value, not a program" in score.details["abstain"] and "answer scorer" in score.details["abstain"]
    # a task that asks for a program: a bare number is the agent's miss, 0 with the reason
    task = Task("sum", "write a program", verifier={"kind": "exec", "expected": "42"})
    score = ExecVerifier(tasks=[task], sandbox_factory=_no_sandbox).score_one(_submitted("42"))
    assert score.value == 0.0 and "is a number, not the program the task asks for" in score.details["reason"]


def test_exec_failures_carry_a_reason():
    from agentrm.verifiers.exec_verifier import failure_reason

    cases = [{"expected": "6"}, {"expected": "7"}, {"expected": "8"}]
    ok = {"passed": True, "exit_code": 0, "timed_out": False, "stdout": "6\n"}
    assert failure_reason([ok, {"passed": False, "exit_code": 0, "timed_out": False, "stdout": "41\n"}, ok],
                          cases) == "1/3 cases failed; case 2: expected '7', got '41'"
    assert failure_reason([{"passed": False, "exit_code": 3, "timed_out": False, "stdout": ""}] * 3,
                          cases) == "3/3 cases failed; case 1: exit code 3"
    assert failure_reason([ok, ok, {"passed": False, "exit_code": None, "timed_out": True, "stdout": ""}],
                          cases) == "1/3 cases failed; case 3: timed out"


def test_docs_cite_no_design_files_users_do_not_have():
    names = r"THREAT_MODEL|ALGORITHMS|FORMATS|REWARD_MODELS|EVAL_HARNESS_LESSONS|PAPERS|STYLE|CONTRACTS"
    pattern = re.compile(rf"\b({names})\.md\b|shared/design|notes/")
    found = [f"{path.relative_to(REPO)}:{n}: {line.strip()}"
             for path in [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
             for n, line in enumerate(path.read_text("utf-8").splitlines(), 1) if pattern.search(line)]
    assert found == []
