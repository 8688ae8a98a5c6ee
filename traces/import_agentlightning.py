"""Agent Lightning stored spans and rollouts as trajectories (placeholder while written)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from agentrm.errors import InputError
from agentrm.types import Score, Trajectory


def looks_like_agentlightning(path: Path) -> bool:
    return False


def read_agentlightning(path: Path) -> Iterator[Trajectory]:
    raise InputError("Agent Lightning import is not implemented yet", path=str(path))


def agentlightning_scores(traj: Trajectory) -> list[Score]:
    return []
