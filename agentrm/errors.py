"""Errors users can act on. The CLI prints `str(err)` as one line (no traceback) and exits with
`err.exit_code`; library code raises these and never prints."""

from __future__ import annotations


class AgentrmError(Exception):
    """Base class: a one-line message saying what and where, and which flag or file to fix."""

    exit_code = 1


class InputError(AgentrmError):
    """Bad user input (a file, a row, a flag). Exit code 2, like argument errors."""

    exit_code = 2

    def __init__(self, message: str, *, path: str | None = None, line: int | None = None):
        where = ""
        if path is not None:
            where = f"{path}:{line}: " if line is not None else f"{path}: "
        super().__init__(f"{where}{message}")
        self.path = path
        self.line = line


class PrerequisiteError(AgentrmError):
    """Something outside agentrm is missing: no Docker engine, no vLLM, no database server."""

    exit_code = 3


class NotFoundError(AgentrmError):
    """An id that the store or a dataset does not know."""

    exit_code = 4


class RunBusy(AgentrmError):
    """Another live process drives this run id (agentrm.rollout.lease)."""

    exit_code = 6


class InfrastructureError(AgentrmError):
    """The environment failed, not the model: recorded as such, never as a zero reward."""

    exit_code = 5


class SandboxGone(InfrastructureError):
    """The sandbox itself is gone (container removed, engine down). `exec` raises only this."""
