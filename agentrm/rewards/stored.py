"""Combined rewards in the trace store: a combine SPEC over a run's stored scores becomes one
`combined` Score row per turn (plus one per trajectory with the return), keyed by the spec's
hash, so the advantages stage reads rewards made of tests + PRM + information gain like any
single scorer's — and two different specs never overwrite each other.

`outcome` in a SPEC is the rollout's own verified reward (Trajectory.reward), so a run needs no
extra scorer for it; an infrastructure failure there abstains, never counts as 0.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from agentrm.config import option
from agentrm.errors import InputError
from agentrm.hashing import stable_hash
from agentrm.rewards.combine import TrajectoryRewards, combine_scores, parse_spec
from agentrm.types import FailureKind, Score, ScoreLevel, Trajectory

COMBINED = "combined"
OUTCOME = "outcome"
_PLAIN = re.compile(r"^\s*[A-Za-z][\w.\-]*\s*$")


def is_plain_scorer(spec: str) -> bool:
    """A bare scorer name (read its rows as they are) rather than a combine SPEC."""
    return bool(_PLAIN.match(spec))


@dataclass
class CombineConfig:
    spec: str = option("", "SPEC, e.g. 'outcome + 0.5*prm|clip:0.8 ; gate=tests>=1'.", "--combine", "-c")
    run: str | None = option(None, "Run id (default: every stored trajectory).")
    write: bool = option(True, "Store the rewards as `combined` score rows.", "--write/--no-write")


def outcome_scores(trajectories: Sequence[Trajectory]) -> list[Score]:
    """The rollouts' own rewards as trajectory-level rows of the pseudo-scorer `outcome`."""
    out = []
    for t in trajectories:
        infra = t.failure_kind is FailureKind.INFRASTRUCTURE
        details = {"failure": "infrastructure"} if infra else {}
        out.append(Score(OUTCOME, t.id, None if infra else t.reward, ScoreLevel.TRAJECTORY, None,
                         "1", "rollout", details))
    return out


def spec_hash(spec_text: str, scores: Sequence[Score]) -> str:
    """The spec plus the configurations of the scores it read: same spec over rescored
    trajectories gets a new hash."""
    parsed = parse_spec(spec_text)
    names = {t.scorer for t in parsed.terms} | ({parsed.gate[0]} if parsed.gate else set())
    used = sorted({(s.scorer, s.config_hash) for s in scores if s.scorer in names})
    return stable_hash({"spec": " ".join(spec_text.split()), "scores": used})


def combined_rows(table: Sequence[TrajectoryRewards], spec_text: str, config_hash: str) -> list[Score]:
    rows = []
    for r in table:
        if r.rewards is None:
            rows.append(Score(COMBINED, r.trajectory_id, None, ScoreLevel.TRAJECTORY, None, "1",
                              config_hash, {"spec": spec_text, "failure": "infrastructure",
                                            "notes": r.notes}))
            continue
        rows += [Score(COMBINED, r.trajectory_id, value, ScoreLevel.TURN, i, "1", config_hash,
                       {"spec": spec_text, "terms": {k: v[i] for k, v in r.terms.items()}})
                 for i, value in enumerate(r.rewards)]
        rows.append(Score(COMBINED, r.trajectory_id, r.total, ScoreLevel.TRAJECTORY, None, "1",
                          config_hash, {"spec": spec_text, "notes": r.notes}))
    return rows


def combine_stored(store: Any, config: CombineConfig, trajectories: Sequence[Trajectory]
                   ) -> tuple[list[TrajectoryRewards], list[Score]]:
    """(per-trajectory table, `combined` rows); the rows are written when `config.write`."""
    spec = parse_spec(config.spec)  # a bad SPEC fails before any store query
    needed = {t.scorer for t in spec.terms} | ({spec.gate[0]} if spec.gate else set())
    ids = [t.id for t in trajectories]
    scores = [s for s in store.get_scores(trajectory_ids=ids) if s.scorer in needed - {OUTCOME}]
    if OUTCOME in needed:
        scores += outcome_scores(trajectories)
    missing = sorted(needed - {s.scorer for s in scores})
    if missing:
        raise InputError(f"--combine {config.spec!r}: no stored scores from {', '.join(missing)} "
                         f"(run `agentrm score -s {missing[0]}` first)")
    table = combine_scores(config.spec, trajectories, scores)
    rows = combined_rows(table, config.spec, spec_hash(config.spec, scores))
    if config.write:
        store.write_scores(rows)
    return table, rows
