"""Docker sandboxes: limits, a persistent shell, snapshots/forks, images built without a registry.

    from agentrm.sandboxes import DockerSandbox, SandboxConfig, base_image, build_image, fork
    from agentrm.sandboxes import run_once   # one command as a fresh container's main process
"""

from agentrm.sandboxes.config import SandboxConfig, parse_size
from agentrm.sandboxes.images import base_image, build_image
from agentrm.sandboxes.oneshot import run_once
from agentrm.sandboxes.pool import SandboxPool, fork
from agentrm.sandboxes.reaper import cleanup
from agentrm.sandboxes.sandbox import DockerSandbox, SandboxExpired

__all__ = [
    "DockerSandbox", "SandboxConfig", "SandboxExpired", "SandboxPool", "base_image",
    "build_image", "cleanup", "fork", "parse_size", "run_once",
]
