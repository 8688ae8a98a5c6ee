"""Moved: the host-directory sandbox is agentrm.testing.DirSandbox (import it from there)."""

from agentrm.testing import DirSandbox

__all__ = ["DirSandbox"]
