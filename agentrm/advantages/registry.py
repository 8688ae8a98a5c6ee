"""Estimators by name, with a duplicate guard (as verl registers its advantage estimators), and
`compute`: the one entry point that validates, drops unknown-reward trajectories, runs the
estimator and records the conventions used.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any

import numpy as np

from agentrm.advantages.config import AdvantageConfig
from agentrm.advantages.grouping import Layout
from agentrm.advantages.rows import StepRows
from agentrm.errors import InputError

log = logging.getLogger("agentrm.advantages")

EstimatorFn = Callable[[StepRows, Layout, AdvantageConfig], dict[str, np.ndarray]]
_ESTIMATORS: dict[str, EstimatorFn] = {}


def register(name: str, fn: EstimatorFn | None = None):
    """Register `fn` under `name` (usable as a decorator). Registering a different function
    under a taken name raises: two estimators silently sharing a name is a wrong-numbers bug."""

    def add(func: EstimatorFn) -> EstimatorFn:
        if name in _ESTIMATORS and _ESTIMATORS[name] is not func:
            raise ValueError(f"advantage estimator {name!r} is already registered "
                             f"({_ESTIMATORS[name].__module__}.{_ESTIMATORS[name].__qualname__})")
        _ESTIMATORS[name] = func
        return func

    return add(fn) if fn is not None else add


def available() -> list[str]:
    _load_plugins()
    return sorted(_ESTIMATORS)


def get(name: str) -> EstimatorFn:
    _load_plugins()
    if name not in _ESTIMATORS:
        raise InputError(f"unknown estimator {name!r} (--estimator): choose from {', '.join(available())}")
    return _ESTIMATORS[name]


_plugins_loaded = False


def _load_plugins() -> None:
    """Entry points of the `agentrm.advantages` group, scanned once per process."""
    global _plugins_loaded
    if _plugins_loaded:
        return
    _plugins_loaded = True
    for ep in entry_points(group="agentrm.advantages"):
        if ep.name not in _ESTIMATORS:
            register(ep.name, ep.load())


@dataclass
class AdvantageResult:
    """Per-row columns (aligned with the input rows; NaN for excluded rows) plus metadata."""

    columns: dict[str, np.ndarray]
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def advantage(self) -> np.ndarray:
        return self.columns["advantage"]


def compute(rows: StepRows, config: AdvantageConfig) -> AdvantageResult:
    """Advantages of every step row under `config` (validated; defaults filled).

    Trajectories with an unknown reward (NaN on any row) are left out of every statistic and get
    NaN advantages: an unknown reward is not a zero reward."""
    cfg = config.resolve()
    if cfg.estimator in ("igpo", "minform") and cfg.invalid_penalty:
        raise InputError(f"--invalid-penalty is not defined for {cfg.estimator}: leave it at 0")
    fn = get(cfg.estimator)
    n = len(rows)
    lay = Layout.build(rows)
    sub, keep = rows, None
    nan_rows = np.isnan(rows.reward)
    unknown = np.bincount(lay.traj[nan_rows], minlength=lay.n_traj) if nan_rows.any() else np.zeros(0)
    if unknown.any():
        keep = unknown[lay.traj] == 0
        sub = rows.take(np.flatnonzero(keep))
        lay = Layout.build(sub)
    parts = fn(sub, lay, cfg) if len(sub) else {"advantage": np.zeros(0)}
    columns = parts
    if keep is not None:
        columns = {}
        for name, values in parts.items():
            full = np.full(n, np.nan if values.dtype.kind == "f" else -1, dtype=values.dtype)
            full[keep] = values
            columns[name] = full
    meta = cfg.metadata()
    meta.update(rows=n, groups=lay.n_groups, trajectories=lay.n_traj,
                excluded_trajectories=int((unknown > 0).sum()), config_hash=cfg.config_hash())
    if "step_group_size" in parts:
        sizes = parts["step_group_size"]
        meta["step_singleton_share"] = float(np.mean(sizes == 1)) if len(sizes) else 0.0
    if meta["excluded_trajectories"]:
        log.warning("%d trajectories have unknown rewards and were left out",
                    meta["excluded_trajectories"])
    return AdvantageResult(columns, meta)


def _builtin() -> None:
    from agentrm.advantages import outcome, turns

    for name, fn in (("grpo", outcome.grpo), ("rloo", outcome.rloo), ("gigpo", outcome.gigpo),
                     ("igpo", turns.igpo), ("minform", turns.minform)):
        register(name, fn)


_builtin()
