"""agentrm.testing: the shipped fakes honour the contracts they stand in for."""

from __future__ import annotations

import pytest

from agentrm.errors import SandboxGone
from agentrm.protocols import Policy, Sandbox
from agentrm.testing import BACKENDS, DirSandbox, FailingPolicy


def test_dir_sandbox_is_a_sandbox_with_shell_argv_and_stdin(tmp_path):
    with DirSandbox(tmp_path, die_after=3) as sb:
        assert isinstance(sb, Sandbox)
        sb.write_file("/workspace/a.txt", "one\ntwo\n")
        assert sb.exec("wc -l < /workspace/a.txt").stdout.strip() == "2"
        got = sb.exec(["bash", "-s"], input="cat /workspace/a.txt | tr a-z A-Z", stateless=True)
        assert (got.exit_code, got.stdout) == (0, "ONE\nTWO\n")
        assert sb.read_file("/workspace/a.txt") == b"one\ntwo\n"
        with pytest.raises(SandboxGone):  # the 3rd command: the sandbox "vanishes"
            sb.exec("true")
    assert sb.closed


def test_failing_policy_raises_what_it_was_given():
    policy = FailingPolicy(MemoryError("CUDA out of memory"))
    assert isinstance(policy, Policy)
    with pytest.raises(MemoryError, match="CUDA"):
        policy.act([{"role": "user", "content": "hi"}], [])


def test_every_backend_names_its_marker():
    assert BACKENDS and all(b.marker and callable(b.make) and callable(b.fork)
                            for b in BACKENDS.values())
