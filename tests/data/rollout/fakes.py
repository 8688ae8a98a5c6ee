"""A host-directory sandbox for unit tests of the loop logic (real bash, no container).

Not a stand-in for Docker in tests that claim to test sandboxes: those use DockerSandbox. This
lets the loop's branching (malformed calls, limits, failures) run in milliseconds.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

from agentrm.errors import SandboxGone
from agentrm.types import ExecResult


class DirSandbox:
    def __init__(self, root: Path, die_after: int | None = None):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.commands: list[str] = []
        self.die_after = die_after  # raise SandboxGone on the n-th command (1-based)
        self.closed = False

    def _path(self, path: str) -> Path:
        return self.root / path.removeprefix("/workspace").lstrip("/")

    def exec(self, cmd, timeout=None, stateless=False):
        self.commands.append(cmd)
        if self.closed or (self.die_after is not None and len(self.commands) >= self.die_after):
            raise SandboxGone("container vanished")
        t0 = time.monotonic()
        cmd = cmd.replace("/workspace", str(self.root))
        try:
            p = subprocess.run(["bash", "-c", cmd], cwd=self.root, capture_output=True, text=True,
                               timeout=timeout)
        except subprocess.TimeoutExpired:
            return ExecResult(124, "", "", timed_out=True, duration_s=time.monotonic() - t0)
        dt = time.monotonic() - t0
        return ExecResult(p.returncode, p.stdout, p.stderr, duration_s=dt,
                          output_events=[(dt, p.stdout)] if p.stdout else [])

    def read_file(self, path):
        return self._path(path).read_bytes()

    def write_file(self, path, data):
        p = self._path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data.encode() if isinstance(data, str) else data)

    def snapshot(self):
        raise NotImplementedError

    def close(self):
        self.closed = True

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
