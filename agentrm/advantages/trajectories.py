"""Step rows from in-memory trajectories and their scores, and per-turn Advantage records back.

Shared by `agentrm advantages --db` (rows from the trace store, results written back) and the
in-loop API (agentrm.training.inloop), so both compute exactly the same numbers.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Sequence

import numpy as np

from agentrm.advantages.config import AdvantageConfig
from agentrm.advantages.registry import AdvantageResult, compute
from agentrm.advantages.rows import StepRows
from agentrm.hashing import anchor_key
from agentrm.types import Advantage, ExitStatus, FailureKind, Score, ScoreLevel, Trajectory

NAN = math.nan


def _by_traj(scores: Iterable[Score], scorer: str | None) -> dict[str, dict]:
    """{traj_id: {"turn": {index: value}, "trajectory": value}} for one scorer."""
    out: dict[str, dict] = defaultdict(lambda: {"turn": {}, "trajectory": None})
    if scorer is None:
        return out
    for s in scores:
        if s.scorer != scorer:
            continue
        value = NAN if s.value is None else float(s.value)
        if s.level == ScoreLevel.TURN and s.turn_index is not None:
            out[s.trajectory_id]["turn"][s.turn_index] = value
        elif s.level == ScoreLevel.TRAJECTORY:
            out[s.trajectory_id]["trajectory"] = value
    return out


def _unusable(traj: Trajectory) -> bool:
    """Infrastructure failures and unfinished rollouts carry no reward (never a zero one)."""
    return traj.exit_status == ExitStatus.RUNNING or traj.failure_kind == FailureKind.INFRASTRUCTURE


def _step_rewards(traj: Trajectory, source: dict | None) -> list[float]:
    """Env reward per turn: the scorer's turn scores, else its trajectory score on the last turn,
    else (no scorer) the outcome reward on the last turn. Unknown → NaN (trajectory excluded)."""
    n = len(traj.turns)
    if source is None:
        outcome = NAN if traj.reward is None else float(traj.reward)
        return [0.0] * (n - 1) + [outcome]
    if source["turn"]:
        return [source["turn"].get(t.index, NAN) for t in traj.turns]
    if source["trajectory"] is not None:
        return [0.0] * (n - 1) + [source["trajectory"]]
    return [NAN] * n


def rows_from_trajectories(trajectories: Sequence[Trajectory], scores: Iterable[Score] = (),
                           reward_from: str | None = None,
                           turn_reward_from: str | None = None) -> tuple[StepRows, list[tuple[str, int]]]:
    """(StepRows, [(trajectory_id, turn_index)] per row): uid = group_id, traj_uid = id,
    step = turn index, anchor = turn.anchor_key (recomputed when empty), valid = turn.valid."""
    scores = list(scores)
    rewards = _by_traj(scores, reward_from)
    turn_rewards = _by_traj(scores, turn_reward_from)
    cols: dict[str, list] = defaultdict(list)
    keys: list[tuple[str, int]] = []
    for traj in trajectories:
        if not traj.turns:
            continue
        step_r = _step_rewards(traj, rewards[traj.id] if reward_from else None)
        if _unusable(traj):
            step_r = [NAN] * len(step_r)
        turn_r = turn_rewards[traj.id]["turn"] if turn_reward_from else {}
        for turn, r in zip(traj.turns, step_r, strict=True):
            cols["uid"].append(traj.group_id)
            cols["traj_uid"].append(traj.id)
            cols["step"].append(turn.index)
            cols["reward"].append(r)
            cols["valid"].append(bool(turn.valid))
            cols["anchor"].append(turn.anchor_key or anchor_key(turn.observation))
            cols["turn_reward"].append(turn_r.get(turn.index, NAN))
            keys.append((traj.id, turn.index))
    if not keys:
        return StepRows.from_columns([], [], [], []), []
    return StepRows.from_columns(**cols), keys


def advantage_records(result: AdvantageResult, keys: Sequence[tuple[str, int]],
                      config: AdvantageConfig) -> list[Advantage]:
    """One Advantage per row with a known advantage; its parts go in `details`."""
    cfg = config.resolve()
    config_hash = cfg.config_hash()
    adv = result.advantage
    parts = {k: v for k, v in result.columns.items() if k != "advantage"}
    conventions = cfg.metadata()
    out = []
    for i in np.flatnonzero(np.isfinite(adv)).tolist():
        details = {k: (v[i].item() if np.isfinite(v[i]) else None) for k, v in parts.items()}
        details["config"] = conventions
        out.append(Advantage(cfg.estimator, keys[i][0], keys[i][1], float(adv[i]), config_hash, details))
    return out


def turn_advantages(trajectories: Sequence[Trajectory], scores: Iterable[Score] = (),
                    config: AdvantageConfig | None = None, reward_from: str | None = None,
                    turn_reward_from: str | None = None) -> tuple[dict[str, np.ndarray], AdvantageResult]:
    """{trajectory_id: advantage per turn (NaN = excluded)} for in-memory trajectories."""
    config = config or AdvantageConfig()
    rows, keys = rows_from_trajectories(trajectories, scores, reward_from, turn_reward_from)
    result = compute(rows, config)
    per_turn: dict[str, np.ndarray] = {t.id: np.full(len(t.turns), NAN) for t in trajectories}
    position = {t.id: {turn.index: k for k, turn in enumerate(t.turns)} for t in trajectories}
    for (traj_id, turn_index), value in zip(keys, result.advantage.tolist(), strict=True):
        per_turn[traj_id][position[traj_id][turn_index]] = value
    return per_turn, result
