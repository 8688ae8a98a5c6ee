"""One live driver per run id: a second `agentrm run` on a run id another process is driving
refuses with one line (exit 6) instead of running everything again and splicing turns from two
sandboxes into one trajectory; with `--wait` it waits and then resumes (nothing left to run).
A lease whose holder died (kill -9) is taken over at once; a stalled one after its ttl."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from agentrm.rollout.lease import hold_run, holder_is_dead
from agentrm.traces import open_store

pytestmark = pytest.mark.timeout(600)


@pytest.fixture(params=["sqlite", "postgres"])
def url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'lease.db'}"
    return request.getfixturevalue("fresh_postgres_url")


def test_a_live_lease_refuses_a_stale_or_dead_one_is_taken(url):
    store = open_store(url)
    store.begin_run({}, run_id="r1")
    assert store.take_lease("r1", "host:1:a", 30.0) is None
    busy = store.take_lease("r1", "host:2:b", 30.0)
    assert busy is not None and busy["holder"] == "host:1:a"
    assert store.renew_lease("r1", "host:1:a") and not store.renew_lease("r1", "host:2:b")
    # the holder is dead: taken at once, and the old holder learns it lost the lease
    assert store.take_lease("r1", "host:2:b", 30.0, lambda h: h == "host:1:a") is None
    assert not store.renew_lease("r1", "host:1:a")
    # a heartbeat older than the ttl: taken over
    assert store.take_lease("r1", "host:3:c", 0.01, lambda h: False) is not None
    time.sleep(0.05)
    store.take_lease("r1", "host:2:b", 0.01)  # re-entrant for its holder; shortens the ttl
    time.sleep(0.05)
    assert store.take_lease("r1", "host:3:c", 30.0) is None
    store.release_lease("r1", "host:3:c")
    assert store.take_lease("r1", "host:4:d", 30.0) is None


def test_holder_of_an_exited_process_is_dead():
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    import socket

    assert holder_is_dead(f"{socket.gethostname()}:{proc.stdout.strip()}:x")
    assert not holder_is_dead(f"{socket.gethostname()}:1:x")  # pid 1 exists
    assert not holder_is_dead("another-host:123:x")  # unknown: assumed alive


def test_holder_killed_but_not_yet_reaped_is_dead():
    """After `kill -9` the driver is a zombie until its parent reaps it; a rerun right away
    must not be refused for the zombie's sake (it happened when the parent was an init that
    reaps late)."""
    import signal
    import socket

    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        holder = f"{socket.gethostname()}:{proc.pid}:x"
        assert not holder_is_dead(holder)
        os.kill(proc.pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while Path(f"/proc/{proc.pid}/stat").read_text().rpartition(")")[2].split()[0] != "Z":
            assert time.monotonic() < deadline
            time.sleep(0.01)
        assert holder_is_dead(holder)  # not reaped: Popen.wait has not been called
    finally:
        proc.kill()
        proc.wait()


def test_losing_the_lease_is_reported(tmp_path):
    import threading

    store = open_store(f"sqlite:///{tmp_path / 'lost.db'}")
    store.begin_run({}, run_id="r2")
    lost = threading.Event()
    with hold_run(store, "r2", ttl_s=0.3, lost=lost):
        assert store.take_lease("r2", "thief:1:x", 30.0, lambda h: h != "thief:1:x") is None
        assert lost.wait(5)


def test_a_refused_driver_leaves_the_live_drivers_snapshots_alone(tmp_path, monkeypatch):
    """Group snapshots are pruned when a run ends; a second driver refused on a busy run id
    must not prune them: the live driver's forks may not have started from them yet."""
    import socket

    from agentrm.errors import RunBusy
    from agentrm.rollout import run as driver
    from agentrm.testing import DirSandbox
    from agentrm.types import Task

    store = open_store(f"sqlite:///{tmp_path / 'busy.db'}")
    store.begin_run({}, run_id="busy")
    live = f"{socket.gethostname()}:{os.getpid()}:live"  # this very process: alive
    assert store.take_lease("busy", live, 30.0) is None
    script = tmp_path / "submit.jsonl"
    script.write_text(json.dumps({"tool": "submit", "args": {"answer": "x"}}) + "\n")
    pruned = []
    monkeypatch.setattr(driver, "_prune_snapshots", pruned.append)
    with pytest.raises(RunBusy):
        driver.run([Task(id="t", instruction="x")], f"scripted:{script}", store, group_size=2,
                   run_id="busy", sandbox_factory=lambda c: DirSandbox(tmp_path / "ws"))
    assert pruned == []
    store.release_lease("busy", live)
    driver.run([Task(id="t", instruction="x")], f"scripted:{script}", store, group_size=2,
               run_id="busy", sandbox_factory=lambda c: DirSandbox(tmp_path / "ws"))
    assert pruned == ["busy"]  # the holder prunes when it ends


def agentrm(*args: str, **kw) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "agentrm.cli.main", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kw)


@pytest.mark.docker
def test_a_second_run_on_the_same_run_id_refuses_then_waits(docker_client, tmp_path: Path):
    url = f"sqlite:///{tmp_path / 'store.db'}"
    script, tasks = tmp_path / "a.jsonl", tmp_path / "t.jsonl"
    script.write_text("".join(json.dumps(a) + "\n" for a in [
        {"tool": "bash", "args": {"command": "sleep 6; echo slept"}},
        {"tool": "submit", "args": {"answer": "x"}}]))
    tasks.write_text(json.dumps({"id": "lease-task", "instruction": "wait"}) + "\n")
    args = ["run", "--tasks", str(tasks), "--policy", f"scripted:{script}", "--db", url,
            "--run-id", "shared", "--group-size", "2", "--json"]
    first = agentrm(*args)
    store = open_store(url)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and first.poll() is None:
        running = [t for t in store.iter_trajectories(run_id="shared") if t.turns or t.exit_status.value == "running"]
        if running:
            break
        time.sleep(0.2)
    assert first.poll() is None, first.communicate()
    second = agentrm(*args)
    out, err = second.communicate(timeout=120)
    assert second.returncode == 6, (out, err)
    assert "being driven by another process" in err and len(err.strip().splitlines()) == 1, err
    waiting = agentrm(*args, "--wait")
    out1, err1 = first.communicate(timeout=300)
    assert first.returncode == 0, err1
    out3, err3 = waiting.communicate(timeout=300)
    assert waiting.returncode == 0, err3
    assert len(json.loads(out3)["skipped"]) == 2  # it waited, then found nothing left to run
    trajs = list(store.iter_trajectories(run_id="shared"))
    assert len(trajs) == 2
    for t in trajs:  # one driver's turns only: the two actions, once each
        assert [turn.index for turn in t.turns] == [0, 1] and t.exit_status.value == "submitted"
