"""Fakes and conformance backends for tests, shipped so that a plug-in's tests can use them too.

DirSandbox   a host directory with real bash, for the loop's own branching (malformed calls,
             limits, a sandbox that dies) in milliseconds. Never a stand-in for Docker in a test
             that claims to test sandboxes: those use DockerSandbox.
FailingPolicy  a policy whose every call raises (a model server that is down).
BACKENDS     the sandbox backends the conformance suite (tests/conformance) runs against.

The scripted policy (`scripted:FILE`) is user-facing and lives with the other policies.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agentrm.errors import SandboxGone
from agentrm.protocols import PolicyOutput
from agentrm.types import ExecResult, Message


class DirSandbox:
    """`/workspace` is `root` on the host; commands run in fresh bash processes."""

    def __init__(self, root: str | Path, die_after: int | None = None):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.commands: list[str] = []
        self.die_after = die_after  # raise SandboxGone on the n-th command (1-based)
        self.closed = False

    def _path(self, path: str) -> Path:
        return self.root / path.removeprefix("/workspace").lstrip("/")

    def exec(self, cmd: str | list[str], timeout: float | None = None, *,
             stateless: bool = False, input: bytes | str | None = None) -> ExecResult:
        self.commands.append(cmd if isinstance(cmd, str) else " ".join(cmd))
        if self.closed or (self.die_after is not None and len(self.commands) >= self.die_after):
            raise SandboxGone("container vanished")
        t0 = time.monotonic()
        here = str(self.root)
        argv = (["bash", "-c", cmd.replace("/workspace", here)] if isinstance(cmd, str)
                else [a.replace("/workspace", here) for a in cmd])
        stdin = input.decode() if isinstance(input, bytes) else input
        stdin = None if stdin is None else stdin.replace("/workspace", here)
        try:
            p = subprocess.run(argv, cwd=self.root, capture_output=True, text=True,
                               timeout=timeout, input=stdin)
        except subprocess.TimeoutExpired:
            return ExecResult(124, "", "", timed_out=True, duration_s=time.monotonic() - t0)
        dt = time.monotonic() - t0
        return ExecResult(p.returncode, p.stdout, p.stderr, duration_s=dt,
                          output_events=[(dt, p.stdout)] if p.stdout else [])

    def verify_exec(self, cmd: str, timeout: float = 600.0, *,
                    restore: dict[str, str | bytes] | None = None) -> ExecResult:
        """Restore, then a fresh bash: there is no agent process to stop on a host dir."""
        for path, data in (restore or {}).items():
            self.write_file(path, data)
        return self.exec(cmd, timeout)

    def read_file(self, path: str) -> bytes:
        return self._path(path).read_bytes()

    def write_file(self, path: str, data: bytes | str) -> None:
        p = self._path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data.encode() if isinstance(data, str) else data)

    def snapshot(self) -> str:
        raise NotImplementedError("a host directory has no snapshots")

    def close(self) -> None:
        self.closed = True

    def __enter__(self) -> DirSandbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class FailingPolicy:
    """Raises `error` on every call."""

    def __init__(self, error: BaseException | None = None, name: str = "broken"):
        self.error = error or RuntimeError("model server down")
        self.name = name

    def act(self, messages: Sequence[Message], tools: Sequence[dict[str, Any]]) -> PolicyOutput:
        raise self.error


@dataclass
class Backend:
    """A sandbox backend under the conformance suite; a new backend adds itself to BACKENDS."""

    name: str
    make: Callable[[Any], Any]  # sandbox config -> a started Sandbox
    fork: Callable[[str, int, Any], list]  # (snapshot ref, n, config) -> sandboxes
    marker: str  # pytest marker of the component the backend needs


def _docker_make(cfg: Any) -> Any:
    from agentrm.sandboxes.sandbox import DockerSandbox

    return DockerSandbox(cfg)


def _docker_fork(ref: str, n: int, cfg: Any) -> list:
    from agentrm.sandboxes.pool import fork

    return fork(ref, n, cfg)


BACKENDS: dict[str, Backend] = {
    "docker": Backend("docker", _docker_make, _docker_fork, "docker"),
}


class TokenParityScorer:
    """A reward that a random-weight model earns about half the time, so a training loop on a
    tiny model has advantages to follow and a target it can learn: 1 when the first token id
    the policy sampled is even, else 0 (None without stored ids). Registered by tests and
    bench/train_learns.py under the name `token-parity`."""

    name = "token-parity"
    version = "1"

    def config(self) -> dict[str, Any]:
        return {}

    def score(self, trajectories: Sequence[Any], context: Any = None) -> list[Any]:
        from agentrm.types import Score, ScoreLevel

        out = []
        for traj in trajectories:
            first = next((t.tokens.completion_ids for t in traj.turns if t.tokens is not None), None)
            value = None if not first else float(first[0] % 2 == 0)
            out.append(Score(self.name, traj.id, value, ScoreLevel.TRAJECTORY, None, self.version, "parity"))
        return out


def make_token_parity_scorer(**_: Any) -> TokenParityScorer:
    return TokenParityScorer()
