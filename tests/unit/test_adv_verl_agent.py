"""`--baseline first_row` reproduces verl-agent's older per-trajectory episode pool, invalid-
action penalties included: an independent loop in the reference's own style (rows in step order,
the first row seen per trajectory enters the pool with its penalised score)."""

from __future__ import annotations

import random
import statistics

import numpy as np
import pytest

from agentrm.advantages import AdvantageConfig, StepRows, compute


def verl_agent_per_trajectory(uid, traj, step, reward, valid, coef, norm_std, eps=1e-6):
    order = sorted(range(len(step)), key=lambda i: (traj[i], step[i]))
    total = {}
    for i in order:
        total[traj[i]] = total.get(traj[i], 0.0) + reward[i]
    score = [total[traj[i]] - (coef if not valid[i] else 0.0) for i in range(len(step))]
    pool, seen = {}, set()
    for i in order:  # the reference keeps the first row it meets of each trajectory
        if traj[i] not in seen:
            seen.add(traj[i])
            pool.setdefault(uid[i], []).append(score[i])
    out = []
    for i in range(len(step)):
        values = pool[uid[i]]
        if len(values) == 1:
            mean, std = 0.0, 1.0
        else:
            mean, std = statistics.fmean(values), statistics.stdev(values)
        out.append((score[i] - mean) / (std + eps) if norm_std else score[i] - mean)
    return out


def batch(seed):
    rng = random.Random(seed)
    uid, traj, step, reward, valid = [], [], [], [], []
    for g in range(5):
        for r in range(rng.randrange(1, 5)):
            for s in range(rng.randrange(1, 6)):
                uid.append(f"g{g}")
                traj.append(f"g{g}t{r}")
                step.append(s)
                reward.append(rng.choice([0.0, 0.0, 1.0, 0.5]))
                valid.append(rng.random() > 0.3)
    perm = list(range(len(step)))
    rng.shuffle(perm)
    return [[col[i] for i in perm] for col in (uid, traj, step, reward, valid)]


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("estimator, norm", [("grpo", "mean_std"), ("gigpo", "mean"), ("gigpo", "mean_std")])
def test_first_row_matches_the_reference_loop(seed, estimator, norm):
    uid, traj, step, reward, valid = batch(seed)
    rows = StepRows.from_columns(uid, traj, step, reward, valid)
    got = compute(rows, AdvantageConfig(estimator=estimator, norm=norm, baseline="first_row",
                                        invalid_penalty=0.1))
    expected = verl_agent_per_trajectory(uid, traj, step, reward, valid, 0.1, norm == "mean_std")
    np.testing.assert_allclose(got.columns["episode_advantage"], expected, atol=1e-9)


def test_trajectory_and_first_row_differ_only_through_penalties():
    uid, traj, step, reward, valid = batch(11)
    no_penalty = [dict(estimator="grpo", invalid_penalty=0.0, baseline=b) for b in ("trajectory", "first_row")]
    rows = StepRows.from_columns(uid, traj, step, reward, valid)
    a, b = (compute(rows, AdvantageConfig(**c)).advantage for c in no_penalty)
    np.testing.assert_allclose(a, b, atol=1e-12)
    a, b = (compute(rows, AdvantageConfig(estimator="grpo", baseline=x)).advantage for x in ("trajectory", "first_row"))
    assert np.abs(a - b).max() > 1e-3
