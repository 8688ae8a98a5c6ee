"""The `submitted` format reward: 1 for a trajectory the agent ended with submit, 0 for one it
did not (turn limit, format error), None for one the environment broke (never a model's 0)."""

from __future__ import annotations

import pytest

from agentrm.types import ExitStatus, Trajectory
from agentrm.verifiers.registry import make_scorer


@pytest.mark.parametrize("status, value", [
    (ExitStatus.SUBMITTED, 1.0), (ExitStatus.TURN_LIMIT, 0.0), (ExitStatus.FORMAT_ERROR, 0.0),
    (ExitStatus.SANDBOX_ERROR, None), (ExitStatus.MODEL_ERROR, None),
])
def test_submitted(status, value):
    (score,) = make_scorer("submitted").score([Trajectory(id="t", task_id="x", group_id="g", exit_status=status)])
    assert score.scorer == "submitted" and score.turn_index is None and score.value == value
