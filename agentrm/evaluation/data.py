"""Score rows and labels → the flat arrays the metrics take.

A scorer's trajectory value is its trajectory-level row when it wrote one (a PRM's aggregate, a
verifier's verdict); otherwise its turn values aggregated (`sum` for progress and info-gain,
whose turn values are differences that telescope; `mean` for anything else). Turn rows marked
`kind: outcome` (info-gain's last turn carries the outcome reward) are left out: they are the
label, not the scorer's opinion.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from agentrm.errors import InputError
from agentrm.types import Score, ScoreLevel, Trajectory

SUM_SCORERS = {"info-gain", "progress"}
AGGREGATES = ("mean", "sum", "min", "last", "max")


def _aggregate(values: list[float], how: str) -> float:
    arr = np.asarray(values, dtype=float)
    return float({"mean": np.mean, "sum": np.sum, "min": np.min, "max": np.max,
                  "last": lambda a: a[-1]}[how](arr))


def turn_values(scores: Iterable[Score], scorer: str) -> dict[str, list[float | None]]:
    """Per trajectory, the scorer's turn values by turn index (None = abstained or missing)."""
    by_traj: dict[str, dict[int, float | None]] = defaultdict(dict)
    for s in scores:
        if s.scorer != scorer or s.level != ScoreLevel.TURN or s.turn_index is None:
            continue
        if (s.details or {}).get("kind") == "outcome":
            continue
        by_traj[s.trajectory_id][s.turn_index] = s.value
    return {tid: [turns.get(i) for i in range(max(turns) + 1)] for tid, turns in by_traj.items()}


def trajectory_values(scores: Iterable[Score], scorer: str, how: str | None = None) -> dict[str, float]:
    """Trajectory id → the scorer's value (abstentions and infrastructure failures left out)."""
    scores = list(scores)
    hashes = sorted({s.config_hash for s in scores if s.scorer == scorer})
    if len(hashes) > 1:
        raise InputError(f"--scorer {scorer}: stored scores come from {len(hashes)} configurations "
                         f"({', '.join(hashes)}); pin one as {scorer}@HASH")
    out: dict[str, float] = {}
    for s in scores:
        if s.scorer == scorer and s.level == ScoreLevel.TRAJECTORY and s.value is not None:
            out[s.trajectory_id] = float(s.value)
    how = how or ("sum" if scorer in SUM_SCORERS else "mean")
    if how not in AGGREGATES:
        raise InputError(f"unknown aggregate {how!r}: choose from {', '.join(AGGREGATES)}")
    for tid, values in turn_values(scores, scorer).items():
        kept = [v for v in values if v is not None]
        if tid not in out and kept:
            out[tid] = _aggregate(kept, how)
    return out


def select_scorer(scores: Iterable[Score], name: str) -> list[Score]:
    """Rows of `name` or `name@HASH` (renamed to the bare name)."""
    base, _, chash = name.partition("@")
    return [s for s in scores if s.scorer == base and (not chash or s.config_hash.startswith(chash))]


def outcome_labels(trajs: Sequence[Trajectory], source: str, scores: Sequence[Score],
                   threshold: float = 1.0) -> dict[str, int]:
    """Binary labels: `reward` = the stored outcome reward ≥ threshold; a scorer name = its
    trajectory value ≥ threshold. Unknown outcomes (None) are left out, never counted as 0."""
    if source == "reward":
        return {t.id: int(t.reward >= threshold) for t in trajs if t.reward is not None}
    values = trajectory_values(select_scorer(scores, source), source.partition("@")[0])
    if not values:
        raise InputError(f"--labels {source}: no stored trajectory scores from scorer {source!r} "
                         f"(run `agentrm score --run RUN -s {source}` first)")
    return {tid: int(v >= threshold) for tid, v in values.items()}


def read_step_labels(path: Path) -> dict[str, int]:
    """ProcessBench-shaped JSONL: {"id" or "trajectory_id", "label"}: the 0-based index of the
    first wrong step (turn), −1 when every step is right."""
    if not path.is_file():
        raise InputError("no such labels file (--labels)", path=str(path))
    out: dict[str, int] = {}
    for lineno, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            tid = str(row.get("trajectory_id", row.get("id")))
            label = int(row["label"])
        except (json.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError):
            raise InputError('want {"trajectory_id": ID, "label": FIRST_WRONG_STEP or -1}',
                             path=str(path), line=lineno) from None
        if label < -1 or tid == "None":
            raise InputError(f"label {label} / id {tid!r} invalid (label ≥ −1)", path=str(path), line=lineno)
        out[tid] = label
    if not out:
        raise InputError("no labels in file (--labels)", path=str(path))
    return out
