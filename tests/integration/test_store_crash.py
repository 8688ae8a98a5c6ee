"""Crash safety: a writer SIGKILLed mid-run leaves every completed turn and a consistent
database; a rerun resumes without duplicating turns. Several writer processes share one SQLite
file. Real processes, real databases."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import textwrap
import time

import pytest

from agentrm.traces import open_store
from agentrm.types import ExitStatus

WRITER = textwrap.dedent("""
    import sys, time
    from agentrm.traces import open_store
    from agentrm.types import Trajectory, Turn, ExitStatus, Score
    url, traj_id, n, delay = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
    store = open_store(url)
    store.begin_run({"writer": True}, run_id="run")
    if traj_id in store.finished_trajectory_ids("run"):
        sys.exit(0)
    store.begin_trajectory(Trajectory(id=traj_id, task_id="task", group_id="g", run_id="run"))
    start = len(store.get_trajectory(traj_id).turns)
    # resume: redo the last completed turn too, to prove rewrites do not duplicate
    for i in range(max(0, start - 1), n):
        obs = [{"role": "user", "content": "observation %d " % i + "x" * 2000}]
        store.append_turn(traj_id, Turn(index=i, observation=obs,
                                        assistant={"role": "assistant", "content": "step %d" % i}))
        store.write_scores([Score("prm", traj_id, i / n, turn_index=i)])
        print("committed", i, flush=True)
        time.sleep(delay)
    store.end_trajectory(traj_id, ExitStatus.SUBMITTED, reward=1.0)
    print("done", flush=True)
""")


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def url(request, tmp_path):
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'crash.db'}"
        return
    yield request.getfixturevalue("fresh_postgres_url")


def _writer(tmp_path, *args) -> subprocess.Popen:
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    return subprocess.Popen([sys.executable, str(script), *map(str, args)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _check_consistent(url: str) -> None:
    if url.startswith("sqlite"):
        path = url.split("sqlite:///", 1)[1]
        conn = sqlite3.connect(path)
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
        conn.close()


def test_sigkill_mid_run_keeps_completed_turns_and_resumes(url, tmp_path):
    n = 30
    proc = _writer(tmp_path, url, "traj-1", n, 0.02)
    committed = []
    deadline = time.monotonic() + 120
    while len(committed) < 8 and time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        committed.append(int(line.split()[1]))
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert len(committed) >= 8, proc.stderr.read()

    _check_consistent(url)
    with open_store(url) as store:
        killed = store.get_trajectory("traj-1")
        indices = [t.index for t in killed.turns]
        assert set(committed) <= set(indices)  # every reported commit survived the kill
        assert indices == list(range(len(indices)))  # no gaps, no duplicates
        assert killed.exit_status is ExitStatus.RUNNING
        assert store.summaries()[0]["n_turns"] == len(indices)

    rerun = _writer(tmp_path, url, "traj-1", n, 0)
    out, err = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, err
    assert out.strip().endswith("done")
    _check_consistent(url)
    with open_store(url) as store:
        done = store.get_trajectory("traj-1")
        assert [t.index for t in done.turns] == list(range(n))
        assert done.exit_status is ExitStatus.SUBMITTED
        assert sorted(s.turn_index for s in store.get_scores()) == list(range(n))
        assert store.summaries()[0]["n_turns"] == n
    again = _writer(tmp_path, url, "traj-1", n, 0)  # finished: the rerun skips it
    assert again.wait(timeout=120) == 0


def test_several_writer_processes_share_one_sqlite_file(tmp_path):
    url = f"sqlite:///{tmp_path / 'shared.db'}"  # not created yet: the writers race to migrate
    n, writers = 25, 4
    procs = [_writer(tmp_path, url, f"w{k}", n, 0) for k in range(writers)]
    for proc in procs:
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
        assert out.count("committed") == n
    _check_consistent(url)
    with open_store(url) as store:
        rows = store.summaries(run_id="run")
        assert sorted(r["id"] for r in rows) == [f"w{k}" for k in range(writers)]
        assert all(r["n_turns"] == n and r["exit_status"] == "submitted" for r in rows)
        assert len(store.get_scores()) == n * writers
    conn = sqlite3.connect(tmp_path / "shared.db")
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("SELECT count(*) FROM turns").fetchone()[0] == n * writers
    conn.close()


@pytest.mark.postgres
def test_several_writer_processes_race_to_migrate_postgres(fresh_postgres_url, tmp_path):
    n, writers, url = 10, 3, fresh_postgres_url  # an empty database: every writer tries to migrate
    procs = [_writer(tmp_path, url, f"w{k}", n, 0) for k in range(writers)]
    for proc in procs:
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
    with open_store(url) as store:
        rows = store.summaries(run_id="run")
        assert sorted(r["n_turns"] for r in rows) == [n] * writers
