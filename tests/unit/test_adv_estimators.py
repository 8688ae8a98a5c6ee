"""Hand-computed tiny cases for every estimator and convention, plus edge cases."""

from __future__ import annotations

import math

import numpy as np
import pytest

from agentrm.advantages import AdvantageConfig, StepRows, compute, register
from agentrm.advantages.registry import get
from agentrm.errors import InputError


def rows(*specs, turn_reward=None):
    """specs: (uid, traj, step, reward, valid, anchor)."""
    uid, traj, step, reward, valid, anchor = zip(*specs, strict=True)
    return StepRows.from_columns(uid, traj, step, reward, valid, anchor, turn_reward)


def one_step(rewards, uid="g"):
    return rows(*[(uid, f"t{i}", 0, r, True, None) for i, r in enumerate(rewards)])


def adv(r, **kw):
    return compute(r, AdvantageConfig(**kw)).advantage


# ---------------------------------------------------------------- GRPO

def test_grpo_mean_std_sample_and_population():
    r = one_step([1.0, 0.0, 0.0])
    # mean 1/3; σ₁ = sqrt(1/3); σ₀ = sqrt(2/9)
    np.testing.assert_allclose(adv(r, estimator="grpo"),
                               [(2 / 3) / (math.sqrt(1 / 3) + 1e-6), -(1 / 3) / (math.sqrt(1 / 3) + 1e-6),
                                -(1 / 3) / (math.sqrt(1 / 3) + 1e-6)])
    np.testing.assert_allclose(adv(r, estimator="grpo", std="population"),
                               [math.sqrt(2), -1 / math.sqrt(2), -1 / math.sqrt(2)], rtol=1e-5)
    np.testing.assert_allclose(adv(r, estimator="grpo", norm="mean"), [2 / 3, -1 / 3, -1 / 3])


def test_grpo_eps_inside_root():
    r = one_step([1.0, 0.0])
    # σ₀ = sqrt(0.25 + 0.75) = 1 ⇒ A = ±0.5 / (1 + 0)
    np.testing.assert_allclose(adv(r, estimator="grpo", std="population", eps_var=0.75, eps=0.0), [0.5, -0.5])


def test_grpo_pool_per_trajectory_vs_per_step_row():
    # A: two rows, R = 1; B: one row, R = 0
    r = rows(("g", "A", 0, 0.0, True, None), ("g", "A", 1, 1.0, True, None), ("g", "B", 0, 0.0, True, None))
    np.testing.assert_allclose(adv(r, estimator="grpo", norm="mean"), [0.5, 0.5, -0.5])
    # per row: μ = 2/3 (the long trajectory counts twice)
    np.testing.assert_allclose(adv(r, estimator="grpo", norm="mean", baseline="step"), [1 / 3, 1 / 3, -2 / 3])


def test_all_equal_group_gives_zero_and_singleton_keeps_raw_score():
    np.testing.assert_allclose(adv(one_step([0.7, 0.7, 0.7]), estimator="grpo"), 0.0)
    # singleton: μ=0, σ=1, and ε is still added to σ (as verl does)
    np.testing.assert_allclose(adv(one_step([0.7]), estimator="grpo"), [0.7 / (1 + 1e-6)])
    np.testing.assert_allclose(adv(one_step([0.7]), estimator="grpo", norm="mean"), [0.7])
    np.testing.assert_allclose(adv(one_step([0.7]), estimator="rloo"), [0.7])


# ---------------------------------------------------------------- RLOO

def test_rloo_textbook_and_step_pool():
    np.testing.assert_allclose(adv(one_step([1.0, 0.0, 0.0]), estimator="rloo"), [1.0, -0.5, -0.5])
    r = rows(("g", "A", 0, 0.0, True, None), ("g", "A", 1, 1.0, True, None), ("g", "B", 0, 0.0, True, None))
    np.testing.assert_allclose(adv(r, estimator="rloo"), [1.0, 1.0, -1.0])
    # verl-agent pool: n = step rows; A_i = S_i − mean of the other rows
    np.testing.assert_allclose(adv(r, estimator="rloo", baseline="step"), [0.5, 0.5, -1.0])


# ---------------------------------------------------------------- GiGPO

