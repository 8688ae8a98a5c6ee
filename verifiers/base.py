"""What every scorer shares: provenance (name, version, config hash) and score rows."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from agentrm.hashing import stable_hash
from agentrm.protocols import ScoringContext
from agentrm.types import FailureKind, Score, ScoreLevel, Trajectory


class ScorerBase:
    """Convenience base for Scorer implementations (the Protocol is in agentrm.protocols).

    Subclasses set `name` and `version`, return their score-changing settings from `config()`,
    and implement `score()`. `turn_score` / `trajectory_score` stamp provenance on each row.
    """

    name: str = "scorer"
    version: str = "1"

    def config(self) -> dict[str, Any]:
        return {}

    def config_hash(self) -> str:
        return stable_hash({"name": self.name, "version": self.version, **self.config()})

    def score(self, trajectories: Sequence[Trajectory], context: ScoringContext | None = None) -> list[Score]:
        raise NotImplementedError

    def turn_score(self, trajectory_id: str, turn_index: int, value: float | None, **details: Any) -> Score:
        return Score(self.name, trajectory_id, value, ScoreLevel.TURN, turn_index,
                     self.version, self.config_hash(), details)

    def trajectory_score(self, trajectory_id: str, value: float | None, **details: Any) -> Score:
        return Score(self.name, trajectory_id, value, ScoreLevel.TRAJECTORY, None,
                     self.version, self.config_hash(), details)

    def infrastructure_abstention(self, traj: Trajectory) -> Score | None:
        """An abstaining row for a trajectory the environment broke (never a model's 0), or
        None when the trajectory can be judged."""
        if traj.failure_kind is not FailureKind.INFRASTRUCTURE:
            return None
        return self.trajectory_score(traj.id, None, error=f"trajectory ended {traj.exit_status.value}",
                                     failure="infrastructure")
