"""Batch filters before training (ALGORITHMS.md §10) and the diagnostics that justify them.

Every filter works per trajectory (rows of a kept trajectory are all kept) and returns a boolean
keep-mask over rows; `apply_filters` chains them in a fixed order and counts what each removed.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from difflib import SequenceMatcher
from typing import Any

import numpy as np

from agentrm.advantages.config import AdvantageConfig
from agentrm.advantages.grouping import Layout, cluster_exact, cluster_similar
from agentrm.advantages.registry import compute
from agentrm.advantages.rows import StepRows
from agentrm.config import option
from agentrm.errors import InputError


@dataclass(frozen=True)
class FilterConfig:
    zero_variance: str = option("keep", "keep | drop | keep-step (drop unless GiGPO step terms ≠ 0).")
    tolerance: float = option(1e-9, "Outcome rewards within this are tied.", cli=False)
    min_score: float | None = option(None, "Keep trajectories with R(τ) ≥ this.")
    max_score: float | None = option(None, "Keep trajectories with R(τ) ≤ this.")
    best_of: int | None = option(None, "Keep the N highest-R(τ) trajectories per group.")
    require_verified: bool = option(False, "Keep verified trajectories only.", "--require-verified")
    dedup: float | None = option(None, "Drop a trajectory whose action text has ratio ≥ this to a kept one.")

    def validate(self) -> None:
        if self.zero_variance not in ("keep", "drop", "keep-step"):
            raise InputError(f"--zero-variance {self.zero_variance!r}: use keep, drop or keep-step")
        if self.best_of is not None and self.best_of < 1:
            raise InputError(f"--best-of {self.best_of}: must be ≥ 1")
        if self.dedup is not None and not 0.0 < self.dedup <= 1.0:
            raise InputError(f"--dedup {self.dedup}: must be in (0, 1]")


def episode_rewards(rows: StepRows, lay: Layout) -> np.ndarray:
    return lay.traj_sum(rows.reward)


def tied_groups(rows: StepRows, lay: Layout, tolerance: float) -> np.ndarray:
    """Per group: True when all its trajectories' outcome rewards are equal (advantage collapse)."""
    r = episode_rewards(rows, lay)
    hi = np.full(lay.n_groups, -np.inf)
    lo = np.full(lay.n_groups, np.inf)
    np.fmax.at(hi, lay.traj_uid, r)  # fmax/fmin: unknown (NaN) rewards are ignored
    np.fmin.at(lo, lay.traj_uid, r)
    return (hi - lo) <= tolerance


def _zero_variance_keep(rows, lay, cfg: FilterConfig, adv_cfg: AdvantageConfig) -> np.ndarray:
    tied = tied_groups(rows, lay, cfg.tolerance)
    if cfg.zero_variance == "keep":
        return np.ones(len(rows), bool)
    drop = tied.copy()
    if cfg.zero_variance == "keep-step":  # tied outcomes can still carry step-level signal
        step = compute(rows, AdvantageConfig(**{**asdict(adv_cfg), "estimator": "gigpo"}))
        live = np.abs(np.nan_to_num(step.columns["step_advantage"])) > 0
        has_step = np.bincount(lay.uid[live], minlength=lay.n_groups) > 0
        drop &= ~has_step
    return ~drop[lay.uid]


def _best_of(lay: Layout, reward: np.ndarray, n: int) -> np.ndarray:
    """Top-n trajectories by R(τ) per group; ties broken by trajectory id order (deterministic)."""
    order = np.lexsort((np.arange(lay.n_traj), -reward, lay.traj_uid))
    group_sorted = lay.traj_uid[order]
    starts = np.searchsorted(group_sorted, group_sorted, side="left")
    rank = np.empty(lay.n_traj, np.int64)
    rank[order] = np.arange(lay.n_traj) - starts
    return rank < n