def _gigpo_case():
    # A0 reaches the goal in 2 steps; A1 wanders (invalid step 1) and fails.
    return rows(("A", "A0", 0, 0.0, True, "start"), ("A", "A0", 1, 1.0, True, "room-1"),
                ("A", "A1", 0, 0.0, True, "start"), ("A", "A1", 1, 0.0, False, "room-2"),
                ("A", "A1", 2, 0.0, True, "room-1"))


def test_gigpo_hand_computed_mean_norm():
    res = compute(_gigpo_case(), AdvantageConfig(gamma=0.5))
    # episode: entries A0 = 1, A1 = mean(0, −0.1, 0) = −1/30; μ = 29/60
    mu = (1 - 1 / 30) / 2
    np.testing.assert_allclose(res.columns["episode_advantage"], [1 - mu, 1 - mu, -mu, -0.1 - mu, -mu])
    # step: start {G=0.5, 0} → ±0.25; room-1 {1, 0} → ±0.5; room-2 singleton → 0
    np.testing.assert_allclose(res.columns["step_advantage"], [0.25, 0.5, -0.25, 0.0, -0.5])
    np.testing.assert_allclose(res.columns["return"], [0.5, 1.0, 0.0, -0.1, 0.0])
    np.testing.assert_allclose(res.advantage, res.columns["episode_advantage"] + res.columns["step_advantage"])
    assert res.columns["step_group_size"].tolist() == [2, 2, 2, 1, 2]


def test_gigpo_mean_std_and_omega():
    res = compute(_gigpo_case(), AdvantageConfig(gamma=0.5, norm="mean_std", omega=2.0, invalid_penalty=0.0))
    # episode entries 1 and 0: σ₁ = sqrt(0.5)
    e = 0.5 / (math.sqrt(0.5) + 1e-6)
    np.testing.assert_allclose(res.columns["episode_advantage"], [e, e, -e, -e, -e])
    s1 = 0.25 / (math.sqrt(0.125) + 1e-6)  # start: {0.5, 0}
    s2 = 0.5 / (math.sqrt(0.5) + 1e-6)  # room-1: {1, 0}
    np.testing.assert_allclose(res.columns["step_advantage"], [s1, s2, -s1, 0.0, -s2])
    np.testing.assert_allclose(res.advantage, res.columns["episode_advantage"] + 2 * res.columns["step_advantage"])


def test_penalty_placement_reward_folds_into_return_and_episode():
    res = compute(_gigpo_case(), AdvantageConfig(gamma=0.5, penalty_placement="reward"))
    # A1 rewards become [0, −0.1, 0]: returns [−0.05, −0.1, 0], R = −0.1 on every row
    np.testing.assert_allclose(res.columns["return"], [0.5, 1.0, -0.05, -0.1, 0.0])
    np.testing.assert_allclose(res.columns["score"], [1.0, 1.0, -0.1, -0.1, -0.1])


def test_gigpo_one_trajectory_group_conventions():
    r = rows(("g", "t", 0, 0.0, True, "a"), ("g", "t", 1, 1.0, True, "b"))
    # per trajectory: the pool has one entry ⇒ μ=0, σ=1: the raw score
    np.testing.assert_allclose(compute(r, AdvantageConfig()).advantage, [1.0, 1.0])
    # per step row (reference): two tied rows ⇒ A_E = 0 (ALGORITHMS.md §3.8 item 3)
    np.testing.assert_allclose(compute(r, AdvantageConfig(baseline="step")).advantage, [0.0, 0.0])


def test_anchor_clusters_never_cross_groups_and_may_repeat_within_a_trajectory():
    r = rows(("g", "t0", 0, 0.0, True, "s"), ("g", "t0", 1, 1.0, True, "s"), ("h", "u0", 0, 5.0, True, "s"))
    res = compute(r, AdvantageConfig(gamma=1.0))
    assert res.columns["step_group_size"].tolist() == [2, 2, 1]
    np.testing.assert_allclose(res.columns["step_advantage"], [0.0, 0.0, 0.0])  # G = 1, 1


def test_similarity_anchors_merge_near_identical_text():
    r = rows(("g", "a", 0, 1.0, True, "obs: 3 files in /w"), ("g", "b", 0, 0.0, True, "obs: 4 files in /w"),
             ("g", "c", 0, 0.0, True, "something else entirely"))
    exact = compute(r, AdvantageConfig()).columns["step_group_size"]
    similar = compute(r, AdvantageConfig(anchor="similar:0.9")).columns["step_group_size"]
    assert exact.tolist() == [1, 1, 1] and similar.tolist() == [2, 2, 1]


