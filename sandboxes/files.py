"""File transfer for DockerSandbox, through exec'd `cat`/`tar` as the sandbox user: works for
the tmpfs directories too (docker's archive API writes beneath a tmpfs mount, not into it)."""

from __future__ import annotations

import io
import shlex
import tarfile
import time
from pathlib import Path

from agentrm.errors import InputError
from agentrm.sandboxes.attach import AttachedExec
from agentrm.sandboxes.engine import client

READ_CAP = 100 << 20  # read_file refuses files larger than this (inspect's limit)


class FileTransfer:
    """Mixin: needs self.id, self.cfg, self._check() and self._exec_stateless()."""

    def write_file(self, path: str, data: bytes | str, mode: int | None = None) -> None:
        """Write a file (parents created) as the sandbox user."""
        script = 'mkdir -p -- "$(dirname -- "$1")" && cat > "$1"'
        if mode is not None:
            script += f' && chmod {mode:o} "$1"'
        r = self._exec_stateless(["sh", "-c", script, "sh", path], self.cfg.default_timeout,
                                 user=None, input=data, on_output=None, env=None, workdir="/",
                                 record=False)
        if r.exit_code != 0:
            raise OSError(f"write_file {path}: {r.stderr.strip() or r.exit_code}")

    def read_file(self, path: str) -> bytes:
        """Read a file; FileNotFoundError if absent, OSError above 100 MiB."""
        r = self._exec_raw(["sh", "-c", 'test -f "$1" || exit 66; cat -- "$1"', "sh", path])
        if r[0] == 66:
            raise FileNotFoundError(f"{path} (in sandbox {self.id[:12]})")
        if r[0] != 0:
            raise OSError(f"read_file {path}: {r[2].decode(errors='replace').strip()}")
        return r[1]

    def _exec_raw(self, argv: list[str], input: bytes | None = None,
                  user: str | None = None) -> tuple[int, bytes, bytes]:
        self._check()
        proc = AttachedExec(client().api, self.id, argv, user=user or self.cfg.user, workdir="/",
                            env=None)
        out, err = bytearray(), bytearray()
        try:
            if input is not None:
                proc.send(input)
            proc.close_stdin()
            for stream, data in proc.frames(time.monotonic() + self.cfg.default_timeout):
                (out if stream == 1 else err).extend(data)
                if len(out) > READ_CAP:
                    raise OSError(f"{argv[-1]}: larger than {READ_CAP >> 20} MiB")
            rc = proc.exit_code()
        except TimeoutError as exc:
            raise OSError(f"{argv[-1]}: timed out") from exc
        finally:
            proc.close()
        return (rc if rc is not None else -1), bytes(out), bytes(err)

    def upload(self, host_dir: str | Path, container_dir: str) -> None:
        """Copy a host directory's contents into `container_dir` (created), owned by the user."""
        src = Path(host_dir)
        if not src.is_dir():
            raise InputError("upload: not a directory", path=str(src))
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            tar.add(src, arcname=".")
        q = shlex.quote(container_dir)
        rc, _, err = self._exec_raw(
            ["sh", "-c", f"mkdir -p {q} && tar -x --no-same-owner -C {q}"], buf.getvalue())
        if rc != 0:
            raise OSError(f"upload to {container_dir}: {err.decode(errors='replace').strip()}")

    def download(self, container_dir: str, host_dir: str | Path) -> None:
        """Copy `container_dir`'s contents into a host directory (created)."""
        rc, data, err = self._exec_raw(["tar", "-c", "-C", container_dir, "."])
        if rc != 0:
            raise OSError(f"download {container_dir}: {err.decode(errors='replace').strip()}")
        dest = Path(host_dir)
        dest.mkdir(parents=True, exist_ok=True)
        with tarfile.open(fileobj=io.BytesIO(data)) as tar:
            tar.extractall(dest, filter="data")

