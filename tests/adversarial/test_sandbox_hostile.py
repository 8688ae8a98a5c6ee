"""Hostile commands: each is contained and reported, and leaves the host and the next sandbox
unaffected. Against the real engine; one shared sandbox where the attack leaves it usable."""

from __future__ import annotations

import os
import resource
import shutil
import time
import uuid

import docker.errors
import pytest

from agentrm.errors import SandboxGone
from agentrm.sandboxes import DockerSandbox, SandboxConfig, base_image, build_image

pytestmark = [pytest.mark.docker, pytest.mark.timeout(300)]


@pytest.fixture(scope="module")
def image(docker_client):
    return base_image()


@pytest.fixture(scope="module")
def box(image):
    sb = DockerSandbox(SandboxConfig(run_id="hostile", pids=128, memory="512m", disk="128m"))
    yield sb
    sb.close()


def _healthy(sb: DockerSandbox) -> None:
    r = sb.exec("echo ok && python3 -c 'print(6*7)'", timeout=30)
    assert (r.exit_code, r.stdout) == (0, "ok\n42\n"), r


def test_fork_bomb_is_bounded_by_pids_and_killed(image):
    # its own sandbox: on a loaded machine the clean-up can take a while, and the other
    # hostile tests must not inherit a sandbox still recovering from the bomb
    with DockerSandbox(SandboxConfig(run_id="hostile", pids=128, memory="512m", disk="128m")) as box:
        start = time.monotonic()
        r = box.exec("bomb() { bomb | bomb & }; bomb; sleep 5", timeout=3)
        assert time.monotonic() - start < 40
        assert r.timed_out or r.exit_code != 0
        # every bomb process is gone (pids limit held them to 128; the killer cleaned up)
        deadline, n = time.monotonic() + 60, ""
        while time.monotonic() < deadline:
            n = box.exec("ps -e --no-headers | wc -l", timeout=10).stdout.strip()
            if n.isdigit() and int(n) < 10:
                break
            time.sleep(0.5)
        assert n.isdigit() and int(n) < 10, n
        _healthy(box)


def test_memory_hog_is_killed_inside_the_sandbox(box):
    r = box.exec("python3 -c 'x = bytearray(2 << 30); print(len(x))'", timeout=60)
    assert r.exit_code != 0 and "2147483648" not in r.stdout  # OOM-killed (137) or MemoryError
    if r.exit_code == 137:
        assert "out-of-memory killer" in r.stderr, r
    r = box.exec(["python3", "-c", "x = bytearray(700 << 20); x[::4096] = b'1' * len(x[::4096]); print(1)"],
                 timeout=60)
    assert r.exit_code == 137 and "out-of-memory killer" in r.stderr, r
    _healthy(box)


def test_filling_the_disk_hits_the_workspace_limit(box):
    before = shutil.disk_usage("/var/lib/docker" if os.path.isdir("/var/lib/docker") else "/").free
    for target in ("/workspace/fill", "/tmp/fill", "/home/agent/fill"):
        r = box.exec(f"dd if=/dev/zero of={target} bs=1M count=1024 2>&1; rc=$?; rm -f {target}; exit $rc",
                     timeout=60)
        assert r.exit_code != 0 and "No space left" in r.stdout, r
    # nowhere else is writable for the agent
    r = box.exec("for d in / /usr /etc /var /opt /root; do touch $d/x 2>/dev/null && echo wrote $d; done; true")
    assert r.stdout == ""
    after = shutil.disk_usage("/var/lib/docker" if os.path.isdir("/var/lib/docker") else "/").free
    assert before - after < 200 << 20  # the host disk did not absorb a GiB
    _healthy(box)


def test_endless_loop_times_out(box):
    for cmd in ("while :; do :; done", "python3 -c 'while True: pass'"):
        start = time.monotonic()
        r = box.exec(cmd, timeout=1)
        assert r.timed_out and r.exit_code == 124
        assert time.monotonic() - start < 10
    assert box.exec("pgrep -fc 'while True' || true").stdout.strip() == "0"
    _healthy(box)


def test_no_network_by_default(box):
    # Zero packets: with no interface but lo, connect() fails at route lookup.
    r = box.exec("""python3 - <<'EOF'
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
try:
    s.connect(("192.0.2.1", 53)); print("routed")
except OSError as e:
    print("unreachable", e.errno)
try:
    socket.getaddrinfo("deb.debian.org", 80); print("resolved")
except OSError:
    print("no dns")
EOF""", timeout=30)
    assert r.stdout.split("\n")[:2] == [f"unreachable {101}", "no dns"], r
    assert box.exec("ls /sys/class/net").stdout.split() == ["lo"]


