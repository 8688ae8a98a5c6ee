"""The Sandbox contract, run against every registered backend (agentrm.testing.BACKENDS).

Most tests share one sandbox per backend (module scope) to keep the suite fast; tests that
end a shell or a sandbox make their own.
"""

from __future__ import annotations

import time

import pytest

from agentrm.errors import SandboxGone
from agentrm.protocols import Sandbox
from agentrm.sandboxes.config import SandboxConfig
from agentrm.testing import BACKENDS
from agentrm.types import ExecResult

pytestmark = [pytest.mark.docker, pytest.mark.timeout(300)]


@pytest.fixture(scope="module", params=sorted(BACKENDS))
def backend(request, docker_client):
    b = BACKENDS[request.param]
    if b.marker == "docker":
        from agentrm.sandboxes import base_image

        base_image()  # built once, shared with every other test module
    return b


@pytest.fixture(scope="module")
def box(backend):
    sb = backend.make(SandboxConfig(run_id="conformance"))
    yield sb
    sb.close()


def test_is_a_sandbox_and_returns_exec_results(box):
    assert isinstance(box, Sandbox)
    r = box.exec("echo hello")
    assert isinstance(r, ExecResult)
    assert (r.exit_code, r.stdout, r.stderr, r.timed_out, r.truncated) == (0, "hello\n", "", False, False)
    assert r.ok and r.duration_s >= 0


def test_stdout_stderr_and_exit_code_are_separated(box):
    r = box.exec("echo out; echo err >&2; printf tail; exit_code=7; (exit 7)")
    assert r.stdout == "out\ntail"
    assert r.stderr == "err\n"
    assert r.exit_code == 7 and not r.ok


def test_cd_and_environment_persist_in_the_shell(box):
    box.exec("mkdir -p /workspace/persist && cd /workspace/persist && export FOO=bar && greet() { echo hi $1; }")
    r = box.exec("pwd; echo $FOO; greet you")
    assert r.stdout == "/workspace/persist\nbar\nhi you\n"
    box.exec("cd /workspace")


def test_stateless_exec_does_not_share_shell_state(box):
    box.exec("cd /tmp && export ONLY_SHELL=1")
    r = box.exec(["bash", "-c", "pwd; echo ${ONLY_SHELL:-unset}"], stateless=True)
    assert r.stdout == "/workspace\nunset\n" and r.exit_code == 0
    r = box.exec("exit 5", stateless=True)
    assert r.exit_code == 5
    assert box.exec("pwd").stdout == "/tmp\n"  # the shell is untouched
    box.exec("cd /workspace")


def test_output_that_looks_like_protocol_does_not_confuse_the_shell(box):
    r = box.exec(r"printf '\037deadbeef\0370 /x\n'; echo 'EOF'; printf '\x00\x01'; echo ok")
    assert r.exit_code == 0 and r.stdout.endswith("EOF\n\x00\x01ok\n")
    r = box.exec("cat <<'X'\nline1\n$HOME 'q' \"d\" \\\nX")
    assert r.stdout == "line1\n$HOME 'q' \"d\" \\\n"


def test_syntax_error_is_reported_and_shell_survives(box):
    r = box.exec("if then fi (")
    assert r.exit_code != 0 and "syntax error" in r.stderr
    assert box.exec("echo alive").stdout == "alive\n"


def test_commands_reading_stdin_get_eof(box):
    r = box.exec("cat; read x; echo after", timeout=10)
    assert r.stdout == "after\n" and not r.timed_out


def test_unicode_output_and_timed_events(box):
    r = box.exec("echo 'héllo ✓'; sleep 0.3; echo second")
    assert r.stdout == "héllo ✓\nsecond\n"
    assert r.output_events and "".join(t for _, t in r.output_events) == r.stdout
    times = [t for t, _ in r.output_events]
    assert times == sorted(times) and times[-1] - times[0] >= 0.25


def test_timeout_kills_the_command_and_reports_124(box):
    start = time.monotonic()
    r = box.exec("echo before; sleep 30; echo never", timeout=1)
    assert r.timed_out and r.exit_code == 124 and not r.ok
    assert "before" in r.stdout and "never" not in r.stdout
    assert time.monotonic() - start < 10
    assert box.exec("pgrep -fc '^sleep 30$' || true").stdout.strip() == "0"


