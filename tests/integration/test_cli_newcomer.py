"""What a newcomer hit (issue 20), tried again through the real CLI on a real SQLite store:
each test is one defect that reproduced after the first round of fixes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit"))
from test_replay_view import load_demo  # noqa: E402

from agentrm.traces import open_store  # noqa: E402

BRACKETED = "runs[v2]/task[bold]x/0"


def agentrm(*args: str, columns: int = 80, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "agentrm.cli.main", *args], capture_output=True,
                          text=True, timeout=120, cwd=cwd,
                          env={**os.environ, "COLUMNS": str(columns), "AGENTRM_DB": ""})


def store_with(url: str, trajectory_id: str, task_id: str, run_id: str) -> str:
    """The golden demo trajectory (4 turns, scripted policy) stored under the given ids."""
    traj = load_demo()
    traj.id, traj.task_id = trajectory_id, task_id
    with open_store(url) as store:
        traj.run_id = store.begin_run({}, run_id=run_id)
        store.begin_trajectory(traj)
        for turn in traj.turns:
            store.append_turn(traj.id, turn)
        store.end_trajectory(traj.id, traj.exit_status, traj.reward)
    return url


def test_replay_header_prints_bracketed_ids_as_written(tmp_path):
    url = store_with(f"sqlite:///{tmp_path / 'b.db'}", BRACKETED, "task[bold]x", "runs[v2]")
    proc = agentrm("replay", BRACKETED, "--db", url)
    assert proc.returncode == 0, proc.stderr
    header = proc.stdout.split("turn 1/4")[0]
    assert BRACKETED in header, header  # was 'runs/taskx/0': rich ate [v2] and [bold]
    assert "task[bold]x" in header


def test_import_of_a_missing_file_creates_no_store(tmp_path):
    """A typo in the file name used to leave an empty database behind (the store was made
    before the file was opened)."""
    db = tmp_path / "fresh.db"
    for name, says in (("runs[v2].jsonl", "runs[v2].jsonl: no such file"),
                       (".", "is a directory")):
        proc = agentrm("traces", "import", str(tmp_path / name), "--db", f"sqlite:///{db}")
        assert proc.returncode == 2 and says in proc.stderr, proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1
        assert not db.exists()


def test_gold_and_empty_predictions_replay_as_their_patch(tmp_path):
    """A SWE-bench prediction is stored with no turns; replay used to refuse it ('no turns to
    replay'). It now shows the patch and the harness's verdict; rerun/export say why not."""
    from agentrm.types import ExitStatus, Trajectory

    url = f"sqlite:///{tmp_path / 'swe.db'}"
    patch = "diff --git a/m.py b/m.py\n--- a/m.py\n+++ b/m.py\n@@ -1 +1 @@\n-x = [1]\n+x = [2]\n"
    with open_store(url) as store:
        for run, diff, status, reward in (("gold", patch, "resolved", 1.0), ("empty", "", "empty_patch", 0.0)):
            store.begin_run({}, run_id=run)
            store.begin_trajectory(Trajectory(id=f"{run}/inst-1", task_id="inst-1", group_id="inst-1",
                                              run_id=run, policy=run,
                                              metadata={"model_patch": diff, "swebench": {"status": status}}))
            store.end_trajectory(f"{run}/inst-1", ExitStatus.IMPORTED, reward)
        store.begin_run({}, run_id="bare")
        store.begin_trajectory(Trajectory(id="bare/x", task_id="x", group_id="x", run_id="bare"))
        store.end_trajectory("bare/x", ExitStatus.IMPORTED, None)
    gold = agentrm("replay", "gold/inst-1", "--db", url)
    assert gold.returncode == 0, gold.stderr
    assert "patch · resolved" in gold.stdout and "+x = [2]" in gold.stdout and "-x = [1]" in gold.stdout
    empty = agentrm("replay", "empty/inst-1", "--db", url)
    assert empty.returncode == 0 and "patch · empty_patch" in empty.stdout and "(empty patch)" in empty.stdout
    as_json = agentrm("replay", "gold/inst-1", "--db", url, "--json")
    assert json.loads(as_json.stdout)["patch"] == patch
    for flags in (["--rerun"], ["--export-html", str(tmp_path / "p.html")]):
        refused = agentrm("replay", "gold/inst-1", "--db", url, *flags)
        assert refused.returncode == 2 and "no turns" in refused.stderr, refused.stderr
        assert len(refused.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "p.html").exists()
    bare = agentrm("replay", "bare/x", "--db", url)  # nothing to show at all: still an error
    assert bare.returncode == 2 and "has no turns to replay" in bare.stderr


def test_help_at_80_columns_shows_every_spelling_of_a_flag():
    """typer joined a flag's names into one unbreakable word, cut to `--dataset,--dataset_na…`."""
    for command, spellings in ((["eval", "swe-bench"], ["--dataset_name", "--predictions_path",
                                                         "--instance-ids", "--max_workers"]),
                               (["advantages"], ["--turn-reward-from", "--reward-from"])):
        proc = agentrm(*command, "--help")
        assert proc.returncode == 0, proc.stderr
        for name in spellings:
            assert name in proc.stdout, (name, proc.stdout)
        options = proc.stdout.split("Options")[1]
        assert not any(word.startswith("--") and word.endswith("…") for word in options.split())


def test_an_id_that_names_a_group_or_run_says_which_trajectories_it_holds(tmp_path):
    """People type the group `RUN/TASK` for the trajectory `RUN/TASK/0`; the error names them."""
    from agentrm.types import ExitStatus, Trajectory

    url = f"sqlite:///{tmp_path / 'g.db'}"
    with open_store(url) as store:
        store.begin_run({}, run_id="r")
        for k in range(5):
            store.begin_trajectory(Trajectory(id=f"r/t-1/{k}", task_id="t-1", group_id="r/t-1", run_id="r"))
            store.end_trajectory(f"r/t-1/{k}", ExitStatus.TURN_LIMIT, 0.0)
    for command in (["replay"], ["traces", "show"]):
        proc = agentrm(*command, "r/t-1", "--db", url)
        assert proc.returncode == 4, proc.stderr
        assert "it is a group, whose trajectories are r/t-1/0, r/t-1/1, r/t-1/2, …" in proc.stderr
        assert "agentrm traces list --group r/t-1" in proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1
    run = agentrm("replay", "r", "--db", url)
    assert run.returncode == 4 and "it is a run" in run.stderr
    unknown = agentrm("replay", "nothing-like-it", "--db", url)
    assert unknown.returncode == 4 and unknown.stderr.strip() == "error: unknown trajectory 'nothing-like-it'"