# ---------------------------------------------------------------- IGPO

def test_igpo_separate_norm_and_turn_recursion():
    r = rows(("g", "T1", 0, 0.0, True, None), ("g", "T1", 1, 1.0, True, None),
             ("g", "T2", 0, 0.0, True, None), ("g", "T2", 1, 0.0, True, None),
             turn_reward=[0.2, None, -0.2, None])
    z_out = 0.5 / (math.sqrt(0.25 + 1e-8) + 1e-6)
    z_ig = 0.2 / (math.sqrt(0.04 + 1e-8) + 1e-6)
    res = compute(r, AdvantageConfig(estimator="igpo"))
    np.testing.assert_allclose(res.advantage, [z_ig + z_out, z_out, -z_ig - z_out, -z_out])
    res = compute(r, AdvantageConfig(estimator="igpo", gamma=0.5))
    np.testing.assert_allclose(res.advantage, [z_ig + 0.5 * z_out, z_out, -z_ig - 0.5 * z_out, -z_out])


def test_igpo_zero_z_and_outcome_only():
    # all-equal outcomes ⇒ final z = 0 ⇒ last turns get 0; T2 misses its IG ⇒ outcome-only
    r = rows(("g", "T1", 0, 0.0, True, None), ("g", "T1", 1, 1.0, True, None),
             ("g", "T2", 0, 0.0, True, None), ("g", "T2", 1, 1.0, True, None),
             turn_reward=[0.3, None, None, None])
    res = compute(r, AdvantageConfig(estimator="igpo", gamma=0.5))
    # IG pool has one value ⇒ σ = 1, z = 0.3 − 0.3 = 0 ⇒ no boundaries at all
    np.testing.assert_allclose(res.advantage, [0.0, 0.0, 0.0, 0.0])
    r2 = rows(("g", "T1", 0, 0.0, True, None), ("g", "T1", 1, 1.0, True, None),
              ("g", "T2", 0, 0.0, True, None), ("g", "T2", 1, 0.0, True, None),
              turn_reward=[0.3, None, None, None])
    res2 = compute(r2, AdvantageConfig(estimator="igpo", norm="mean"))
    # F1 pool {1, 0} μ=.5; IG pool {0.3} ⇒ z=0 ⇒ T1 turn 0 inherits T1's last A
    np.testing.assert_allclose(res2.advantage, [0.5, 0.5, -0.5, -0.5])


# ---------------------------------------------------------------- min-form

def test_minform_hard_min_with_loo_baseline():
    r = rows(("g", "a", 0, 0.0, True, None), ("g", "a", 1, 0.0, True, None), ("g", "a", 2, 0.0, True, None),
             ("g", "b", 0, 0.0, True, None), turn_reward=[0.9, 0.2, 0.8, 0.5])
    res = compute(r, AdvantageConfig(estimator="minform", minform_temperature=0.0))
    np.testing.assert_allclose(res.columns["value"], [0.2, 0.2, 0.8, 0.5])
    np.testing.assert_allclose(res.advantage, [-0.3, -0.3, 0.3, 0.3])


def test_minform_softmin_approaches_min_and_duplicates_never_raise_the_value():
    base = [0.9, 0.2, 0.8]
    r = rows(*[("g", "a", k, 0.0, True, None) for k in range(3)], turn_reward=base)
    soft = compute(r, AdvantageConfig(estimator="minform", minform_temperature=0.01)).columns["value"]
    np.testing.assert_allclose(soft, [0.2, 0.2, 0.8], atol=1e-6)
    padded = rows(*[("g", "a", k, 0.0, True, None) for k in range(5)], turn_reward=base + [0.9, 0.9])
    hard = AdvantageConfig(estimator="minform", minform_temperature=0.0)
    assert compute(padded, hard).columns["value"][0] == compute(r, hard).columns["value"][0] == 0.2
    # soft-min exceeds the min by at most T·ln K (entropy bound), however many steps are added
    v = compute(padded, AdvantageConfig(estimator="minform")).columns["value"]
    assert v[0] <= 0.2 + 0.1 * math.log(5) + 1e-12


