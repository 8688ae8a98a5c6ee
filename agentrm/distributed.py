"""Rollouts, scoring and evaluation spread over an Executor (threads here, or a Ray cluster).

Each unit is shipped as ids and configs and talks to the shared trace store itself (PostgreSQL
when workers live on other hosts), so the driver never moves trajectories around:

* rollouts: the driver itself (`agentrm.rollout.run.run(..., executor=...)`, see
  agentrm/rollout/units.py): one unit per task group, resumed by the driver's rule when retried;
* scoring: long-lived scorer actors (a model loads once per actor) fed batches of trajectory ids;
  a batch whose actor dies goes to a fresh actor, and trajectories already scored with the same
  scorer config are skipped, so nothing is scored twice;
* SWE-bench evaluation: one unit per instance (see agentrm.evals.swebench).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

from agentrm.executors import connect_ray, portable

log = logging.getLogger("agentrm.distributed")


# ----------------------------------------------------------------------------- scoring
class ScorerWorker:
    """Holds loaded scorers (models) for many batches; runs as a Ray actor or in-process."""

    def __init__(self, db_url: str, scorer_specs: list[dict[str, Any]], batch_size: int = 8):
        from agentrm.traces import open_store
        from agentrm.verifiers.registry import make_scorer

        self.store = open_store(db_url)
        self.scorers = [make_scorer(s["name"], **s.get("options", {})) for s in scorer_specs]
        self.batch_size = batch_size

    def pending(self, trajectory_ids: Sequence[str]) -> list[str]:
        """Ids that some scorer has not scored yet with its current config."""
        done: dict[str, set[str]] = {}
        for score in self.store.get_scores(trajectory_ids=list(trajectory_ids)):
            done.setdefault(score.trajectory_id, set()).add(f"{score.scorer}@{score.config_hash}")
        wanted = {f"{s.name}@{s.config_hash()}" if hasattr(s, "config_hash") else s.name
                  for s in self.scorers}
        return [t for t in trajectory_ids if not wanted <= done.get(t, set())]

    def score(self, trajectory_ids: Sequence[str]) -> int:
        from agentrm.scoring import score_trajectories

        todo = self.pending(trajectory_ids)
        if not todo:
            return 0
        trajectories = list(self.store.iter_trajectories(ids=todo))
        scores = score_trajectories(trajectories, self.scorers, store=self.store,
                                    batch_size=self.batch_size)
        return len(scores)


def score_on_ray(trajectory_ids: Sequence[str], db_url: str, scorer_specs: list[dict[str, Any]],
                 *, actors: int = 2, batch_size: int = 8, ray_address: str | None = None,
                 max_attempts: int = 3, on_batch: Callable[[int], None] | None = None) -> dict[str, Any]:
    """Score with `actors` long-lived Ray actors, every one kept busy; survives losing one."""
    ray = connect_ray(ray_address)
    from ray.exceptions import RayActorError

    db_url = portable(db_url)
    remote_cls = ray.remote(num_cpus=1, max_restarts=0)(ScorerWorker)
    ids = list(trajectory_ids)
    batches = [ids[i:i + batch_size] for i in range(0, len(ids), batch_size)]
    queue = [(b, 0) for b in batches]
    pool = [remote_cls.remote(db_url, scorer_specs, batch_size) for _ in range(max(1, actors))]
    in_flight: dict[Any, tuple[Any, list[str], int]] = {}
    written, failed, restarts = 0, [], 0

    def feed(actor) -> None:
        if queue:
            batch, attempt = queue.pop(0)
            in_flight[actor.score.remote(batch)] = (actor, batch, attempt)

    for actor in pool:
        feed(actor)
    while in_flight:
        done, _ = ray.wait(list(in_flight), num_returns=1)
        ref = done[0]
        actor, batch, attempt = in_flight.pop(ref)
        try:
            written += ray.get(ref)
            if on_batch:
                on_batch(len(batch))
        except RayActorError as exc:
            # The actor (or its node) died: a fresh actor takes the batch; the store's
            # keyed writes and `pending` make the retry skip what was already written.
            log.warning("scorer actor lost (%s); retrying its batch", type(exc).__name__)
            restarts += 1
            actor = remote_cls.remote(db_url, scorer_specs, batch_size)
            if attempt + 1 < max_attempts:
                queue.insert(0, (batch, attempt + 1))
            else:
                failed.append({"trajectory_ids": batch, "error": str(exc).splitlines()[0]})
        except Exception as exc:  # noqa: BLE001 - a scorer bug: report this batch, go on
            failed.append({"trajectory_ids": batch, "error": f"{type(exc).__name__}: {exc}"})
        feed(actor)
    for actor in pool:
        ray.kill(actor, no_restart=True)  # pyright: ignore[reportArgumentType]
    return {"scores_written": written, "batches": len(batches), "failed": failed,
            "actor_restarts": restarts}
