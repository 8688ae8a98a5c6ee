"""Sandbox configuration: safe defaults that user settings are merged into, never replace."""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from typing import Any

from agentrm.errors import InputError

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)i?b?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


def parse_size(value: str | int, what: str = "size") -> int:
    """'512m', '1g', '1GiB' or a byte count -> bytes. Why: one parser for every size flag."""
    if isinstance(value, int):
        if value <= 0:
            raise InputError(f"{what} must be positive, got {value}")
        return value
    match = _SIZE.match(str(value))
    if not match:
        raise InputError(f"{what}: cannot read {value!r} (use e.g. 512m, 1g)")
    n = int(float(match.group(1)) * _UNITS[match.group(2).lower()])
    if n <= 0:
        raise InputError(f"{what} must be positive, got {value!r}")
    return n


@dataclass
class SandboxConfig:
    """Limits and identity of one sandbox. Every field has a safe default.

    network False means no network interface but loopback. `disk` bounds every place the
    non-root user can write (/workspace, /home/agent, /tmp, /var/tmp, ...) with sized tmpfs
    mounts, because this engine's storage driver cannot limit the writable layer; tmpfs pages
    count against `memory`, so the sizes are scaled to leave the sandbox's machinery room.
    """

    image: str | None = None  # None = base_image()
    cpus: float = 1.0
    memory: str = "1g"
    pids: int = 256
    network: bool = False
    wall_clock_s: float = 3600.0
    user: str = "agent"
    workdir: str = "/workspace"
    run_id: str | None = None
    output_cap: int = 1 << 20  # bytes per stream per command
    env: dict[str, str] = field(default_factory=dict)
    disk: str = "512m"  # size of the /workspace and /home/agent tmpfs each; /tmp gets the same
    default_timeout: float = 120.0  # per command, when exec() is given none
    labels: dict[str, str] = field(default_factory=dict)

    def validated(self) -> SandboxConfig:
        """Check every field once, so a bad flag fails before a container exists."""
        if not (0 < self.cpus <= 64):
            raise InputError(f"cpus must be in (0, 64], got {self.cpus}")
        parse_size(self.memory, "memory")
        parse_size(self.disk, "disk")
        if self.pids < 8:
            raise InputError(f"pids must be >= 8, got {self.pids}")
        if self.wall_clock_s <= 0:
            raise InputError(f"wall_clock_s must be positive, got {self.wall_clock_s}")
        if self.output_cap < 1024:
            raise InputError(f"output_cap must be >= 1024 bytes, got {self.output_cap}")
        if not self.workdir.startswith("/"):
            raise InputError(f"workdir must be absolute, got {self.workdir!r}")
        for key in self.env:
            if not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", key):
                raise InputError(f"env: bad variable name {key!r}")
        return self

    def with_(self, **changes: Any) -> SandboxConfig:
        return replace(self, **changes)

    @property
    def memory_bytes(self) -> int:
        return parse_size(self.memory, "memory")

    @property
    def disk_bytes(self) -> int:
        return parse_size(self.disk, "disk")