def test_host_paths_are_not_reachable(box):
    marker = f"agentrm-escape-{uuid.uuid4().hex}"
    box.exec(f"echo x > /tmp/{marker}; echo x > /workspace/{marker}; echo x > /{marker} 2>/dev/null; true")
    assert not os.path.exists(f"/tmp/{marker}") and not os.path.exists(f"/{marker}")
    r = box.exec("echo root::0:0::/:/bin/sh >> /etc/passwd")
    assert r.exit_code != 0 and "Permission denied" in r.stderr
    mountinfo = [ln.split() for ln in box.exec("cat /proc/self/mountinfo").stdout.splitlines()]
    # a host file or directory mounted in (kernel file systems under /proc, /sys are not)
    binds = {f[4] for f in mountinfo if f[3] != "/" and not f[4].startswith(("/proc", "/sys"))}
    assert binds <= {"/etc/hosts", "/etc/hostname", "/etc/resolv.conf", "/sbin/docker-init",
                     "/usr/sbin/docker-init"}, binds  # docker-init: the read-only init binary


def test_docker_socket_is_not_reachable(box):
    r = box.exec("ls -la /var/run/docker.sock /run/docker.sock 2>&1; "
                 "python3 -c \"import socket; s=socket.socket(socket.AF_UNIX); s.connect('/var/run/docker.sock')\"")
    assert r.exit_code != 0 and "No such file" in r.stdout + r.stderr


@pytest.fixture(scope="module")
def setuid_image(image):
    return build_image("FROM {base}\nRUN cp /usr/bin/python3.11 /usr/local/bin/supy && chmod 4755 /usr/local/bin/supy\n",
                       name="agentrm/test-setuid")


def test_setuid_escalation_is_blocked(setuid_image):
    with DockerSandbox(SandboxConfig(image=setuid_image, run_id="hostile")) as sb:
        assert sb.exec("stat -c '%U %a' /usr/local/bin/supy").stdout == "root 4755\n"
        r = sb.exec("supy -c 'import os; print(os.geteuid(), os.getuid())'")
        assert r.stdout == "1000 1000\n", r  # no-new-privileges: the setuid bit is ignored
        assert sb.exec("grep NoNewPrivs /proc/self/status").stdout.split() == ["NoNewPrivs:", "1"]
        r = sb.exec("su -c id root </dev/null; mount -t tmpfs none /mnt")
        assert r.exit_code != 0 and "uid=0" not in r.stdout


def test_huge_output_is_capped_without_host_memory_growth(box):
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    r = box.exec("head -c 100000000 /dev/zero | tr '\\0' a; echo; echo END", timeout=120)
    assert r.exit_code == 0 and r.truncated
    assert len(r.stdout) < (1 << 20) + 200 and r.stdout.rstrip().endswith("END")
    rss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    assert rss_after - rss_before < 64 * 1024  # KiB: far below the 100 MB produced
    r = box.exec(["sh", "-c", "head -c 100000000 /dev/zero"], timeout=120)
    assert r.truncated and len(r.stdout) < (1 << 20) + 200
    _healthy(box)


def test_process_ignoring_sigterm_is_killed(box):
    start = time.monotonic()
    r = box.exec("trap '' TERM; python3 -c 'import signal,time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)'",
                 timeout=1)
    assert r.timed_out and time.monotonic() - start < 15
    r = box.exec(["python3", "-c", "import signal,time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)"],
                 timeout=1)
    assert r.timed_out and time.monotonic() - start < 30
    assert box.exec("pgrep -fc 'time.sleep' || true").stdout.strip() == "0"
    _healthy(box)


def test_background_processes_do_not_block_and_die_with_the_sandbox(image, docker_client):
    sb = DockerSandbox(SandboxConfig(run_id="hostile"))
    cid = sb.id
    start = time.monotonic()
    r = sb.exec("nohup sh -c 'while :; do echo spam; sleep 0.05; done' >/dev/null 2>&1 & "
                "setsid sleep 1000 & (sleep 1000 &) ; echo launched")
    assert r.stdout == "launched\n" and time.monotonic() - start < 5
    r = sb.exec(["sh", "-c", "sleep 1000 & echo bg"], timeout=30)
    assert r.stdout == "bg\n" and not r.timed_out and r.duration_s < 5
    assert sb.exec("pgrep -c -f 'sleep 1000'").stdout.strip() == "3"
    sb.close()
    with pytest.raises(docker.errors.NotFound):
        docker_client.containers.get(cid)
    with pytest.raises(SandboxGone):
        sb.exec("true")


