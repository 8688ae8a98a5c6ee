"""run_once: one command as a fresh container's main process, under the sandbox's limits."""

from __future__ import annotations

import pytest

from agentrm.errors import InputError
from agentrm.sandboxes import SandboxConfig, run_once
from agentrm.sandboxes.engine import LABEL_KIND

pytestmark = pytest.mark.docker


def test_stdin_script_streams_and_exit_code(docker_client):
    script = "echo out; echo err >&2; read -r line; echo got:$line; exit 3\n"
    r = run_once(SandboxConfig(), ["bash", "-c", "bash -s <<'EOF'\n" + "echo ignored\nEOF\n" + script],
                 input="hello\n", timeout=60)
    assert r.exit_code == 3 and not r.timed_out
    assert r.stdout.split() == ["ignored", "out", "got:hello"]
    assert r.stderr.strip() == "err"


def test_limits_user_and_network_match_a_sandbox(docker_client):
    r = run_once(SandboxConfig(), ["bash", "-c", "id -un; cat /sys/fs/cgroup/pids.max 2>/dev/null || "
                                                  "cat /sys/fs/cgroup/pids/pids.max; "
                                                  "getent hosts example.com || echo no-network"],
                 timeout=60)
    assert r.stdout.split() == ["agent", "256", "no-network"], r.stdout + r.stderr


def test_timeout_kills_inside_the_container_and_leaves_nothing(docker_client):
    r = run_once(SandboxConfig(), ["bash", "-c", "trap '' TERM; sleep 60"], timeout=1)
    assert r.timed_out and r.exit_code == 124 and r.duration_s < 30
    left = docker_client.containers.list(all=True, filters={"label": f"{LABEL_KIND}=oneshot"})
    assert [c for c in left if c.attrs["State"]["Status"] != "removing"] == []


def test_output_is_capped(docker_client):
    r = run_once(SandboxConfig(output_cap=1 << 16), ["bash", "-c", "head -c 5000000 /dev/zero | tr '\\0' x"],
                 timeout=60)
    assert r.truncated and len(r.stdout) <= (1 << 16) + 200 and r.exit_code == 0


def test_empty_command_is_an_input_error(docker_client):
    with pytest.raises(InputError):
        run_once(SandboxConfig(), [], timeout=5)
