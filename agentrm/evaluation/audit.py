"""Perturbation audit: how each scorer's scores move when stored trajectories are attacked.

For every scorer and perturbation (perturb.PERTURBATIONS) over the trajectories it applies to:
  mean_shift   mean of s(perturbed) − s(original)
  above        share of perturbed trajectories scored above their original (by more than tol)
  flip_rate    share of within-group pairs with different original scores whose order the
               perturbation (applied to both) reverses or ties
  violations   share moving against the expected direction (perturb.EXPECTED; tol allowed)
A scorer is flagged for padding when padding raises its trajectory score, or the undiscounted
return of its turn rewards, on average (by more than tol). For turn-level scorers the same
padded data is then measured under the clip, delta and min-form reward transforms to show which
of them neutralises the gain (no padded return above its original).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from agentrm.evaluation.data import trajectory_values, turn_values
from agentrm.evaluation.perturb import EXPECTED, PERTURBATIONS
from agentrm.protocols import ScoringContext
from agentrm.types import FailureKind, Score, Trajectory


@dataclass
class AuditConfig:
    perturbations: list[str] = field(default_factory=lambda: list(PERTURBATIONS))
    tol: float = 1e-3
    clip_eta: float = 0.5
    batch_size: int = 8


def _transforms_module():
    try:
        from agentrm.rewards import transforms  # the transforms' home after the pipeline refactor
    except ImportError:
        from agentrm.verifiers import transforms
    return transforms


def turn_returns(turns: dict[str, list[float | None]], eta: float) -> dict[str, dict[str, float]]:
    """Per transform, trajectory id → Σ_t r̃_t (abstained turns count 0)."""
    tf = _transforms_module()
    shapes: dict[str, Callable[[list[float]], Any]] = {
        "sum": lambda r: np.asarray(r, dtype=float), "clip": lambda r: tf.clip(r, eta),
        "delta": lambda r: tf.delta(r, "keep"), "min": lambda r: tf.minform(r, how="min")}
    out: dict[str, dict[str, float]] = {name: {} for name in shapes}
    for tid, values in turns.items():
        filled = [0.0 if v is None else float(v) for v in values]
        if not filled:
            continue
        for name, shape in shapes.items():
            out[name][tid] = float(np.sum(shape(filled)))
    return out


def _pairs_flip(orig: dict[str, float], pert: dict[str, float], groups: dict[str, str]) -> float | None:
    members: dict[str, list[str]] = defaultdict(list)
    for tid in orig:
        if tid in pert:
            members[groups[tid]].append(tid)
    flips = total = 0
    for ids in members.values():
        for a in range(len(ids)):
            for b in range(a + 1, len(ids)):
                i, j = ids[a], ids[b]
                before = np.sign(orig[i] - orig[j])
                if before == 0:
                    continue
                total += 1
                flips += int(np.sign(pert[i] - pert[j]) != before)
    return flips / total if total else None


def shift_stats(orig: dict[str, float], pert: dict[str, float], expected: str, tol: float,
                groups: dict[str, str]) -> dict[str, Any]:
    """Statistics of one scorer under one perturbation; `pert` is keyed by the original's id."""
    ids = [t for t in orig if t in pert]
    if not ids:
        return {"n": 0, "mean_shift": None, "above": None, "flip_rate": None, "violations": None}
    delta = np.array([pert[t] - orig[t] for t in ids])
    bad = {"neutral": np.abs(delta) > tol, "no_rise": delta > tol, "drop": delta > -tol}[expected]
    return {"n": len(ids), "mean_shift": float(delta.mean()), "above": float((delta > tol).mean()),
            "flip_rate": _pairs_flip(orig, pert, groups), "violations": float(bad.mean())}


def _score(trajs: Sequence[Trajectory], scorer: Any, context: ScoringContext, batch_size: int,
           on_progress: Callable[[int], None] | None) -> list[Score]:
    from agentrm.scoring import score_trajectories

    done = [0]

    def step(n: int, _total: int | None) -> None:
        if on_progress is not None:
            on_progress(n - done[0])
        done[0] = n
    # nothing is written: perturbed copies are not in the store
    return score_trajectories(trajs, [scorer], store=None, batch_size=batch_size, on_progress=step,
                              context=context)


def audit(trajs: Sequence[Trajectory], scorers: Sequence[Any], cfg: AuditConfig,
          context: ScoringContext | None = None,
          on_progress: Callable[[int], None] | None = None) -> dict[str, Any]:
    """Score originals and perturbed copies with every scorer; return the audit report."""
    context = context or ScoringContext()
    originals = [t for t in trajs if t.failure_kind is not FailureKind.INFRASTRUCTURE]
    groups = {t.id: t.group_id for t in originals}
    copies: dict[str, dict[str, Trajectory]] = {}
    for name in cfg.perturbations:
        fn = PERTURBATIONS[name]
        copies[name] = {t.id: p for t in originals if (p := fn(t)) is not None}
    everything = originals + [p for made in copies.values() for p in made.values()]
    report: dict[str, Any] = {"trajectories": len(originals), "tol": cfg.tol, "clip_eta": cfg.clip_eta,
                              "applied": {n: len(c) for n, c in copies.items()},
                              "expected": {n: EXPECTED[n] for n in cfg.perturbations}, "scorers": []}
    for label, scorer in zip(_labels(scorers), scorers, strict=True):
        rows = _score(everything, scorer, context, cfg.batch_size, on_progress)
        values = trajectory_values(rows, scorer.name)
        turns = turn_values(rows, scorer.name)
        orig = {t.id: values[t.id] for t in originals if t.id in values}
        entry: dict[str, Any] = {"name": label, "scored": len(orig), "perturbations": {}}
        for name, made in copies.items():
            pert = {oid: values[p.id] for oid, p in made.items() if p.id in values}
            entry["perturbations"][name] = shift_stats(orig, pert, EXPECTED[name], cfg.tol, groups)
        entry["padding"] = _padding(copies.get("pad", {}), orig, values, turns, cfg, groups)
        report["scorers"].append(entry)
    return report


def _labels(scorers: Sequence[Any]) -> list[str]:
    names = [s.name for s in scorers]
    return [n if names.count(n) == 1 else f"{n}#{i + 1}" for i, n in enumerate(names)]


def _padding(padded: dict[str, Trajectory], orig: dict[str, float], values: dict[str, float],
             turns: dict[str, list[float | None]], cfg: AuditConfig, groups: dict[str, str]) -> dict | None:
    if not padded:
        return None
    pert = {oid: values[p.id] for oid, p in padded.items() if p.id in values}
    score = shift_stats(orig, pert, "no_rise", cfg.tol, groups)
    out: dict[str, Any] = {"score": score, "returns": None, "neutralised_by": []}
    rises = (score["mean_shift"] or 0.0) > cfg.tol
    ids = [oid for oid, p in padded.items() if oid in turns and p.id in turns]
    if ids:
        sub = {oid: turns[oid] for oid in ids} | {padded[oid].id: turns[padded[oid].id] for oid in ids}
        returns = turn_returns(sub, cfg.clip_eta)
        out["returns"] = {}
        for name, by_id in returns.items():
            o = {oid: by_id[oid] for oid in ids}
            p = {oid: by_id[padded[oid].id] for oid in ids}
            out["returns"][name] = shift_stats(o, p, "no_rise", cfg.tol, groups)
        rises |= (out["returns"]["sum"]["mean_shift"] or 0.0) > cfg.tol
        out["neutralised_by"] = [n for n in ("clip", "delta", "min")
                                 if out["returns"][n]["above"] == 0.0]
    out["flagged"] = bool(rises)
    return out
