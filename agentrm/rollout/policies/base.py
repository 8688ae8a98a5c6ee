"""What every policy backend shares: its errors and the option parsing of policy specs."""

from __future__ import annotations

from agentrm.errors import AgentrmError, InfrastructureError


class ModelError(InfrastructureError):
    """The model backend failed (engine error, HTTP error, script exhausted): the trajectory
    ends as `model_error`, an infrastructure failure that is never scored as reward 0."""


class ContextLimitExceeded(AgentrmError):
    """The conversation no longer fits the model's context: the trajectory ends `token_limit`."""


def coerce(value: str):
    """Spec options arrive as strings (`?temperature=0.2&seed=1`); give them their JSON type."""
    lowered = value.lower()
    if lowered in {"true", "false"}:
        return lowered == "true"
    if lowered in {"none", "null"}:
        return None
    for kind in (int, float):
        try:
            return kind(value)
        except ValueError:
            pass
    return value
