"""Lifecycle against the real engine: cleanup on exit/signals/crash, wall-clock expiry, pool
bounds, forks, and the `agentrm sandbox` CLI."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
import uuid

import pytest

from agentrm.errors import InputError, SandboxGone
from agentrm.sandboxes import (
    DockerSandbox,
    SandboxConfig,
    SandboxExpired,
    SandboxPool,
    base_image,
    cleanup,
    fork,
)

pytestmark = [pytest.mark.docker, pytest.mark.timeout(300)]


@pytest.fixture(scope="module")
def image(docker_client):
    return base_image()


def _containers(docker_client, run_id: str) -> list:
    return docker_client.containers.list(all=True, filters={"label": f"agentrm.run_id={run_id}"})


CHILD = textwrap.dedent("""
    import sys, time
    from agentrm.sandboxes import DockerSandbox, SandboxConfig
    box = DockerSandbox(SandboxConfig(run_id=sys.argv[1]))
    box.exec("echo started")
    print("ready", flush=True)
    time.sleep(120)
""")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signals_remove_the_sandbox(image, docker_client, sig):
    run_id = f"sig-{uuid.uuid4().hex[:8]}"
    proc = subprocess.Popen([sys.executable, "-c", CHILD, run_id], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "ready"
        assert len(_containers(docker_client, run_id)) == 1
        proc.send_signal(sig)
        proc.wait(timeout=60)
    finally:
        proc.kill()
    deadline = time.monotonic() + 30  # a removal the engine has accepted may still be listed
    while _containers(docker_client, run_id) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert _containers(docker_client, run_id) == []


THREADED_CHILD = textwrap.dedent("""
    import sys, threading, time
    from concurrent.futures import ThreadPoolExecutor
    from agentrm.sandboxes import DockerSandbox, SandboxConfig
    started = threading.Barrier(3)
    def work(i):
        box = DockerSandbox(SandboxConfig(run_id=sys.argv[1]))
        box.exec("echo started")
        started.wait()
        box.exec("sleep 100", timeout=200)
        while True:  # a rollout would go on with new sandboxes
            DockerSandbox(SandboxConfig(run_id=sys.argv[1])).exec("sleep 100", timeout=200)
    pool = ThreadPoolExecutor(2)
    futures = [pool.submit(work, i) for i in range(2)]
    started.wait()
    print("ready", flush=True)
    time.sleep(120)
