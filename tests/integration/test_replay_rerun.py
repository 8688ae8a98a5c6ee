"""`agentrm replay` on trajectories recorded by the runtime in real Docker sandboxes:
re-execution (deterministic → exit 0, non-deterministic → divergence at the right turn),
playback and exports of the same recorded runs."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from asciinema.asciicast import v2

pytestmark = pytest.mark.docker
DATA = Path(__file__).resolve().parents[1] / "data" / "replay"

DETERMINISTIC = [  # volatile but normalised: temp paths, clock times, durations, ls -l dates
    {"tool": "bash", "args": {"command": "cat /workspace/seed.txt; touch -d '2020-01-02 03:04' "
                                         "/workspace/old; ls -la /workspace"}},
    {"tool": "bash", "args": {"command": "mktemp; date +%H:%M:%S; echo took 0.2s"}},
    {"tool": "edit_file", "args": {"path": "seed.txt", "old_str": "seed", "new_str": "SEED"}},
    {"tool": "view_file", "args": {"path": "/workspace/seed.txt"}},
    {"tool": "submit", "args": {"answer": "SEED-123"}},
]
RANDOM = [
    {"tool": "bash", "args": {"command": "cat /workspace/seed.txt"}},
    {"tool": "bash", "args": {"command": "echo stable; ls /workspace"}},
    {"tool": "bash", "args": {"command": "head -c 12 /dev/urandom | od -An -tx1"}},
    {"tool": "bash", "args": {"command": "echo never reached"}},
    {"tool": "submit", "args": {"answer": "x"}},
]


def agentrm(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "agentrm.cli.main", *args], capture_output=True,
                          text=True, timeout=180)


def record(url: str, tmp_path: Path, name: str, actions: list[dict]) -> str:
    """`agentrm run` the scripted actions on a one-task file; returns the trajectory id."""
    script, tasks = tmp_path / f"{name}.actions.jsonl", tmp_path / f"{name}.tasks.jsonl"
    script.write_text("".join(json.dumps(a) + "\n" for a in actions))
    tasks.write_text(json.dumps({"id": name, "instruction": f"replay test {name}",
                                 "setup": ["echo seed-123 > /workspace/seed.txt"]}) + "\n")
    proc = agentrm("run", "--tasks", str(tasks), "--policy", f"scripted:{script}", "--db", url,
                   "--run-id", f"run-{name}", "--json")
    assert proc.returncode == 0, proc.stderr
    (traj,) = json.loads(proc.stdout)["trajectories"]
    assert traj["exit_status"] == "submitted", traj
    return traj["id"]


@pytest.fixture(scope="module")
def recorded(docker_client, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("rerun")
    url = f"sqlite:///{tmp / 'store.db'}"
    ids = {"det": record(url, tmp, "replay-det", DETERMINISTIC),
           "rand": record(url, tmp, "replay-rand", RANDOM)}
    return url, ids


def test_deterministic_trajectory_reruns_without_divergence(recorded):
    url, ids = recorded
    proc = agentrm("replay", ids["det"], "--db", url, "--rerun", "--json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["diverged"] is False and report["divergence"] is None
    assert report["turns_replayed"] == 5 and report["calls_compared"] == 5
    assert report["setup_commands"] == 1  # the task's setup ran before the actions


def test_random_output_diverges_at_the_turn_that_reads_urandom(recorded):
    url, ids = recorded
    proc = agentrm("replay", ids["rand"], "--db", url, "--rerun")
    assert proc.returncode == 1, (proc.stdout, proc.stderr)
    assert "DIVERGED at turn 2" in proc.stdout and "/dev/urandom" in proc.stdout
    assert "--- recorded" in proc.stdout and "+++ rerun" in proc.stdout
    report = json.loads(agentrm("replay", ids["rand"], "--db", url, "--rerun", "--json").stdout)
    d = report["divergence"]
    assert d["turn_index"] == 2 and d["tool"] == "bash"
    assert report["turns_replayed"] == 3  # stopped at the divergence: turn 3 never ran
    hexdump = re.compile(r"^(\s*[0-9a-f]{2}){12}\s*$")
    assert hexdump.match(d["recorded"]) and hexdump.match(d["observed"])


def test_recorded_run_plays_back_and_exports(recorded, tmp_path):
    url, ids = recorded
    proc = agentrm("replay", ids["rand"], "--db", url, "--no-interactive")
    assert proc.returncode == 0, proc.stderr
    assert "turn 5/5" in proc.stdout and "seed-123" in proc.stdout
    cast, page = tmp_path / "run.cast", tmp_path / "run.html"
    proc = agentrm("replay", ids["det"], "--db", url, "--export-cast", str(cast),
                   "--export-html", str(page))
    assert proc.returncode == 0, proc.stderr
    with open(cast, encoding="utf-8") as f, v2.open_from_file(f.readline(), f) as parsed:
        events = list(parsed.events())
    assert sum(e[1] == "m" for e in events) == 5
    # The sandbox recorded the command's output chunk with its time: it is replayed as is.
    assert any(e[1] == "o" and e[2] == "seed-123\r\n" for e in events)
    html = page.read_text()
    assert all(f'id="turn-{i}"' in html for i in range(5)) and "SEED-123" in html


def test_imported_file_reruns_in_the_base_image():
    proc = agentrm("replay", str(DATA / "imported.jsonl"), "--rerun", "--json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["diverged"] is False and report["calls_compared"] == 3
    assert any("base image" in n for n in report["notes"])


def test_a_rerun_that_compared_nothing_is_not_a_pass(tmp_path):
    """Tool calls without recorded results: nothing to check the rerun against (exit 3)."""
    traj = {"id": "blind-1", "task_id": "blind", "group_id": "g", "reward": None, "messages": [
        {"role": "user", "content": "List the files."},
        {"role": "assistant", "content": "", "tool_calls": [{"id": "c1", "type": "function", "function": {
            "name": "bash", "arguments": json.dumps({"command": "ls -la /workspace"})}}]}]}
    path = tmp_path / "blind.jsonl"
    path.write_text(json.dumps(traj) + "\n")
    proc = agentrm("replay", str(path), "--rerun", "--json")
    assert proc.returncode == 3, (proc.stdout, proc.stderr)
    report = json.loads(proc.stdout)
    assert report["calls_compared"] == 0 and report["compared_nothing"] and not report["diverged"]
    text = agentrm("replay", str(path), "--rerun")
    assert text.returncode == 3 and "nothing compared" in text.stdout


def test_missing_image_is_one_clear_error(docker_client):
    proc = agentrm("replay", str(DATA / "imported.jsonl"), "--rerun",
                   "--image", "agentrm-test/no-such-image:missing")
    assert proc.returncode in (2, 5), (proc.stdout, proc.stderr)  # bad --image or engine error
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "no-such-image" in errors[0] and "Traceback" not in proc.stderr