# ---------------------------------------------------------------- edge cases

def test_missing_rewards_exclude_the_trajectory_only():
    full = one_step([1.0, 0.0, 0.5, 0.25])
    partial = one_step([1.0, 0.0, float("nan"), 0.25])
    res = compute(partial, AdvantageConfig(estimator="grpo"))
    assert math.isnan(res.advantage[2]) and res.metadata["excluded_trajectories"] == 1
    without = compute(one_step([1.0, 0.0, 0.25]), AdvantageConfig(estimator="grpo")).advantage
    np.testing.assert_allclose(res.advantage[[0, 1, 3]], without)
    assert not np.isnan(compute(full, AdvantageConfig(estimator="grpo")).advantage).any()


def test_empty_input_and_registry_guard():
    empty = StepRows.from_columns([], [], [], [])
    assert compute(empty, AdvantageConfig()).advantage.shape == (0,)
    with pytest.raises(ValueError, match="already registered"):
        register("gigpo", lambda rows, lay, cfg: {})
    register("gigpo", get("gigpo"))  # same function again: allowed
    with pytest.raises(InputError, match="unknown estimator"):
        get("ppo")


@pytest.mark.parametrize("kw, flag", [
    (dict(norm="zscore"), "--norm"), (dict(baseline="token"), "--baseline"),
    (dict(anchor="similar:1.5"), "--anchor"), (dict(anchor="fuzzy"), "--anchor"),
    (dict(gamma=1.5), "--gamma"), (dict(invalid_penalty=-1), "--invalid-penalty"),
    (dict(estimator="ppo"), "--estimator"),
])
def test_bad_config_names_the_flag(kw, flag):
    with pytest.raises(InputError, match=flag):
        AdvantageConfig(**kw).resolve()


def test_metadata_records_every_convention():
    meta = compute(one_step([1.0, 0.0]), AdvantageConfig(estimator="gigpo", gamma=0.95)).metadata
    for key in ("estimator", "baseline", "std", "eps", "eps_var", "singletons", "gamma", "omega",
                "invalid_penalty", "penalty_placement", "anchor", "norm", "config_hash"):
        assert key in meta
    assert meta["gamma"] == 0.95 and meta["norm"] == "mean"


def test_anchor_hashable_forms():
    from agentrm.advantages.rows import anchor_text

    # 1 and "1" are different states; lists compare like tuples; dict key order is irrelevant
    assert anchor_text(1) != anchor_text("1")
    assert anchor_text({"a": 1, "b": [1, 2]}) == anchor_text({"b": [1, 2], "a": 1})
    assert anchor_text([1, 2]) != anchor_text([2, 1])
    r = rows(("g", "a", 0, 1.0, True, anchor_text(1)), ("g", "b", 0, 0.0, True, anchor_text("1")),
             ("g", "c", 0, 0.5, True, anchor_text({"x": 1, "y": 2})),
             ("g", "d", 0, 0.0, True, anchor_text({"y": 2, "x": 1})))
    assert compute(r, AdvantageConfig()).columns["step_group_size"].tolist() == [1, 1, 2, 2]


def test_similarity_ignores_non_text_anchors_and_handles_unicode():
    from agentrm.advantages.rows import anchor_text

    r = rows(("g", "a", 0, 1.0, True, "répertoire: ✓ 3 fichiers"), ("g", "b", 0, 0.0, True, "répertoire: ✓ 4 fichiers"),
             ("g", "c", 0, 0.0, True, anchor_text([1, 2])), ("g", "d", 0, 1.0, True, anchor_text([1, 2])),
             ("g", "e", 0, 1.0, True, None))
    sizes = compute(r, AdvantageConfig(anchor="similar:0.9")).columns["step_group_size"]
    assert sizes.tolist() == [2, 2, 2, 2, 1]


def test_column_api_rejects_inconsistent_rows():
    with pytest.raises(InputError, match="more than one group"):
        compute(rows(("g", "t", 0, 1.0, True, None), ("h", "t", 1, 0.0, True, None)), AdvantageConfig())
    with pytest.raises(InputError, match="duplicate step 1"):
        compute(rows(("g", "t", 1, 1.0, True, None), ("g", "t", 0, 0.0, True, None), ("g", "t", 1, 0.0, True, None)),
                AdvantageConfig())