def test_next_sandbox_is_unaffected(image):
    with DockerSandbox(SandboxConfig(run_id="hostile")) as sb:
        _healthy(sb)
        assert sb.exec("ls -A /workspace /tmp").stdout.split() == ["/tmp:", "/workspace:"]


# -- the sandbox's machinery is out of the agent's reach (a dead sandbox must not be a way to
#    turn a certain 0 into "unknown"), and verifiers run where the agent cannot reach them

def test_the_agent_cannot_kill_the_machinery(image):
    with DockerSandbox(SandboxConfig(run_id="hostile")) as sb:
        sb.exec("cd /tmp && export KEEP=1")
        r = sb.exec("for p in /proc/[0-9]*; do kill -9 ${p#/proc/} 2>/dev/null; done; echo after",
                    timeout=30)
        assert r.exit_code == 137  # it killed its own shell, nothing else
        r = sb.exec("sleep 300 & kill -9 -1; echo alone", timeout=30)  # all but itself
        assert (r.exit_code, r.stdout) == (0, "alone\n"), r
        r = sb.exec("echo $KEEP; pwd; ps -eo user:12,comm --no-headers | sort -u", timeout=30)
        assert r.stdout.splitlines()[:2] == ["1", "/tmp"], r
        assert "root" in r.stdout and "python3" in r.stdout  # supervisor and timeout untouched


def test_a_background_fork_bomb_is_the_agents_failure_not_the_sandboxes(image):
    with DockerSandbox(SandboxConfig(run_id="hostile", pids=64)) as sb:
        sb.exec("(setsid bash -c 'while :; do sleep 100 & done' &) ; sleep 3", timeout=30)
        r = sb.exec("echo hi", timeout=30)  # no pid left for the command's shell
        assert r.exit_code in (0, 126), r
        if r.exit_code == 126:
            assert "process limit" in r.stderr
        sb.stop_agent()
        assert sb.exec("echo back", timeout=30).stdout == "back\n"


def test_nothing_on_the_unbounded_root_is_writable_by_the_agent(box):
    # -xdev still lists the mount points themselves: keep what is not on a sized tmpfs
    r = box.exec("find / -xdev \\( -path /proc -o -path /sys \\) -prune -o -writable -print "
                 "2>/dev/null | grep -v '^/dev/' | while read -r p; do "
                 "[ \"$(stat -f -L -c %T \"$p\")\" = tmpfs ] || echo \"$p\"; done | head -20",
                 timeout=120)
    assert r.stdout.strip() == "", r.stdout


def test_state_and_lock_dirs_are_bounded(box):
    r = box.exec("dd if=/dev/zero of=/run/lock/.big bs=1M count=50 2>&1; "
                 "du -sm /run/lock/.big | cut -f1; rm -f /run/lock/.big", timeout=120)
    assert int(r.stdout.strip().splitlines()[-1]) <= 2, r


def test_verifier_runs_outside_the_agents_shell(image):
    with DockerSandbox(SandboxConfig(run_id="hostile")) as sb:
        sb.exec("mkdir -p /workspace/t && printf 'import sys; sys.exit(1)\\n' > /workspace/t/check.py")
        sb.exec("python3() { echo ok; }; export -f python3; alias python3=true; "
                "mkdir -p /tmp/.hb && printf '#!/bin/sh\\nexit 0\\n' > /tmp/.hb/python3 && "
                "chmod +x /tmp/.hb/python3; export PATH=/tmp/.hb:$PATH")
        sb.exec("(while :; do printf 'pass\\n' > /workspace/t/check.py; sleep 0.01; done) "
                ">/dev/null 2>&1 &")
        sb.exec("d=$(/usr/bin/python3 -m site --user-site) && mkdir -p $d && "
                "echo 'import os; os._exit(0)' > $d/usercustomize.py")
        r = sb.verify_exec("cd /workspace/t && python3 check.py", timeout=60,
                           restore={"/workspace/t/check.py": "import sys; sys.exit(3)\n"})
        assert r.exit_code == 3, r
        r = sb.exec("stat -c %U /workspace/t/check.py; pgrep -u agent -c sleep || true")
        assert r.stdout.split()[0] == "root"