""")


def test_sigterm_removes_sandboxes_made_in_worker_threads(image, docker_client):
    run_id = f"sigthr-{uuid.uuid4().hex[:8]}"
    proc = subprocess.Popen([sys.executable, "-c", THREADED_CHILD, run_id],
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "ready"
        assert len(_containers(docker_client, run_id)) == 2
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=90)  # workers fail fast: the exit does not wait out their sleeps
    finally:
        proc.kill()
    deadline = time.monotonic() + 30
    while _containers(docker_client, run_id) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert _containers(docker_client, run_id) == []


def test_crashed_owner_leftovers_are_removed_by_cleanup(image, docker_client):
    run_id = f"crash-{uuid.uuid4().hex[:8]}"
    proc = subprocess.Popen([sys.executable, "-c", CHILD, run_id], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    proc.kill()  # SIGKILL: no handler runs
    proc.wait(timeout=30)
    assert len(_containers(docker_client, run_id)) == 1
    with DockerSandbox(SandboxConfig(run_id=run_id)) as mine:  # a live owner's box is kept
        removed = cleanup(run_id=run_id)
        assert len(removed) == 1 and mine.exec("echo alive").stdout == "alive\n"
    assert _containers(docker_client, run_id) == []


def test_exception_in_context_removes_the_container(image, docker_client):
    run_id = f"exc-{uuid.uuid4().hex[:8]}"
    with pytest.raises(RuntimeError):
        with DockerSandbox(SandboxConfig(run_id=run_id)):
            raise RuntimeError("boom")
    assert _containers(docker_client, run_id) == []


def test_wall_clock_limit_ends_the_sandbox(image, docker_client):
    box = DockerSandbox(SandboxConfig(wall_clock_s=3))
    try:
        r = box.exec("sleep 30", timeout=30)  # clamped to the remaining wall clock
        assert r.timed_out
        time.sleep(max(0.0, box.remaining_s()) + 1.5)
        with pytest.raises(SandboxExpired):
            box.exec("true")
        with pytest.raises(SandboxGone):
            box.exec(["true"])
    finally:
        box.close()


def test_container_removed_from_outside_raises_sandbox_gone(image, docker_client):
    box = DockerSandbox()
    try:
        box.exec("cd /tmp")
        docker_client.api.remove_container(box.id, force=True)
        start = time.monotonic()
        with pytest.raises(SandboxGone):
            box.exec("echo hi", timeout=30)
        with pytest.raises(SandboxGone):
            box.exec(["echo", "hi"], timeout=30)
        with pytest.raises(SandboxGone):
            box.snapshot()
        assert time.monotonic() - start < 20
    finally:
        box.close()


def test_interrupted_command_leaves_a_usable_sandbox(image):
    class Stop(Exception):
        pass

    def interrupt(fd, data):
        raise Stop  # like Ctrl-C arriving while output streams in

    with DockerSandbox() as box:
        box.exec("cd /tmp")
        with pytest.raises(Stop):
            box.exec("echo first; sleep 3; echo late", on_output=interrupt)
        r = box.exec("echo next; pwd")
        assert r.stdout == "next\n/tmp\n" and r.exit_code == 0, r


def test_bad_config_fails_before_any_container(image):
    for bad in (dict(memory="lots"), dict(cpus=0), dict(pids=1), dict(workdir="rel"),
                dict(env={"1BAD": "x"})):
        with pytest.raises(InputError):
            DockerSandbox(SandboxConfig(**bad))
    with pytest.raises(InputError):
        DockerSandbox(SandboxConfig(image="agentrm/no-such-image:nope"))
    with DockerSandbox() as box:
        with pytest.raises(InputError):
            box.exec("true", timeout=0)
        with pytest.raises(InputError):
            box.exec("echo a\x00b")


def test_limits_are_applied(image, docker_client):
    with DockerSandbox(SandboxConfig(cpus=0.5, memory="256m", pids=64, env={"TASK": "t1"})) as box:
        host = docker_client.api.inspect_container(box.id)["HostConfig"]
        assert host["NanoCpus"] == 500_000_000 and host["Memory"] == 256 << 20
        assert host["MemorySwap"] == 256 << 20 and host["PidsLimit"] == 64
        assert host["NetworkMode"] == "none" and "no-new-privileges" in host["SecurityOpt"]
        assert box.exec("echo $TASK; id -un").stdout == "t1\nagent\n"
    with DockerSandbox(SandboxConfig(network=True)) as box:
        assert "eth0" in box.exec("ls /sys/class/net").stdout


def test_pool_bounds_concurrency_and_fork_starts_n(image):
    live, peak, lock = [0], [0], threading.Lock()

    def job(box, i):
        with lock:
            live[0] += 1
            peak[0] = max(peak[0], live[0])
        try:
            return box.exec(f"echo {i}").stdout.strip()
        finally:
            time.sleep(0.3)
            with lock:
                live[0] -= 1

    with SandboxPool(max_workers=2) as pool:
        assert pool.map(job, range(5)) == [str(i) for i in range(5)]
    assert peak[0] == 2

    with DockerSandbox() as parent:
        parent.exec("cd /workspace && git init -q repo && echo v1 > repo/f")
        ref = parent.snapshot()
    kids = fork(ref, 3, SandboxConfig(memory="256m"))
    try:
        outs = {k.exec("cat /workspace/repo/f && git -C /workspace/repo status --short").stdout for k in kids}
        assert outs == {"v1\n?? f\n"} and len({k.id for k in kids}) == 3
    finally:
        for k in kids:
            k.close()


def _cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "agentrm.cli.main", *args], capture_output=True,
                          text=True, timeout=timeout, env={**os.environ, "COLUMNS": "200"})


def test_cli_run_streams_and_exits_with_the_command_code(image):
    r = _cli("sandbox", "run", "--", "echo out; echo err >&2; exit 3")
    assert (r.returncode, r.stdout, r.stderr.strip()) == (3, "out\n", "err")
    r = _cli("sandbox", "run", "--", "python3", "-c", "print('argv ok')")
    assert (r.returncode, r.stdout) == (0, "argv ok\n")
    r = _cli("sandbox", "run", "--timeout", "1", "--", "echo early; sleep 30")
    assert r.returncode == 124 and r.stdout == "early\n" and "timed out" in r.stderr
    r = _cli("sandbox", "run", "--memory", "lots", "--", "true")
    assert r.returncode == 2 and "memory" in r.stderr and "Traceback" not in r.stderr


def test_cli_images_cleanup_prune_json(image):
    r = _cli("sandbox", "images", "--json")
    rows = json.loads(r.stdout)
    assert r.returncode == 0 and any(row["tag"] == image and row["size"] > 0 for row in rows)
    r = _cli("sandbox", "cleanup", "--run-id", f"none-{uuid.uuid4().hex[:6]}", "--json")
    assert r.returncode == 0 and json.loads(r.stdout) == {"removed": []}
    r = _cli("sandbox", "build", "--json")
    assert r.returncode == 0 and json.loads(r.stdout) == {"image": image}
    run_id = f"prune-{uuid.uuid4().hex[:6]}"
    with DockerSandbox(SandboxConfig(run_id=run_id)) as box:
        ref = box.snapshot()
    r = _cli("sandbox", "prune", "--run-id", run_id, "--json")
    assert r.returncode == 0 and json.loads(r.stdout) == {"removed": [ref]}
