"""Every convention an estimator must pin (ALGORITHMS.md §0, §3.8, §4.7, §12), in one typed config.

Fields left as None take the estimator's default (`resolve`), chosen per estimator because the
reference code bases disagree; `metadata()` records the resolved values with every output.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

from agentrm.config import option
from agentrm.errors import InputError
from agentrm.hashing import stable_hash

ESTIMATOR_NAMES = ("gigpo", "grpo", "rloo", "igpo", "minform")

# Per-estimator defaults. Reasons are in docs/advantages.md ("Defaults").
_DEFAULTS: dict[str, dict[str, Any]] = {
    "gigpo": dict(gamma=1.0, norm="mean", std="sample", eps=1e-6, eps_var=0.0, invalid_penalty=0.1),
    "grpo": dict(gamma=1.0, norm="mean_std", std="sample", eps=1e-6, eps_var=0.0, invalid_penalty=0.1),
    "rloo": dict(gamma=1.0, norm="mean", std="sample", eps=1e-6, eps_var=0.0, invalid_penalty=0.1),
    "igpo": dict(gamma=1.0, norm="mean_std", std="population", eps=1e-6, eps_var=1e-8,
                 invalid_penalty=0.0),
    "minform": dict(gamma=1.0, norm="mean", std="sample", eps=1e-6, eps_var=0.0, invalid_penalty=0.0),
}


BASELINES = ("trajectory", "first_row", "step")


@dataclass(frozen=True)
class AdvantageConfig:
    """Conventions of one advantage computation. None = the estimator's default."""

    estimator: str = option("gigpo", "gigpo | grpo | rloo | igpo | minform", "--estimator")
    gamma: float | None = option(None, "Discount γ of step returns (GiGPO) / turn recursion (IGPO); default 1.0.")
    omega: float = option(1.0, "GiGPO step-advantage weight ω (Eq. 8).")
    norm: str | None = option(None, "mean (A = S − μ) | mean_std (A = (S − μ)/(σ + ε)); default per estimator.")
    std: str | None = option(None, "sample (σ₁, ddof=1) | population (σ₀, ddof=0).")
    eps: float | None = option(None, "ε added to σ.")
    eps_var: float | None = option(None, "ε' inside the root: σ = sqrt(var + ε').")
    baseline: str = option(
        "trajectory", "Episode pool: trajectory (one entry per trajectory: the mean of its rows' "
        "penalised scores) | first_row (one per trajectory: its first row's penalised score, "
        "verl-agent's older per-trajectory mode) | step (one per step row, verl-agent's current).")
    anchor: str = option("exact", "Anchor states: exact | similar:T (difflib ratio ≥ T).")
    invalid_penalty: float | None = option(None, "Subtracted for rows with valid=false.")
    penalty_placement: str = option("row", "row (per row, undiscounted; the reference) | reward (fold into r_t).")
    igpo_norm: str = option("separate", "IGPO: separate (outcome and IG pools) | joint.")
    minform_temperature: float = option(0.1, "Min-form soft-min T (0 = hard min).", "--temperature")
    minform_scope: str = option("future", "Min-form: min over steps k ≥ t (future) | all.")

    def resolve(self) -> AdvantageConfig:
        """Fill estimator defaults and validate; raises InputError naming the flag to fix."""
        if self.estimator not in ESTIMATOR_NAMES:
            raise InputError(f"unknown estimator {self.estimator!r} (--estimator): choose from "
                             f"{', '.join(ESTIMATOR_NAMES)}")
        defaults = _DEFAULTS[self.estimator]
        filled = {k: (getattr(self, k) if getattr(self, k) is not None else v)
                  for k, v in defaults.items()}
        cfg = replace(self, **filled)
        cfg._validate()
        return cfg

    def _validate(self) -> None:
        checks = [
            (self.norm in ("mean", "mean_std"), f"--norm {self.norm!r}: use mean or mean_std"),
            (self.std in ("sample", "population"), f"std {self.std!r}: use sample or population"),
            (self.baseline in BASELINES, f"--baseline {self.baseline!r}: use {', '.join(BASELINES)}"),
            (self.penalty_placement in ("row", "reward"),
             f"penalty placement {self.penalty_placement!r}: use row or reward"),
            (self.igpo_norm in ("separate", "joint"), f"IGPO norm {self.igpo_norm!r}: use separate or joint"),
            (self.minform_scope in ("future", "all"), f"min-form scope {self.minform_scope!r}: use future or all"),
            (0.0 <= float(self.gamma) <= 1.0, f"--gamma {self.gamma}: must be in [0, 1]"),
            (float(self.eps) >= 0 and float(self.eps_var) >= 0, "eps must be ≥ 0"),
            (float(self.minform_temperature) >= 0, "min-form temperature must be ≥ 0"),
            (float(self.invalid_penalty) >= 0, f"--invalid-penalty {self.invalid_penalty}: must be ≥ 0"),
        ]
        for ok, message in checks:
            if not ok:
                raise InputError(message)
        self.similarity_threshold()  # validates --anchor

    def similarity_threshold(self) -> float | None:
        """None for exact anchors, else the difflib ratio threshold of `similar:T`."""
        if self.anchor == "exact":
            return None
        kind, _, value = self.anchor.partition(":")
        try:
            threshold = float(value) if kind == "similar" else None
        except ValueError:
            threshold = None
        if threshold is None or not 0.0 < threshold <= 1.0:
            raise InputError(f"--anchor {self.anchor!r}: use exact or similar:T with 0 < T ≤ 1")
        return threshold

    def metadata(self) -> dict[str, Any]:
        """The resolved conventions, as recorded with every output (ALGORITHMS.md §0)."""
        cfg = self.resolve()
        meta = asdict(cfg)
        meta["std_formula"] = (f"sqrt(var_ddof{0 if cfg.std == 'population' else 1} + {cfg.eps_var})"
                               f" + {cfg.eps}")
        meta["singletons"] = _SINGLETON_RULES[cfg.estimator]
        meta["padding_duplicates"] = "none (agentrm never pads rows)"
        return meta

    def config_hash(self) -> str:
        return stable_hash(asdict(self.resolve()))


_SINGLETON_RULES = {
    "gigpo": "episode pool of one entry: mu=0, sigma=1 (raw score); anchor cluster of one row: A_S=0",
    "grpo": "pool of one entry: mu=0, sigma=1 (raw score)",
    "rloo": "pool of one entry: raw score",
    "igpo": "pool of <=1 value: sigma=1; empty pool: mu=0, sigma=1",
    "minform": "group of one trajectory: raw min-form value",
}
