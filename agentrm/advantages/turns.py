"""Turn-level estimators over step rows: IGPO (ALGORITHMS.md §4.4) and PURE min-form credit (§6).

Rows are turns; `turn_reward` carries the information gain (IGPO) or the process reward (PURE).
"""

from __future__ import annotations

import numpy as np

from agentrm.advantages.config import AdvantageConfig
from agentrm.advantages.grouping import Layout, group_stats
from agentrm.advantages.rows import StepRows

Parts = dict[str, np.ndarray]


def _igpo_stats(values: np.ndarray, codes: np.ndarray, n: int, cfg: AdvantageConfig):
    """μ, σ per group with IGPO's rules: |S| ≤ 1 ⇒ σ = 1; |S| = 0 ⇒ μ = 0, σ = 1 (§4.4 step 2)."""
    count, mean, sigma = group_stats(values, codes, n, cfg.std, float(cfg.eps_var))
    mean = np.where(count == 0, 0.0, mean)
    sigma = np.where(count <= 1, 1.0, sigma)
    return mean, sigma


def igpo(rows: StepRows, lay: Layout, cfg: AdvantageConfig) -> Parts:
    """z = group-normalised turn values (outcome on the last turn, IG on the others), then
    A_j = z_j + γ·A_{j+1} over turns with z ≠ 0; a turn with z = 0 takes the next boundary's A.

    A trajectory missing any IG value on a non-last turn is outcome-only (§4.3)."""
    outcome = lay.traj_sum(rows.reward)  # r^O per trajectory (usually only on the last turn)
    missing = ~lay.is_last & ~np.isfinite(rows.turn_reward)
    outcome_only = np.bincount(lay.traj[missing], minlength=lay.n_traj) > 0
    is_ig = ~lay.is_last & ~outcome_only[lay.traj]
    ig = np.where(is_ig, rows.turn_reward, 0.0)
    ig_rows = np.flatnonzero(is_ig)
    if cfg.igpo_norm == "joint":
        values = np.concatenate([outcome, ig[ig_rows]])
        codes = np.concatenate([lay.traj_uid, lay.uid[ig_rows]])
        mu_o, sd_o = _igpo_stats(values, codes, lay.n_groups, cfg)
        mu_i, sd_i = mu_o, sd_o
    else:
        mu_o, sd_o = _igpo_stats(outcome, lay.traj_uid, lay.n_groups, cfg)
        mu_i, sd_i = _igpo_stats(ig[ig_rows], lay.uid[ig_rows], lay.n_groups, cfg)
    u = lay.uid
    if cfg.norm == "mean_std":
        z_out = (outcome[lay.traj] - mu_o[u]) / (sd_o[u] + float(cfg.eps))
        z_ig = (ig - mu_i[u]) / (sd_i[u] + float(cfg.eps))
    else:
        z_out, z_ig = outcome[lay.traj] - mu_o[u], ig - mu_i[u]
    z = np.where(lay.is_last, z_out, np.where(is_ig, z_ig, 0.0))
    value = np.where(lay.is_last, outcome[lay.traj], np.where(is_ig, ig, np.nan))
    adv = lay.reverse_scan(z, np.where(z != 0.0, float(cfg.gamma), 1.0))
    return {"advantage": adv, "z": z, "turn_value": value}


def _suffix_softmin(r: np.ndarray, lay: Layout, temperature: float) -> np.ndarray:
    """V_t = Σ_{k≥t} w_k r_k with w = softmax_k(−r_k/T) over the steps k ≥ t (T = 0: min).
    Kept stable by carrying the running minimum m and sums scaled by exp(−(r−m)/T)."""
    m = r.copy()
    num = r.copy()
    den = np.ones_like(r)
    for rows in lay.depth_rows[1:]:
        nxt = lay.next_row[rows]
        m[rows] = np.minimum(r[rows], m[nxt])
        if temperature == 0.0:
            continue
        here = np.exp(-(r[rows] - m[rows]) / temperature)
        carry = np.exp(-(m[nxt] - m[rows]) / temperature)
        den[rows] = here + den[nxt] * carry
        num[rows] = r[rows] * here + num[nxt] * carry
    return m if temperature == 0.0 else num / den


def minform(rows: StepRows, lay: Layout, cfg: AdvantageConfig) -> Parts:
    """PURE min-form credit (§6): value V_t = soft-min of the process rewards r_k for k ≥ t
    ("future", agentrm's form) or over all steps ("all", PURE's outcome O_i); baseline = mean of
    the other trajectories' whole-trajectory values V_0 (RLOO; one trajectory keeps its raw value).

    r_k = turn_reward, falling back to reward where turn_reward is missing."""
    r = np.where(np.isfinite(rows.turn_reward), rows.turn_reward, rows.reward)
    value = _suffix_softmin(r, lay, float(cfg.minform_temperature))
    is_first = np.ones(len(r), bool)
    is_first[lay.next_row[lay.next_row >= 0]] = False
    v0 = np.zeros(lay.n_traj)
    v0[lay.traj[is_first]] = value[is_first]
    if cfg.minform_scope == "all":
        value = v0[lay.traj]
    count, _, sigma = group_stats(v0, lay.traj_uid, lay.n_groups, cfg.std, float(cfg.eps_var))
    total = np.bincount(lay.traj_uid, weights=v0, minlength=lay.n_groups)
    u = lay.uid
    single = count[u] <= 1
    with np.errstate(invalid="ignore", divide="ignore"):
        baseline = np.where(single, 0.0, (total[u] - v0[lay.traj]) / (count[u] - 1))
    adv = value - baseline
    if cfg.norm == "mean_std":
        adv = adv / (np.where(single, 1.0, sigma[u]) + float(cfg.eps))
    return {"advantage": adv, "value": value, "baseline": baseline}
