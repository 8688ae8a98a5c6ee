"""Files written whole or not at all: a temp file beside the target, renamed over it on success.

A reader (or a resumed run) never sees half a file, and a failed write leaves the old file in
place. The temp file gets ordinary permissions (`mode` less the umask, 0644 usually) — a bare
mkstemp file is 0600, which made exported pages unreadable to anyone else.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any


def _umask() -> int:
    try:  # Linux: read it without changing it (os.umask is process-wide, racy in threads)
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    current = os.umask(0o022)
    os.umask(current)
    return current


@contextmanager
def atomic_path(path: str | os.PathLike[str], directory: bool = False,
                mode: int | None = None, parents: bool = True) -> Iterator[Path]:
    """A temp file (or `directory`) beside `path` for writers that want a name (pyarrow, torch,
    datasets); it replaces `path` when the block succeeds and is removed when it fails.
    `parents=False`: a missing parent folder is an error (OSError), not created."""
    target = Path(path)
    if parents:
        target.parent.mkdir(parents=True, exist_ok=True)
    prefix = f".{target.name}."
    if directory:
        tmp = Path(tempfile.mkdtemp(prefix=prefix, suffix=".tmp", dir=target.parent))
    else:
        fd, name = tempfile.mkstemp(prefix=prefix, suffix=".tmp", dir=target.parent)
        os.close(fd)
        tmp = Path(name)
    try:
        os.chmod(tmp, (mode if mode is not None else 0o755 if directory else 0o644) & ~_umask())
        yield tmp
        if directory and target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)  # a directory cannot be renamed over a non-empty one
        os.replace(tmp, target)
    except BaseException:
        if tmp.is_dir() and not tmp.is_symlink():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.unlink(missing_ok=True)
        raise


@contextmanager
def atomic_open(path: str | os.PathLike[str], binary: bool = False, mode: int = 0o644,
                parents: bool = True) -> Iterator[IO[Any]]:
    """Open a temp file beside `path` for writing; it replaces `path` when the block succeeds."""
    with atomic_path(path, mode=mode, parents=parents) as tmp:
        with open(tmp, "wb") if binary else open(tmp, "w", encoding="utf-8") as out:
            yield out


def atomic_write(path: str | os.PathLike[str], data: str | bytes, mode: int = 0o644) -> None:
    """Write `data` (text as UTF-8) to `path` atomically."""
    with atomic_open(path, binary=isinstance(data, bytes), mode=mode) as out:
        out.write(data)
