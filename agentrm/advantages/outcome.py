"""Outcome-style estimators over step rows: GRPO, RLOO and GiGPO (ALGORITHMS.md §1–§3).

Each function takes validated StepRows, their Layout and a resolved AdvantageConfig and returns
named per-row arrays ("advantage" plus its parts). No loop runs per row.
"""

from __future__ import annotations

import numpy as np

from agentrm.advantages.config import AdvantageConfig
from agentrm.advantages.grouping import Layout, cluster_exact, cluster_similar, group_stats
from agentrm.advantages.rows import StepRows

Parts = dict[str, np.ndarray]


def scores_and_returns(rows: StepRows, lay: Layout, cfg: AdvantageConfig) -> tuple[np.ndarray, np.ndarray]:
    """(S_i, G'_i): episode score and discounted step return of each row, after the
    invalid-action penalty (§3.5). "row": the reference — coef subtracted once from the row's
    score and its return, undiscounted. "reward": coef folded into r_t before summing and
    discounting, so it reaches R(τ) of every row and the returns of earlier steps."""
    penalty = np.where(rows.valid, 0.0, float(cfg.invalid_penalty))
    if cfg.penalty_placement == "reward":
        reward = rows.reward - penalty
        return lay.traj_sum(reward)[lay.traj], lay.reverse_scan(reward, cfg.gamma)
    score = lay.traj_sum(rows.reward)[lay.traj] - penalty
    return score, lay.reverse_scan(rows.reward, cfg.gamma) - penalty


def episode_pool(score: np.ndarray, lay: Layout, cfg: AdvantageConfig):
    """Per-group (count, sum, mean, sigma) of the episode pool, and a thunk giving each row's
    own entry (§3.3).

    "step": every step row is an entry (verl-agent since 2025-06). "trajectory": one entry per
    trajectory, the mean of its rows' scores (= R(τ) minus its mean penalty). "first_row": one
    entry per trajectory, the penalised score of its first step row — verl-agent's older
    per-trajectory mode, which keeps the first row it meets (rows arrive in step order). The
    two differ only when a trajectory's rows carry different penalties."""
    if cfg.baseline == "step":
        codes, values = lay.uid, score
    elif cfg.baseline == "first_row":
        starts = np.cumsum(lay.length) - lay.length
        values = score[lay.order[starts]]
        codes = lay.traj_uid
    else:
        values = lay.traj_sum(score) / lay.length
        codes = lay.traj_uid
    count, mean, sigma = group_stats(values, codes, lay.n_groups, cfg.std, float(cfg.eps_var))
    total = np.bincount(codes, weights=values, minlength=lay.n_groups)
    own = (lambda: score) if cfg.baseline == "step" else (lambda: values[lay.traj])
    return count, total, mean, sigma, own


def _scale(sigma: np.ndarray, single: np.ndarray, cfg: AdvantageConfig) -> np.ndarray:
    """Per-group factor: 1 ("mean") or 1/(σ + ε) ("mean_std"), with σ = 1 for singletons."""
    if cfg.norm == "mean":
        return np.ones_like(sigma)
    return 1.0 / (np.where(single, 1.0, sigma) + float(cfg.eps))


def grpo(rows: StepRows, lay: Layout, cfg: AdvantageConfig) -> Parts:
    """A = (S − μ)/(σ + ε) or S − μ over the episode pool; a pool of one entry: μ=0, σ=1 (§1)."""
    score, _ = scores_and_returns(rows, lay, cfg)
    adv = _episode_advantage(score, lay, cfg)
    return {"advantage": adv, "episode_advantage": adv, "score": score}


def _episode_advantage(score: np.ndarray, lay: Layout, cfg: AdvantageConfig) -> np.ndarray:
    count, _, mean, sigma, _ = episode_pool(score, lay, cfg)
    single = count == 1
    mean = np.where(single, 0.0, mean)
    return (score - mean[lay.uid]) * _scale(sigma, single, cfg)[lay.uid]


def rloo(rows: StepRows, lay: Layout, cfg: AdvantageConfig) -> Parts:
    """A_i = S_i − mean of the other entries of the pool (§2); n = 1 keeps the raw score.
    n counts trajectories ("trajectory", textbook) or step rows ("step", verl-agent)."""
    score, _ = scores_and_returns(rows, lay, cfg)
    count, total, _, sigma, own = episode_pool(score, lay, cfg)
    single = count == 1
    u = lay.uid
    with np.errstate(invalid="ignore", divide="ignore"):
        loo_mean = np.where(single[u], 0.0, (total[u] - own()) / (count[u] - 1))
    adv = (score - loo_mean) * _scale(sigma, single, cfg)[u]
    return {"advantage": adv, "episode_advantage": adv, "score": score}


def gigpo(rows: StepRows, lay: Layout, cfg: AdvantageConfig) -> Parts:
    """A = A_E + ω·A_S (Eq. 8): A_E over the episode pool (Eq. 3), A_S over anchor-state
    clusters inside each group (Eqs. 6–7); a one-row cluster gets A_S = 0."""
    score, ret = scores_and_returns(rows, lay, cfg)
    a_e = _episode_advantage(score, lay, cfg)
    threshold = cfg.similarity_threshold()
    if threshold is None:
        cluster = cluster_exact(lay.uid, rows.anchor)
    else:
        cluster = cluster_similar(lay, rows.anchor, rows.step, threshold)
    n_clusters = int(cluster.max()) + 1 if len(cluster) else 0
    count, _, sigma, dev = group_stats(ret, cluster, n_clusters, cfg.std, float(cfg.eps_var), True)
    single = count == 1
    factor = np.where(single, 0.0, _scale(sigma, single, cfg))  # one-row cluster: A_S = 0
    a_s = dev * factor[cluster]
    omega = float(cfg.omega)
    return {"advantage": a_e + (a_s if omega == 1.0 else omega * a_s), "episode_advantage": a_e,
            "step_advantage": a_s, "score": score, "return": ret,
            "step_group": cluster, "step_group_size": count.astype(np.int64)[cluster]}
