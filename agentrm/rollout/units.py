"""The driver on an executor (threads or a Ray cluster): one unit per task group.

A unit is shipped as ids and configs — the store URL, the run id, the task, the policy spec —
and is `run` on that one task where it lands: the group's snapshot and forks stay on one
worker's Docker engine, and a retried or rerun unit resumes from the shared store by the
driver's own rule instead of writing anything twice. Events from a unit arrive when it ends.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from typing import Any

from agentrm.errors import InputError, NotFoundError
from agentrm.rollout.events import Event, GroupFailed, RunPlanned, TrajectoryEnded
from agentrm.rollout.group import trajectory_id
from agentrm.rollout.loop import Limits
from agentrm.types import ExitStatus, Task

GROUP_UNIT = "agentrm.rollout.units:group_unit"


def group_unit(db_url: str, run_id: str, task: dict[str, Any], policy_spec: str | None,
               group_size: int, limits: dict[str, Any], sandbox: dict[str, Any] | None = None,
               resume: bool = True) -> dict[str, Any]:
    """All rollouts of one task group, run where this unit lands (a Ray worker or a thread)."""
    from agentrm.rollout.run import RunOptions, run
    from agentrm.sandboxes import SandboxConfig
    from agentrm.tasks import task_from_dict
    from agentrm.traces import open_store

    store = open_store(db_url)
    options = RunOptions(limits=Limits(**limits), resume=resume, lease=False,  # the coordinator's
                         sandbox=SandboxConfig(**sandbox) if sandbox else None)
    summary = run([task_from_dict(task, "<shipped task>", None)], policy_spec, store,
                  group_size=group_size, run_id=run_id, options=options)
    return {"trajectories": summary.trajectories, "skipped": summary.skipped}


def run_on(executor: Any, tasks: Sequence[Task], policy: Any, store: Any, *, group_size: int,
           run_id: str | None, options: Any, store_url: str | None,
           on_event: Callable[[Event], None] | None = None) -> Any:
    """`run` with every task group as one unit on `executor` (agentrm.executors)."""
    from agentrm.executors import WorkFailure, portable
    from agentrm.rollout.run import begin_run, run_lease

    if policy is not None and not isinstance(policy, str):
        raise InputError("an executor needs a policy spec (a string): its workers build the policy")
    if store is None:
        raise InputError("an executor needs a trace store: its units write there and resume from it")
    url = portable(store_url or getattr(store, "url", None))
    if not url or "***" in url:
        raise InputError("an executor needs the store's URL (store_url): its workers open it")
    emit = on_event or (lambda event: None)
    policy = portable(policy)
    limits = asdict(options.limits)
    run_id = begin_run(store, {"executor": executor.name, "policy": policy, "group_size": group_size,
                               "limits": limits, "tasks": [t.id for t in tasks]}, run_id, options.kind)
    sandbox = asdict(options.sandbox) if options.sandbox is not None else None
    payloads = [{"db_url": url, "run_id": run_id, "task": _task_dict(t), "policy_spec": policy,
                 "group_size": group_size, "limits": limits, "sandbox": sandbox,
                 "resume": options.resume} for t in tasks]
    emit(RunPlanned(run_id, len(tasks) * group_size, 0))

    def done(i: int, result: Any) -> None:
        if isinstance(result, WorkFailure):
            emit(GroupFailed(tasks[i].id, result.error))
            return
        for r in result["trajectories"]:
            emit(TrajectoryEnded(r["id"], r["task_id"], r["exit_status"], r["turns"], r["reward"],
                                 r.get("error")))

    with run_lease(store, run_id, options.wait):
        summary = _collect(executor, tasks, payloads, done, store, run_id, group_size)
    store.end_run(run_id, "finished" if not summary.failed else "incomplete")
    return summary


def _collect(executor: Any, tasks: Sequence[Task], payloads: list[dict[str, Any]], done: Any,
             store: Any, run_id: str, group_size: int) -> Any:
    from agentrm.executors import WorkFailure
    from agentrm.rollout.run import RunSummary

    summary, started = RunSummary(run_id), time.monotonic()
    for task, result in zip(tasks, executor.map(GROUP_UNIT, payloads, on_result=done), strict=True):
        if isinstance(result, WorkFailure):
            # The worker was lost after every retry: whatever it left running is an
            # infrastructure failure (never a model's zero); a rerun of the run id finishes it.
            summary.failed.append({"task_id": task.id, "error": result.error})
            for k in range(group_size):
                _close_as_crashed(store, trajectory_id(run_id, task.id, k))
            continue
        summary.trajectories.extend(result["trajectories"])
        summary.skipped.extend(result["skipped"])
    summary.duration_s = time.monotonic() - started
    return summary


def _task_dict(task: Task) -> dict[str, Any]:
    return {k: v for k, v in asdict(task).items() if v not in (None, [], {})}


def _close_as_crashed(store: Any, traj_id: str) -> None:
    try:
        traj = store.get_trajectory(traj_id)
    except NotFoundError:
        return
    if traj.exit_status is ExitStatus.RUNNING:
        store.end_trajectory(traj_id, ExitStatus.CRASHED, None)
