"""A group: `size` rollouts of one task from one initial state, and one member's rollout.

Ids (the one convention, everywhere a rollout is driven):
    group_id       = RUN/TASK      (the rollouts GRPO/GiGPO compare with each other)
    trajectory_id  = RUN/TASK/K    (K = 0..size-1; deterministic, so a rerun of RUN resumes)

The initial state is built once: the task's setup runs in a fresh sandbox (tasks.prepare), which
is snapshotted and forked once per member, so every member starts from byte-identical files
(GiGPO's anchor states rely on it). A group of one, or of a task without setup commands (its
image is the initial state), starts from fresh sandboxes without a snapshot. A group may
instead start from a given snapshot and conversation (`Start`: progress branches).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from agentrm.protocols import Policy, Sandbox, SandboxFactory
from agentrm.rollout.events import Event, GroupFailed, TrajectoryEnded, TrajectoryStarted, TurnDone
from agentrm.rollout.loop import Limits, run_trajectory
from agentrm.tasks import prepare
from agentrm.types import ExitStatus, Message, Task, Trajectory, Turn

log = logging.getLogger("agentrm.rollout.group")

# What runs in a member's sandbox after its rollout, before the sandbox is removed (SWE-bench
# agent mode takes the `git diff` there); it may add to the trajectory's metadata.
Finalize = Callable[[Trajectory, Sandbox], None]


def group_id(run_id: str, task_id: str) -> str:
    return f"{run_id}/{task_id}"


def trajectory_id(run_id: str, task_id: str, k: int) -> str:
    return f"{run_id}/{task_id}/{k}"


@dataclass(frozen=True)
class Start:
    """An initial state that is not the task's own: a snapshot already holding the state, and
    the conversation that led there (the policy continues it)."""

    snapshot: str
    messages: list[Message]


class Group:
    """One task's initial state, built lazily by the first member to start, then shared."""

    def __init__(self, task: Task, config: Any, size: int, factory: SandboxFactory | None = None,
                 start: Start | None = None):
        self.task, self.config, self.size, self.start = task, config, size, start
        self.factory = factory or prepare.default_factory
        self.lock = threading.Lock()
        self.ref: str | None = start.snapshot if start else None
        self.error: str | None = None
        self.reported = False  # GroupFailed emitted once

    def sandbox(self) -> Sandbox:
        if self.ref is None and (self.size == 1 or not self.task.setup):
            # nothing to share (one member), or the image is the initial state (no setup)
            return prepare.fresh(self.task, self.config, self.factory)
        with self.lock:
            if self.error:
                raise prepare.SetupFailed(self.error)
            if self.ref is None:
                try:
                    with prepare.fresh(self.task, self.config, self.factory) as sandbox:
                        self.ref = sandbox.snapshot()
                except Exception as exc:
                    self.error = f"{type(exc).__name__}: {exc}"
                    raise
        return self.factory(self.config.with_(image=self.ref))

    @property
    def workdir(self) -> str:
        return getattr(self.config, "workdir", "/workspace")


@dataclass
class Member:
    group: Group
    k: int
    trajectory_id: str
    replay: list[Turn] = field(default_factory=list)  # recorded turns of an unfinished attempt


class EventStore:
    """The store, reporting each appended turn as a TurnDone event."""

    def __init__(self, store: Any, emit: Callable[[Event], None]):
        self._store, self._emit = store, emit

    def append_turn(self, traj_id: str, turn: Turn) -> None:
        self._store.append_turn(traj_id, turn)
        self._emit(TurnDone(traj_id, turn.index + 1, turn.valid))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


def run_member(member: Member, policy: Policy, store: Any, limits: Limits, run_id: str,
               emit: Callable[[Event], None], cancel: threading.Event | None = None,
               finalize: Finalize | None = None) -> Trajectory:
    """One trajectory: a sandbox from the group, the loop, and a closed status whatever fails."""
    group, tid = member.group, member.trajectory_id
    task = group.task
    emit(TrajectoryStarted(tid, task.id, len(member.replay)))
    try:
        sandbox = group.sandbox()
    except Exception as exc:  # noqa: BLE001 - no sandbox: an infrastructure failure, recorded
        traj = _no_sandbox(member, policy, store, run_id, f"{type(exc).__name__}: {exc}")
        with group.lock:
            first, group.reported = not group.reported, True
        if first:
            emit(GroupFailed(task.id, traj.metadata["error"]))
        return _ended(traj, emit)
    from agentrm import telemetry

    try:
        with telemetry.span("agentrm.trajectory", **{"agentrm.trajectory.id": tid, "agentrm.task.id": task.id,
                                                     "agentrm.group.id": group_id(run_id, task.id)}) as span:
            traj = run_trajectory(task, policy, sandbox, store, limits, group_id=group_id(run_id, task.id),
                                  trajectory_id=tid, run_id=run_id, replay=member.replay, cancel=cancel,
                                  workdir=group.workdir,
                                  messages=group.start.messages if group.start else None)
            if finalize is not None:
                _finalize(finalize, traj, sandbox)
            span.set_attribute("agentrm.exit_status", traj.exit_status.value)
            if traj.reward is not None:
                span.set_attribute("agentrm.reward", traj.reward)
    finally:
        try:
            sandbox.close()
        except Exception:  # noqa: BLE001
            log.warning("could not remove the sandbox of %s", tid, exc_info=True)
    return _ended(traj, emit)


def _finalize(finalize: Finalize, traj: Trajectory, sandbox: Sandbox) -> None:
    try:
        finalize(traj, sandbox)
    except Exception as exc:  # noqa: BLE001 - reported on the trajectory, the run goes on
        log.warning("finalizing %s failed: %s", traj.id, exc)
        traj.metadata["finalize_error"] = f"{type(exc).__name__}: {exc}"


def _no_sandbox(member: Member, policy: Policy, store: Any, run_id: str, error: str) -> Trajectory:
    task = member.group.task
    traj = Trajectory(id=member.trajectory_id, task_id=task.id, group_id=group_id(run_id, task.id),
                      answer=task.answer, policy=getattr(policy, "name", None), run_id=run_id,
                      exit_status=ExitStatus.SANDBOX_ERROR, metadata={"error": error})
    if store is not None:
        store.begin_trajectory(traj)
        store.end_trajectory(traj.id, ExitStatus.SANDBOX_ERROR, None)
    return traj


def _ended(traj: Trajectory, emit: Callable[[Event], None]) -> Trajectory:
    emit(TrajectoryEnded(traj.id, traj.task_id, traj.exit_status.value, len(traj.turns), traj.reward,
                         traj.metadata.get("error")))
    return traj
