"""Run scorers over trajectories in batches and (optionally) store the rows.

The one entry point for every kind of scorer (PRMs, verifiers, turn rewards): it hands each
scorer batches of trajectories, writes each batch's rows at once (so an interrupted run keeps
what it finished), and reports progress. Writes are idempotent: the store upserts on
(scorer, config hash, trajectory, level, turn), so scoring a run twice adds no rows.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from itertools import islice
from typing import Any

from agentrm import telemetry
from agentrm.config import option
from agentrm.errors import AgentrmError, InputError
from agentrm.protocols import Scorer, ScoringContext
from agentrm.types import Score, Trajectory

log = logging.getLogger("agentrm.scoring")

Progress = Callable[[int, int | None], None]  # (trajectories done, total or None)


def _batches(items: Iterable[Trajectory], size: int) -> Iterator[list[Trajectory]]:
    it = iter(items)
    while batch := list(islice(it, size)):
        yield batch


def _check(scorer: Any, rows: Sequence[Score], batch: Sequence[Trajectory]) -> None:
    """A scorer must only score what it was given; catching this early keeps the store clean."""
    known = {t.id for t in batch}
    stray = {r.trajectory_id for r in rows} - known
    if stray:
        raise AgentrmError(f"scorer {getattr(scorer, 'name', scorer)!r} returned scores for "
                           f"trajectories it was not given: {sorted(stray)[:3]}")


def score_trajectories(trajectories: Iterable[Trajectory], scorers: Sequence[Scorer],
                       store: Any = None, batch_size: int = 8,
                       on_progress: Progress | None = None,
                       context: ScoringContext | None = None) -> list[Score]:
    """Score every trajectory with every scorer; return all rows (and write them to `store`).

    `batch_size` trajectories are handed to each scorer at a time (a PRM buckets them by length
    inside); `on_progress(done, total)` is called after each batch (total None for iterators).
    """
    if context is None:
        context = ScoringContext(store=store)
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    total = len(trajectories) if isinstance(trajectories, Sequence) else None
    out: list[Score] = []
    done = 0
    for batch in _batches(trajectories, batch_size):
        rows: list[Score] = []
        for scorer in scorers:
            with telemetry.span(f"agentrm.score {scorer.name}", **{"agentrm.scorer": scorer.name,
                                                                   "agentrm.trajectories": len(batch)}):
                got = list(scorer.score(batch, context))
            _check(scorer, got, batch)
            rows.extend(got)
        if store is not None and rows:
            store.write_scores(rows)
        out.extend(rows)
        done += len(batch)
        log.debug("scored %d trajectories (%d rows)", done, len(out))
        if on_progress is not None:
            on_progress(done, total)
    return out


@dataclass
class ScoreConfig:
    """Which scorers, on what, where. The model flags go to each scorer that takes them
    (agentrm.verifiers.registry says which); `-o [SCORER.]KEY=VALUE` passes anything else."""

    run: str | None = option(None, "Score this stored run.")
    scorers: list[str] = option(None, "Scorer name (repeatable).", "--scorer", "-s",
                                factory=lambda: ["prm"])
    model: str | None = option(None, "PRM checkpoint path or id (default: embedded SmolLM2).")
    style: str | None = option(None, "PRM read-out: token-cls | tag | value | judge.")
    template: str | None = option(None, "chat | plain (default per style).")
    separator: str | None = option(None, "Step separator / tag token (one token).")
    good: str | None = option(None, "tag/judge: the 'correct' token.")
    bad: str | None = option(None, "tag/judge: the 'wrong' token.")
    aggregate: str | None = option(None, "min | last | mean | product | minform")
    max_length: int | None = option(None, "Tokens kept (left truncation).")
    batch_size: int = option(8, "Trajectories handed to a scorer at a time.")
    device: str | None = option(None, "cpu | cuda | cuda:N (default: CUDA when present).")
    backend: str | None = option(None, "transformers | vllm")
    options: list[str] = option(None, "[SCORER.]KEY=VALUE for a scorer (repeatable).", "--option",
                                "-o", factory=list)
    executor: str = option("local", "local | ray (scorer actors on a Ray cluster).")
    ray_address: str | None = option(None, "Ray cluster address (default: start a local one).")
    actors: int = option(2, "Ray scorer actors (one model each).")

    def validate(self) -> None:
        if self.batch_size < 1:
            raise InputError(f"--batch-size {self.batch_size}: must be at least 1")
        if self.executor not in ("local", "ray"):
            raise InputError(f"unknown executor {self.executor!r} (--executor): choose local or ray")
        if self.actors < 1:
            raise InputError(f"--actors {self.actors}: must be at least 1")
        if not self.scorers:
            raise InputError("no scorer given (--scorer)")

    def scorer_specs(self) -> list[dict[str, Any]]:
        """[{"name", "options"}] per scorer: its model flags plus its -o options."""
        from agentrm.verifiers.registry import options_for

        self.validate()
        shared = {k: getattr(self, k) for k in ("model", "style", "template", "separator", "good",
                                                "bad", "aggregate", "max_length", "device",
                                                "backend", "batch_size")}
        extra = scorer_options(self.options, self.scorers)
        return [{"name": n, "options": options_for(n, shared) | extra.get(n, {})} for n in self.scorers]


def scorer_options(pairs: Sequence[str], scorers: Sequence[str]) -> dict[str, dict[str, Any]]:
    """`-o key=value` (every scorer) and `-o scorer.key=value` (one scorer)."""
    out: dict[str, dict[str, Any]] = {name: {} for name in scorers}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep or not key:
            raise InputError(f"-o {pair!r}: expected KEY=VALUE or SCORER.KEY=VALUE")
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            value = text
        target, dot, name = key.rpartition(".")
        if dot and target not in out:
            raise InputError(f"-o {pair!r}: {target!r} is not one of the --scorer names")
        for scorer in ([target] if dot else scorers):
            out[scorer][name.replace("-", "_")] = value
    return out


@dataclass
class ScoreResult:
    trajectories: list[Trajectory]
    scores: list[Score]


def build_scorers(config: ScoreConfig) -> list[Scorer]:
    """Every configured scorer, loaded (models read, tokens checked) before any work starts."""
    from agentrm.verifiers.registry import make_scorer

    scorers = [make_scorer(spec["name"], **spec["options"]) for spec in config.scorer_specs()]
    for built in scorers:
        load = getattr(built, "load", None)
        if callable(load):
            load()
    return scorers
