"""Rollouts, scoring and evaluation spread over an Executor (threads here, or a Ray cluster).

Each unit is shipped as ids and configs and talks to the shared trace store itself (PostgreSQL
when workers live on other hosts), so the driver never moves trajectories around:

* rollouts: one unit per task group (the group's snapshot and forks stay on one worker's Docker
  engine); a unit is `run_rollouts` on one task with the run's id, so a retried or rerun unit
  resumes from the store instead of writing anything twice;
* scoring: long-lived scorer actors (a model loads once per actor) fed batches of trajectory ids;
  a batch whose actor dies goes to a fresh actor, and trajectories already scored with the same
  scorer config are skipped, so nothing is scored twice;
* SWE-bench evaluation: one unit per instance (see agentrm.evals.swebench).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import asdict
from typing import Any

from agentrm.executors import Executor, WorkFailure, connect_ray, portable
from agentrm.types import ExitStatus, Task

log = logging.getLogger("agentrm.distributed")

ROLLOUT_UNIT = "agentrm.distributed:rollout_group_unit"


# ----------------------------------------------------------------------------- rollouts
def rollout_group_unit(db_url: str, run_id: str, task: dict[str, Any], policy_spec: str | None,
                       group_size: int, limits: dict[str, Any],
                       sandbox: dict[str, Any] | None = None) -> dict[str, Any]:
    """All rollouts of one task group, run where this unit lands (a Ray worker or a thread)."""
    from agentrm.rollout.loop import Limits
    from agentrm.rollout.runner import run_rollouts
    from agentrm.sandboxes import SandboxConfig
    from agentrm.tasks import task_from_dict
    from agentrm.traces import open_store

    store = open_store(db_url)
    summary = run_rollouts(
        [task_from_dict(task, "<shipped task>", None)], policy_spec, store, run_id=run_id,
        group_size=group_size, limits=Limits(**limits),
        sandbox_config=SandboxConfig(**sandbox) if sandbox else None,
    )
    return {"trajectories": summary.trajectories, "skipped": summary.skipped}


def run_rollouts_on(executor: Executor, tasks: Sequence[Task], policy_spec: str | None,
                    db_url: str, *, run_id: str | None = None, group_size: int = 1,
                    max_turns: int = 20, limits: Any = None, sandbox: Any = None,
                    on_group: Callable[[int, Any], None] | None = None) -> dict[str, Any]:
    """Run every task group as one unit on `executor`; returns {run_id, trajectories, failed}."""
    from agentrm.rollout.loop import Limits
    from agentrm.rollout.runner import trajectory_id
    from agentrm.traces import open_store

    db_url, policy_spec = portable(db_url), portable(policy_spec)
    store = open_store(db_url)
    run_id = store.begin_run({"executor": executor.name, "policy": policy_spec,
                              "group_size": group_size, "limits": asdict(limits or Limits(max_turns=max_turns)),
                              "tasks": [t.id for t in tasks]}, run_id)
    limits = asdict(limits or Limits(max_turns=max_turns))
    sandbox_dict = asdict(sandbox) if sandbox is not None else None
    payloads = [{"db_url": db_url, "run_id": run_id, "task": _task_dict(t),
                 "policy_spec": policy_spec, "group_size": group_size, "limits": limits,
                 "sandbox": sandbox_dict} for t in tasks]
    results = executor.map(ROLLOUT_UNIT, payloads, on_result=on_group)
    trajectories, skipped, failed = [], [], []
    for task, result in zip(tasks, results, strict=True):
        if isinstance(result, WorkFailure):
            # The worker was lost after every retry: whatever it left running is an
            # infrastructure failure (never a model's zero); a rerun of the run id finishes it.
            failed.append({"task_id": task.id, "error": result.error})
            for k in range(group_size):
                _close_as_crashed(store, trajectory_id(run_id, task.id, k), result.error)
            continue
        trajectories.extend(result["trajectories"])
        skipped.extend(result["skipped"])
    store.end_run(run_id, "finished" if not failed else "incomplete")
    return {"run_id": run_id, "trajectories": trajectories, "skipped": skipped, "failed": failed}


def _task_dict(task: Task) -> dict[str, Any]:
    return {k: v for k, v in asdict(task).items() if v not in (None, [], {})}


def _close_as_crashed(store, traj_id: str, error: str) -> None:
    from agentrm.errors import NotFoundError

    try:
        traj = store.get_trajectory(traj_id)
    except NotFoundError:
        return
    if traj.exit_status is ExitStatus.RUNNING:
        store.end_trajectory(traj_id, ExitStatus.CRASHED, None)


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
        except ray.exceptions.RayActorError as exc:
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
        ray.kill(actor, no_restart=True)
    return {"scores_written": written, "batches": len(batches), "failed": failed,
            "actor_restarts": restarts}
