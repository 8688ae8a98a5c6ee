"""Advantages for one group of in-memory trajectories inside a training step (no database).

    out = group_advantages(trajectories, scores, AdvantageConfig("gigpo", gamma=0.95), tokenizer=tok)
    out.per_turn[traj_id]        # np.ndarray, one advantage per turn (NaN = excluded)
    out.per_token[traj_id][k]    # list[float] over turn k's response tokens (model tokens only)
    out.tokens[traj_id][k]       # the TurnTokens those per-token values align with
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from agentrm.advantages.config import AdvantageConfig
from agentrm.advantages.trajectories import turn_advantages
from agentrm.training.export import token_advantages
from agentrm.training.tokenize import ChatRenderer, TurnTokens, tokenize_trajectory
from agentrm.types import Score, Trajectory


@dataclass
class GroupAdvantages:
    per_turn: dict[str, np.ndarray]
    per_token: dict[str, list[list[float]]] = field(default_factory=dict)
    tokens: dict[str, list[TurnTokens]] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)


def group_advantages(trajectories: Sequence[Trajectory], scores: Iterable[Score] = (),
                     config: AdvantageConfig | None = None, tokenizer: Any = None,
                     reward_from: str | None = None, turn_reward_from: str | None = None,
                     tools: Sequence[dict] | None = None, tool_tokens: str = "zero") -> GroupAdvantages:
    """Per-turn advantages of the group (same numbers as `agentrm advantages --db`), plus
    per-token ones when a tokenizer is given (the policy's own; same rows as `agentrm export`).
    An excluded turn (unknown reward) gets NaN per turn and 0.0 on its tokens."""
    per_turn, result = turn_advantages(trajectories, scores, config, reward_from, turn_reward_from)
    out = GroupAdvantages(per_turn, metadata=result.metadata)
    if tokenizer is None:
        return out
    renderer = ChatRenderer(tokenizer)
    for traj in trajectories:
        toks = tokenize_trajectory(traj, renderer, tools)
        out.tokens[traj.id] = toks
        out.per_token[traj.id] = [
            token_advantages(t, 0.0 if not np.isfinite(a) else float(a), tool_tokens)
            for t, a in zip(toks, per_turn[traj.id], strict=True)
        ]
    return out
