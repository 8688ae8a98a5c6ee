"""Run scorers over trajectories in batches and (optionally) store the rows.

The one entry point for every kind of scorer (PRMs, verifiers, turn rewards): it hands each
scorer batches of trajectories, writes each batch's rows at once (so an interrupted run keeps
what it finished), and reports progress. Writes are idempotent: the store upserts on
(scorer, config hash, trajectory, level, turn), so scoring a run twice adds no rows.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from itertools import islice
from typing import Any

from agentrm.errors import AgentrmError
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