def _dedup(lay: Layout, text: list[str], threshold: float, alive: np.ndarray) -> np.ndarray:
    """Greedy per group in trajectory-id order: drop a trajectory whose action text is
    near-identical (difflib ratio ≥ threshold) to an earlier kept one. Loops over trajectories."""
    keep = alive.copy()
    kept: dict[int, list[str]] = {}
    for t in np.flatnonzero(alive).tolist():
        group = int(lay.traj_uid[t])
        for other in kept.get(group, ()):
            m = SequenceMatcher(None, text[t], other)
            if m.real_quick_ratio() >= threshold and m.quick_ratio() >= threshold and m.ratio() >= threshold:
                keep[t] = False
                break
        else:
            kept.setdefault(group, []).append(text[t])
    return keep


def apply_filters(rows: StepRows, cfg: FilterConfig, adv_cfg: AdvantageConfig | None = None,
                  verified: np.ndarray | None = None, text: np.ndarray | None = None):
    """(row keep-mask, counts of trajectories removed per filter). `verified` and `text` are
    per-row arrays (a trajectory is verified only if none of its rows says false; its text is
    its rows' texts joined in step order)."""
    cfg.validate()
    adv_cfg = adv_cfg or AdvantageConfig(estimator="gigpo")
    lay = Layout.build(rows)
    reward = episode_rewards(rows, lay)
    alive = np.ones(lay.n_traj, bool)
    removed: dict[str, int] = {}

    def cut(name: str, keep_traj: np.ndarray) -> None:
        removed[name] = int((alive & ~keep_traj).sum())
        alive[:] &= keep_traj

    zv_rows = _zero_variance_keep(rows, lay, cfg, adv_cfg)
    cut("zero_variance", np.bincount(lay.traj[~zv_rows], minlength=lay.n_traj) == 0)
    with np.errstate(invalid="ignore"):
        if cfg.min_score is not None:
            cut("min_score", reward >= cfg.min_score)
        if cfg.max_score is not None:
            cut("max_score", reward <= cfg.max_score)
    if cfg.require_verified:
        if verified is None:
            raise InputError("--require-verified: the rows carry no 'verified' field")
        cut("unverified", np.bincount(lay.traj[~verified], minlength=lay.n_traj) == 0)
    if cfg.best_of is not None:
        cut("best_of", _best_of(lay, np.where(alive, reward, -np.inf), cfg.best_of))
    if cfg.dedup is not None:
        order = np.lexsort((rows.step, lay.traj))
        parts: list[list[str]] = [[] for _ in range(lay.n_traj)]
        source = text if text is not None else rows.anchor
        for i in order.tolist():
            parts[lay.traj[i]].append("" if source[i] is None else str(source[i]))
        cut("near_duplicate", _dedup(lay, ["\n".join(p) for p in parts], cfg.dedup, alive))
    return alive[lay.traj], removed


def batch_statistics(rows: StepRows, adv_cfg: AdvantageConfig | None = None,
                     tolerance: float = 1e-9) -> dict[str, Any]:
    """Diagnostics (§3.8 item 8, §10): zero-variance share, step-group size histogram, singletons."""
    adv_cfg = (adv_cfg or AdvantageConfig(estimator="gigpo")).resolve()
    lay = Layout.build(rows)
    if not len(rows):
        return {"rows": 0, "groups": 0, "trajectories": 0}
    threshold = adv_cfg.similarity_threshold()
    cluster = (cluster_exact(lay.uid, rows.anchor) if threshold is None
               else cluster_similar(lay, rows.anchor, rows.step, threshold))
    sizes = np.bincount(cluster)
    sizes = sizes[sizes > 0]
    hist = np.bincount(sizes)
    tied = tied_groups(rows, lay, tolerance)
    return {
        "rows": len(rows), "groups": lay.n_groups, "trajectories": lay.n_traj,
        "zero_variance_groups": int(tied.sum()),
        "zero_variance_share": float(tied.mean()),
        "step_groups": int(len(sizes)),
        "step_group_size_histogram": {int(s): int(c) for s, c in enumerate(hist) if c},
        "singleton_step_groups": int((sizes == 1).sum()),
        "singleton_share": float((sizes == 1).mean()),
        "singleton_row_share": float((sizes == 1).sum() / len(rows)),
        "mean_step_group_size": float(sizes.mean()),
        "anchor": adv_cfg.anchor,
    }
