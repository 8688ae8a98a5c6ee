"""`submitted`: a format reward, 1 when the agent ended its trajectory by calling `submit`,
else 0 (None when the environment broke the trajectory). Small policies (SmolLM2-135M) loop on
`ls` and never submit, so every group ties at an outcome of 0 and RL has nothing to follow;
a small weight on this term (`outcome + 0.2*submitted`) gives them a signal to learn the
protocol first, as format rewards do in R1-style training. It says nothing about correctness:
keep its weight below the outcome's, so a wrong submission never beats a right one."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from agentrm.protocols import ScoringContext
from agentrm.types import ExitStatus, Score, Trajectory
from agentrm.verifiers.base import ScorerBase


class SubmittedScorer(ScorerBase):
    name = "submitted"
    version = "1"

    def config(self) -> dict[str, Any]:
        return {}

    def score(self, trajectories: Sequence[Trajectory], context: ScoringContext | None = None) -> list[Score]:
        out = []
        for traj in trajectories:
            abstention = self.infrastructure_abstention(traj)
            out.append(abstention if abstention is not None else self.trajectory_score(
                traj.id, float(traj.exit_status is ExitStatus.SUBMITTED), exit_status=traj.exit_status.value))
        return out


def make_scorer(**options: Any) -> SubmittedScorer:
    return SubmittedScorer()
