"""Progress events of the rollout driver: small typed records, emitted from worker threads.

A display (the CLI's live table) or a caller that counts matches on the type. Events describe
what happened; they never carry the trajectory itself (the store has it).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RunPlanned:
    run_id: str
    total: int  # trajectories in the run, including skipped ones
    skipped: int


@dataclass(frozen=True)
class TrajectorySkipped:
    """Finished in an earlier call with this run id: kept, not run again."""

    trajectory_id: str
    task_id: str
    status: str
    turns: int


@dataclass(frozen=True)
class TrajectoryStarted:
    trajectory_id: str
    task_id: str
    resumed_turns: int = 0  # recorded turns replayed into a fresh fork before the policy acts

    @property
    def resumed(self) -> bool:
        return self.resumed_turns > 0


@dataclass(frozen=True)
class TurnDone:
    trajectory_id: str
    turn: int  # turns recorded so far (1-based count)
    valid: bool


@dataclass(frozen=True)
class TrajectoryEnded:
    trajectory_id: str
    task_id: str
    status: str
    turns: int
    reward: float | None
    error: str | None = None


@dataclass(frozen=True)
class GroupFailed:
    """A whole group could not run: its initial state failed to build, or the unit that ran it
    was lost (a Ray worker after every retry). Its trajectories are infrastructure failures."""

    task_id: str
    error: str


Event = RunPlanned | TrajectorySkipped | TrajectoryStarted | TurnDone | TrajectoryEnded | GroupFailed