def test_stateless_timeout(box):
    r = box.exec(["sleep", "30"], timeout=1)
    assert r.timed_out and r.exit_code == 124


def test_output_cap_sets_truncated_and_keeps_head_and_tail(backend):
    sb = backend.make(SandboxConfig(output_cap=4096))
    try:
        r = sb.exec("echo START; head -c 100000 /dev/zero | tr '\\0' x; echo; echo END")
        assert r.truncated and r.exit_code == 0
        assert r.stdout.startswith("START") and r.stdout.rstrip().endswith("END")
        assert len(r.stdout) < 4096 + 200
        r = sb.exec(["sh", "-c", "head -c 100000 /dev/zero >&2"], stateless=True)
        assert r.truncated and len(r.stderr) < 4096 + 200
    finally:
        sb.close()


def test_write_and_read_files(box):
    data = bytes(range(256)) * 10
    box.write_file("/workspace/deep/dir/bin.dat", data)
    assert box.read_file("/workspace/deep/dir/bin.dat") == data
    box.write_file("/workspace/t.txt", "text ✓\n")
    assert box.read_file("/workspace/t.txt") == "text ✓\n".encode()
    assert box.exec("cat /workspace/t.txt").stdout == "text ✓\n"
    with pytest.raises(FileNotFoundError):
        box.read_file("/workspace/nope")


def test_upload_and_download_directories(box, tmp_path):
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "a.py").write_text("print(42)\n")
    (src / "sub" / "b.txt").write_bytes(b"\x00bin")
    box.upload(src, "/workspace/up")
    assert box.exec("python3 /workspace/up/a.py").stdout == "42\n"
    assert box.exec("stat -c %U /workspace/up/a.py").stdout.strip() == "agent"
    box.download("/workspace/up", tmp_path / "back")
    assert (tmp_path / "back" / "a.py").read_text() == "print(42)\n"
    assert (tmp_path / "back" / "sub" / "b.txt").read_bytes() == b"\x00bin"


def test_runs_as_non_root_without_network(box):
    assert box.exec("id -u").stdout.strip() != "0"
    assert box.exec("ls /sys/class/net").stdout.split() == ["lo"]


def test_snapshot_and_fork_carry_state(backend):
    cfg = SandboxConfig(run_id="conformance")
    parent = backend.make(cfg)
    try:
        parent.write_file("/workspace/state.txt", "turn 3\n")
        parent.exec("pip --version > /home/agent/pipver")
        ref = parent.snapshot()
        parent.write_file("/workspace/state.txt", "turn 4\n")  # after the snapshot: not in it
    finally:
        parent.close()
    children = backend.fork(ref, 2, cfg)
    try:
        assert len(children) == 2
        for child in children:
            assert child.read_file("/workspace/state.txt") == b"turn 3\n"
            assert child.exec("test -s /home/agent/pipver && stat -c %U /workspace/state.txt").stdout == "agent\n"
        children[0].write_file("/workspace/state.txt", "diverged\n")  # children are independent
        assert children[1].read_file("/workspace/state.txt") == b"turn 3\n"
    finally:
        for child in children:
            child.close()


def test_shell_recovers_after_exit(backend):
    with backend.make(SandboxConfig()) as sb:
        sb.exec("cd /tmp")
        r = sb.exec("exit 3")
        assert r.exit_code == 3
        r = sb.exec("pwd")
        assert r.exit_code == 0 and r.stdout == "/tmp\n"
        r = sb.exec("kill -9 $$")
        assert r.exit_code != 0
        assert sb.exec("echo back").stdout == "back\n"


def test_closed_sandbox_raises_sandbox_gone(backend):
    sb = backend.make(SandboxConfig())
    with sb:
        assert sb.exec("true").ok
    sb.close()  # idempotent
    with pytest.raises(SandboxGone):
        sb.exec("true")
    with pytest.raises(SandboxGone):
        sb.exec(["true"], stateless=True)


def test_large_command_text_and_concurrent_callers(box):
    import threading

    body = "x" * 100_000
    r = box.exec(f"cat > /workspace/big <<'EOF'\n{body}\nEOF\nwc -c < /workspace/big")
    assert r.stdout == "100001\n"
    results: dict[int, str] = {}

    def worker(i: int) -> None:
        results[i] = box.exec(f"echo {i}; sleep 0.05; echo done{i}").stdout

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == {i: f"{i}\ndone{i}\n" for i in range(4)}  # one command at a time
