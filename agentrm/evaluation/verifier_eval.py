"""`agentrm eval verifier`: every scorer's quality against verified labels, one report dict.

Inputs are stored trajectories and their Score rows; labels are outcomes verified by execution
(the stored reward or a verifier's stored verdict) or ProcessBench-shaped step labels. The
report holds, per scorer: ROC-AUC, ECE with its reliability bins, best-of-N vs the oracle for
N = 1..16 per group, and (step labels) first-error F1; plus the hybrid ranker side by side.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from agentrm.errors import InputError
from agentrm.evaluation import metrics
from agentrm.evaluation.data import (
    outcome_labels,
    read_step_labels,
    select_scorer,
    trajectory_values,
    turn_values,
)
from agentrm.evaluation.hybrid import cross_fit
from agentrm.types import Score, Trajectory


@dataclass
class EvalConfig:
    scorers: list[str]
    labels: str = "reward"  # reward | SCORER | path to a step-label JSONL file
    threshold: float = 1.0  # outcome ≥ threshold is a success
    step_threshold: float = 0.5  # a step score below this predicts "wrong step"
    ns: list[int] = field(default_factory=lambda: list(range(1, 17)))
    bins: int = 10
    group_by: str = "group"  # group (group_id) | task (task_id)
    hybrid: str | None = "learn"  # learn | a --combine SPEC | None
    folds: int = 2
    l2: float = 1.0  # ridge of the pairwise fit: groups are few, scorers collinear
    aggregate: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.scorers:
            raise InputError("--scorer: give at least one scorer to evaluate")
        if self.group_by not in ("group", "task"):
            raise InputError(f"--group-by {self.group_by!r}: choose group or task")
        if self.folds < 2:
            raise InputError(f"--folds {self.folds}: need at least 2 to hold groups out")


def _labels(trajs: Sequence[Trajectory], scores: Sequence[Score], cfg: EvalConfig
            ) -> tuple[dict[str, int], dict[str, int] | None, str]:
    path = Path(cfg.labels)
    if cfg.labels != "reward" and (path.suffix in (".jsonl", ".json") or path.is_file()):
        steps = read_step_labels(path)
        known = {t.id for t in trajs}
        steps = {k: v for k, v in steps.items() if k in known}
        if not steps:
            raise InputError("no labelled trajectory is in the selected run (--labels ids)", path=str(path))
        return {k: int(v == -1) for k, v in steps.items()}, steps, "steps"
    return outcome_labels(trajs, cfg.labels, scores, cfg.threshold), None, "outcome"


def _is_probability(values: np.ndarray) -> bool:
    return bool(values.size) and float(values.min()) >= 0.0 and float(values.max()) <= 1.0


def scorer_metrics(values: dict[str, float], labels: dict[str, int], groups: dict[str, str],
                   cfg: EvalConfig) -> dict[str, Any]:
    ids = [t for t in labels if t in values]
    s = np.array([values[t] for t in ids])
    y = np.array([labels[t] for t in ids], dtype=float)
    out: dict[str, Any] = {"n": len(ids), "positives": int(y.sum()), "auc": None, "group_auc": None,
                           "ece": None, "reliability": None}
    if not ids:
        return out | {"best_of_n": []}
    out["auc"] = metrics.roc_auc(s, y)
    out["group_auc"] = metrics.group_auc(s, y, [groups[t] for t in ids])
    if _is_probability(s):
        out["reliability"] = metrics.reliability(s, y, cfg.bins)
        out["ece"] = metrics.ece(s, y, cfg.bins)
    else:
        out["ece_note"] = "scores are not probabilities in [0, 1]"
    out["best_of_n"] = metrics.best_of_n(_grouped(ids, s, y, groups), cfg.ns)
    return out


def _grouped(ids: Sequence[str], s: np.ndarray, y: np.ndarray, groups: dict[str, str]) -> list:
    members: dict[str, list[int]] = defaultdict(list)
    for i, tid in enumerate(ids):
        members[groups[tid]].append(i)
    return [(s[idx], y[idx]) for idx in members.values()]


def _first_error(scores: Sequence[Score], name: str, steps: dict[str, int], cfg: EvalConfig) -> dict | None:
    turns = turn_values(scores, name)
    ids = [t for t in steps if t in turns]
    if not ids:
        return None
    predicted = [metrics.first_error(turns[t], cfg.step_threshold) for t in ids]
    return metrics.first_error_f1(predicted, [steps[t] for t in ids]) | {"threshold": cfg.step_threshold}


def _combine_module():
    try:
        from agentrm.rewards import combine  # the combine spec's home after the pipeline refactor
    except ImportError:
        from agentrm.verifiers import combine
    return combine


def _hybrid(trajs, scores, per_scorer, labels, groups, cfg) -> dict[str, Any] | None:
    if not cfg.hybrid:
        return None
    common = [t for t in labels if all(t in v for v in per_scorer.values())]
    if not common:
        return {"n": 0, "note": "no labelled trajectory has a score from every scorer"}
    y = np.array([labels[t] for t in common], dtype=float)
    gids = [groups[t] for t in common]
    out: dict[str, Any] = {"n": len(common), "groups": len(set(gids))}
    if cfg.hybrid == "learn":
        x = np.array([[per_scorer[n][t] for n in cfg.scorers] for t in common])
        decision, fold_reports = cross_fit(x, y, gids, cfg.scorers, cfg.folds, cfg.l2, cfg.ns)
        out |= {"kind": "learned", "folds": cfg.folds, "l2": cfg.l2,
                "method": "within-group z-scores; pairwise logistic combination; per fold the "
                          "candidate (each scorer or the combination) with the best training best-of-N",
                "chosen": [f["chosen"] for f in fold_reports], "fold_reports": fold_reports}
        hybrid = dict(zip(common, decision, strict=True))
    else:
        combine = _combine_module()
        chosen = set(common)
        rows = combine.combine_scores(cfg.hybrid, [t for t in trajs if t.id in chosen], scores)
        hybrid = {r.trajectory_id: r.total for r in rows if r.total is not None}
        out |= {"kind": "spec", "spec": cfg.hybrid}
        common = [t for t in common if t in hybrid]
    out["auc"] = metrics.roc_auc([hybrid[t] for t in common], [labels[t] for t in common]) if common else None
    out["group_auc"] = metrics.group_auc([hybrid[t] for t in common], [labels[t] for t in common],
                                         [groups[t] for t in common]) if common else None
    side = {name: metrics.best_of_n(_grouped(common, np.array([per_scorer[name][t] for t in common]),
                                             np.array([labels[t] for t in common], float), groups), cfg.ns)
            for name in cfg.scorers}
    side["hybrid"] = metrics.best_of_n(_grouped(common, np.array([hybrid[t] for t in common]),
                                                np.array([labels[t] for t in common], float), groups), cfg.ns)
    out["best_of_n"] = side
    return out


def evaluate(trajs: Sequence[Trajectory], scores: Sequence[Score], cfg: EvalConfig) -> dict[str, Any]:
    """The whole report (JSON-ready): labels summary, per-scorer metrics, hybrid side by side."""
    labels, steps, kind = _labels(trajs, scores, cfg)
    groups = {t.id: (t.group_id if cfg.group_by == "group" else t.task_id) for t in trajs}
    labels = {k: v for k, v in labels.items() if k in groups}
    if not labels:
        raise InputError(f"--labels {cfg.labels}: no trajectory of the selection has a known label")
    report: dict[str, Any] = {
        "labels": {"source": cfg.labels, "kind": kind, "trajectories": len(labels),
                   "positives": int(sum(labels.values())),
                   "groups": len({groups[t] for t in labels}), "group_by": cfg.group_by},
        "config": {"ns": cfg.ns, "ece_bins": cfg.bins, "ece_binning": "equal-width on [0, 1]",
                   "best_of_n": "exact mean over all N-subsets of a group, ties split uniformly; "
                                "groups smaller than N are skipped for that N",
                   "threshold": cfg.threshold, "step_threshold": cfg.step_threshold},
        "scorers": [],
    }
    per_scorer = {}
    for name in cfg.scorers:
        rows = select_scorer(scores, name)
        base = name.partition("@")[0]
        values = trajectory_values(rows, base, cfg.aggregate.get(base))
        per_scorer[name] = values
        entry = {"name": name} | scorer_metrics(values, labels, groups, cfg)
        if steps is not None:
            entry["first_error"] = _first_error(rows, base, steps, cfg)
        report["scorers"].append(entry)
    report["hybrid"] = _hybrid(trajs, scores, per_scorer, labels, groups, cfg)
    return report
