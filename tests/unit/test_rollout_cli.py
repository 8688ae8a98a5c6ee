"""`agentrm run` bad input: one line naming what to fix, exit 2, no store written."""

from __future__ import annotations

import subprocess
import sys

import pytest


def run_cli(*args, cwd):
    return subprocess.run([sys.executable, "-c", "from agentrm.cli.main import main; main()", "run", *args],
                          capture_output=True, text=True, cwd=cwd, timeout=120)


@pytest.mark.parametrize("args,message", [
    (["--tasks", "nope.yaml"], "nope.yaml: no such task file"),
    (["--policy", "gpt-4"], "policy spec 'gpt-4'"),
    (["--task", "no-such-task"], "--task: no task no-such-task"),
    (["--policy", "scripted:missing.jsonl"], "missing.jsonl: no such action file"),
    (["--policy", "transformers:x?temprature=1"], "unexpected keyword argument 'temprature'"),
])
def test_bad_input_is_one_line_exit_2_and_nothing_written(tmp_path, args, message):
    proc = run_cli(*args, "--db", f"sqlite:///{tmp_path}/t.db", cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and message in proc.stderr.replace("\n", " ")
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "t.db").exists()
