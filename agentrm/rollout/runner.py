"""run_rollouts: group rollouts of many tasks, concurrently, resumable.

A group = `group_size` rollouts of one task from one initial state: the task's setup runs once in
a fresh sandbox, which is snapshotted and forked once per rollout, so every member starts from
byte-identical files (GiGPO's anchor states rely on it). Ids are deterministic
(`RUN/TASK/K`), so rerunning a run id skips what finished and continues what did not: the
recorded turns of an unfinished (or infrastructure-failed) trajectory are replayed into a fresh
fork and the policy carries on from there; nothing is written twice.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass, field
from typing import Any

from agentrm.errors import InputError
from agentrm.protocols import Policy
from agentrm.rollout.loop import Limits, run_trajectory
from agentrm.types import ExitStatus, Task, Trajectory

log = logging.getLogger("agentrm.rollout.runner")
Event = dict[str, Any]
# Closed by the agent: a rerun keeps them. Infrastructure failures and RUNNING are retried.
FINAL = {ExitStatus.SUBMITTED, ExitStatus.TURN_LIMIT, ExitStatus.TOKEN_LIMIT,
         ExitStatus.TIME_LIMIT, ExitStatus.FORMAT_ERROR, ExitStatus.IMPORTED}


@dataclass
class RunSummary:
    run_id: str
    trajectories: list[dict[str, Any]] = field(default_factory=list)  # the ones run now
    skipped: list[str] = field(default_factory=list)  # finished before this call
    duration_s: float = 0.0

    @property
    def counts(self) -> dict[str, int]:
        return dict(Counter(t["exit_status"] for t in self.trajectories))


def trajectory_id(run_id: str, task_id: str, k: int) -> str:
    return f"{run_id}/{task_id}/{k}"


class _Group:
    """One task's initial state, set up once and snapshotted for its forks (lazily, by the
    first member to start)."""

    def __init__(self, task: Task, config: Any, size: int):
        self.task, self.config, self.size = task, config, size
        self.lock = threading.Lock()
        self.ref: str | None = None
        self.error: str | None = None

    def sandbox(self):
        from agentrm.sandboxes import DockerSandbox, fork

        if self.size == 1:  # nothing to share: set up in place, no snapshot
            sb = DockerSandbox(self.config)
            sb.__enter__()
            try:
                self._setup(sb)
            except BaseException:
                sb.close()
                raise
            return sb
        with self.lock:
            if self.error:
                raise _SetupFailed(self.error)
            if self.ref is None:
                try:
                    with DockerSandbox(self.config) as sb:
                        self._setup(sb)
                        self.ref = sb.snapshot()
                except Exception as exc:
                    self.error = f"{type(exc).__name__}: {exc}"
                    raise
        sb = fork(self.ref, 1, self.config)[0]
        sb.__enter__()
        return sb

    def _setup(self, sb) -> None:
        # Each command in its own process, so the agent's shell starts untouched in the workdir.
        for cmd in self.task.setup:
            r = sb.exec(cmd, timeout=300, stateless=True)
            if not r.ok:
                raise _SetupFailed(f"task {self.task.id}: setup command failed (exit "
                                   f"{r.exit_code}): {cmd[:80]!r}: {(r.stderr or r.stdout)[-300:]}")


class _SetupFailed(Exception):
    pass


class _EventStore:
    """The store, reporting each appended turn to the live display."""

    def __init__(self, store, emit: Callable[[Event], None]):
        self._store, self._emit = store, emit

    def append_turn(self, traj_id, turn):
        self._store.append_turn(traj_id, turn)
        self._emit({"type": "turn", "trajectory_id": traj_id, "turn": turn.index + 1,
                    "valid": turn.valid})

    def __getattr__(self, name):
        return getattr(self._store, name)


def run_rollouts(tasks: Sequence[Task], policy_spec: str | Policy | None, store, *,
                 run_id: str | None = None, group_size: int = 1, max_turns: int = 20,
                 concurrency: int = 1, limits: Limits | None = None, sandbox_config: Any = None,
                 on_event: Callable[[Event], None] | None = None,
                 cancel: threading.Event | None = None) -> RunSummary:
    """Run `group_size` rollouts of every task with at most `concurrency` at a time."""
    from agentrm.rollout.policies import make_policy
    from agentrm.sandboxes import SandboxConfig

    if group_size < 1 or concurrency < 1 or max_turns < 1:
        raise InputError("--group-size, --concurrency and --max-turns must be at least 1")
    if len({t.id for t in tasks}) != len(tasks):
        raise InputError("task ids must be unique within a run")
    limits = limits or Limits(max_turns=max_turns)
    policy = policy_spec if not isinstance(policy_spec, (str, type(None))) else make_policy(policy_spec)
    base_cfg = sandbox_config or SandboxConfig()
    emit = on_event or (lambda event: None)
    config = {"policy": getattr(policy, "name", str(policy_spec)), "group_size": group_size,
              "limits": asdict(limits), "tasks": [t.id for t in tasks],
              "sandbox": asdict(base_cfg) if hasattr(base_cfg, "__dataclass_fields__") else {}}
    run_id = store.begin_run(config, run_id)
    base_cfg = base_cfg.with_(run_id=run_id) if hasattr(base_cfg, "with_") else base_cfg
    summary, started = RunSummary(run_id), time.monotonic()
    previous = {t.id: t for t in store.iter_trajectories(run_id=run_id)}
    jobs = []
    for task in tasks:
        store.upsert_task(task)
        cfg = base_cfg.with_(image=task.image or base_cfg.image, network=task.network)
        group = _Group(task, cfg, group_size)
        for k in range(group_size):
            tid = trajectory_id(run_id, task.id, k)
            old = previous.get(tid)
            if old is not None and old.exit_status in FINAL:
                summary.skipped.append(tid)
                emit({"type": "skip", "trajectory_id": tid, "task_id": task.id,
                      "status": old.exit_status.value, "turns": len(old.turns)})
                continue
            jobs.append((group, k, tid, old.turns if old else []))
    emit({"type": "plan", "run_id": run_id, "total": len(jobs) + len(summary.skipped),
          "skipped": len(summary.skipped)})
    cancel = cancel or threading.Event()
    events = _EventStore(store, emit)
    results: list[Trajectory] = []

    def work(group: _Group, k: int, tid: str, replay) -> None:
        if cancel.is_set():
            return
        emit({"type": "start", "trajectory_id": tid, "task_id": group.task.id, "resumed": bool(replay)})
        traj = _one(group, policy, events, limits, run_id, tid, replay, cancel)
        results.append(traj)
        emit({"type": "end", "trajectory_id": tid, "task_id": group.task.id,
              "status": traj.exit_status.value, "turns": len(traj.turns), "reward": traj.reward,
              "error": traj.metadata.get("error")})

    with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="rollout") as pool:
        futures = [pool.submit(work, *job) for job in jobs]
        try:
            while futures and not all(f.done() for f in futures):
                wait(futures, timeout=0.5)
        except KeyboardInterrupt:
            cancel.set()  # running trajectories close as crashed ("interrupted"); rerun resumes
            wait(futures)
            store.end_run(run_id, "interrupted")
            raise
    for f in futures:
        f.result()  # surface a bug in the runner itself
    _prune_snapshots(run_id)
    store.end_run(run_id, "finished" if not cancel.is_set() else "interrupted")
    summary.trajectories = [_row(t) for t in sorted(results, key=lambda t: t.id)]
    summary.duration_s = time.monotonic() - started
    return summary


def _one(group: _Group, policy, store, limits, run_id, tid, replay, cancel) -> Trajectory:
    """One trajectory: a sandbox from the group, the loop, and a closed status whatever fails."""
    task = group.task
    try:
        sandbox = group.sandbox()
    except Exception as exc:  # noqa: BLE001 - no sandbox: an infrastructure failure, recorded
        traj = Trajectory(id=tid, task_id=task.id, group_id=f"{run_id}/{task.id}", answer=task.answer,
                          policy=getattr(policy, "name", None), run_id=run_id,
                          exit_status=ExitStatus.SANDBOX_ERROR,
                          metadata={"error": f"{type(exc).__name__}: {exc}"})
        store.begin_trajectory(traj)
        store.end_trajectory(tid, ExitStatus.SANDBOX_ERROR, None)
        return traj
    try:
        return run_trajectory(task, policy, sandbox, store, limits, group_id=f"{run_id}/{task.id}",
                              trajectory_id=tid, run_id=run_id, replay=replay, cancel=cancel,
                              workdir=getattr(group.config, "workdir", "/workspace"))
    finally:
        try:
            sandbox.close()
        except Exception:  # noqa: BLE001
            log.warning("could not remove the sandbox of %s", tid, exc_info=True)


def _prune_snapshots(run_id: str) -> None:
    """Group snapshots are only needed while their forks start; a rerun sets up again."""
    try:
        from agentrm.sandboxes.admin import prune_images

        prune_images(run_id=run_id)
    except Exception:  # noqa: BLE001 - housekeeping must not fail a finished run
        log.warning("could not remove the snapshots of run %s", run_id, exc_info=True)


def _row(t: Trajectory) -> dict[str, Any]:
    return {"id": t.id, "task_id": t.task_id, "group_id": t.group_id,
            "exit_status": t.exit_status.value, "turns": len(t.turns), "reward": t.reward,
            "invalid_turns": sum(not turn.valid for turn in t.turns),
            "error": t.metadata.get("error")}
