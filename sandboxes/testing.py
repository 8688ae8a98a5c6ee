"""Backends the sandbox conformance suite runs against (tests/conformance/test_sandbox_*.py).

A new backend registers a factory `cfg -> Sandbox` here; every contract test then runs on it.
Each backend also says how to make a snapshot child, for the snapshot/fork contract.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from agentrm.sandboxes.config import SandboxConfig


@dataclass
class Backend:
    name: str
    make: Callable[[SandboxConfig], object]  # cfg -> a started Sandbox
    fork: Callable[[str, int, SandboxConfig], list]  # (snapshot ref, n, cfg) -> sandboxes
    marker: str  # pytest marker of the component the backend needs


def _docker_make(cfg: SandboxConfig):
    from agentrm.sandboxes.sandbox import DockerSandbox

    return DockerSandbox(cfg)


def _docker_fork(ref: str, n: int, cfg: SandboxConfig):
    from agentrm.sandboxes.pool import fork

    return fork(ref, n, cfg)


BACKENDS: dict[str, Backend] = {
    "docker": Backend("docker", _docker_make, _docker_fork, "docker"),
}
