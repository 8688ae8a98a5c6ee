"""run: the one rollout driver — group rollouts of many tasks, concurrently, resumable.

Used by `agentrm run`, SWE-bench agent mode, the judge verifier, progress branches and the
executors (a Ray unit is `run` on one task group). Groups and ids: see rollout/group.py
(group_id RUN/TASK, trajectory_id RUN/TASK/K).

Resume rule (the only one): calling `run` again with a run id skips every trajectory that
finished (closed by the agent: submitted, turn/token/time limit, format error, imported) and
continues every other one (still running when its process died, or ended by an infrastructure
failure): its recorded turns are replayed into a fresh fork of the group's initial state and
the policy carries on from there; nothing is written twice. `RunOptions(resume=False)` starts
every trajectory afresh instead (for callers that decide about reuse themselves).
"""

from __future__ import annotations

import contextvars
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass, field, is_dataclass
from typing import Any

from agentrm.errors import InputError
from agentrm.protocols import Policy, SandboxFactory
from agentrm.rollout.events import Event, RunPlanned, TrajectorySkipped
from agentrm.rollout.group import EventStore, Finalize, Group, Member, run_member, trajectory_id
from agentrm.rollout.loop import Limits
from agentrm.tasks import prepare
from agentrm.types import ExitStatus, Task, Trajectory

log = logging.getLogger("agentrm.rollout.run")

# Closed by the agent: a rerun keeps them. Infrastructure failures and RUNNING are continued.
FINAL = frozenset({ExitStatus.SUBMITTED, ExitStatus.TURN_LIMIT, ExitStatus.TOKEN_LIMIT,
                   ExitStatus.TIME_LIMIT, ExitStatus.FORMAT_ERROR, ExitStatus.IMPORTED})


@dataclass
class RunOptions:
    """How a run executes (what it runs is the tasks, the policy and the group size)."""

    limits: Limits = field(default_factory=Limits)
    sandbox: Any = None  # a SandboxConfig for every task (image and network come from the task)
    concurrency: int = 1  # trajectories at a time in this process
    resume: bool = True  # False: reset what is stored under each trajectory id and start afresh
    kind: str = "run"  # the run's kind in the store ("run", "judge", ...)
    end_run: bool = True  # False: the caller owns the run (marks it finished itself)
    wait: bool = False  # another live driver holds the run id: wait for it (else RunBusy)
    lease: bool = True  # False: a unit of a run whose coordinator holds the lease (units.py)


@dataclass
class RunSummary:
    run_id: str
    trajectories: list[dict[str, Any]] = field(default_factory=list)  # rows of the ones run now
    skipped: list[str] = field(default_factory=list)  # finished before this call
    failed: list[dict[str, Any]] = field(default_factory=list)  # groups lost by an executor
    duration_s: float = 0.0
    results: list[Trajectory] = field(default_factory=list, repr=False)  # in-process runs only

    @property
    def counts(self) -> dict[str, int]:
        return dict(Counter(t["exit_status"] for t in self.trajectories))

    def as_dict(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "trajectories": self.trajectories, "skipped": self.skipped,
                "failed": self.failed, "duration_s": self.duration_s, "counts": self.counts}


def run(tasks: Sequence[Task], policy: str | Policy | None, store: Any, *, group_size: int = 1,
        sandbox_factory: SandboxFactory | None = None, executor: Any = None,
        run_id: str | None = None, options: RunOptions | None = None, store_url: str | None = None,
        finalize: Finalize | None = None, on_event: Callable[[Event], None] | None = None,
        cancel: threading.Event | None = None) -> RunSummary:
    """Run `group_size` rollouts of every task and return what ran.

    `policy`: a Policy or a spec string (executors need the string: workers build their own).
    `store`: the trace store (None: nothing persisted, no resume). `executor`: run each task
    group as one unit on it (agentrm.executors; the workers open `store_url`). `finalize`: runs
    in each member's sandbox after its rollout. `on_event`: typed progress events
    (rollout/events.py), called from worker threads. `cancel`: when set, running trajectories
    close as `crashed` ("interrupted") before their next model call, so a rerun continues them.
    """
    options = options or RunOptions()
    if group_size < 1 or options.concurrency < 1 or options.limits.max_turns < 1:
        raise InputError("--group-size, --concurrency and --max-turns must be at least 1")
    if len({t.id for t in tasks}) != len(tasks):
        raise InputError("task ids must be unique within a run")
    if executor is not None:
        from agentrm.rollout.units import run_on

        return run_on(executor, tasks, policy, store, group_size=group_size, run_id=run_id,
                      options=options, store_url=store_url, on_event=on_event)
    policy = _policy(policy)
    base: Any = options.sandbox
    if base is None:
        from agentrm.sandboxes import SandboxConfig

        base = SandboxConfig()
    config = {"policy": getattr(policy, "name", None), "group_size": group_size,
              "limits": asdict(options.limits), "tasks": [t.id for t in tasks],
              "sandbox": _fields(base)}
    run_id = begin_run(store, config, run_id, options.kind)
    base = base.with_(run_id=run_id)
    groups = [Group(t, prepare.sandbox_config(t, base), group_size, sandbox_factory) for t in tasks]
    if store is not None:
        for task in tasks:
            store.upsert_task(task)
    cancel = cancel or threading.Event()
    with run_lease(store if options.lease else None, run_id, options.wait, cancel):
        try:
            return run_groups(groups, policy, store, run_id=run_id, options=options,
                              finalize=finalize, on_event=on_event, cancel=cancel)
        finally:  # only the lease's holder: a refused driver must not touch the live one's snapshots
            if group_size > 1:
                _prune_snapshots(run_id)


def run_groups(groups: Sequence[Group], policy: Policy, store: Any, *, run_id: str,
               options: RunOptions | None = None, finalize: Finalize | None = None,
               on_event: Callable[[Event], None] | None = None,
               cancel: threading.Event | None = None) -> RunSummary:
    """Run the members of prepared groups (the run is begun); ends the run in the store."""
    options = options or RunOptions()
    emit = on_event or (lambda event: None)
    summary, started = RunSummary(run_id), time.monotonic()
    members = plan(groups, store, run_id, options.resume, summary, emit)
    emit(RunPlanned(run_id, len(members) + len(summary.skipped), len(summary.skipped)))
    cancel = cancel or threading.Event()
    sink = EventStore(store, emit) if store is not None else None
    results: list[Trajectory] = []

    def work(member: Member) -> None:
        if not cancel.is_set():
            results.append(run_member(member, policy, sink, options.limits, run_id, emit, cancel,
                                      finalize))

    from agentrm import telemetry

    with telemetry.span("agentrm.run", **{"agentrm.run.id": run_id, "agentrm.run.trajectories": len(members)}), \
            ThreadPoolExecutor(max_workers=options.concurrency, thread_name_prefix="rollout") as pool:
        # each worker runs in a copy of this context, so its trajectory span is the run's child
        futures = [pool.submit(contextvars.copy_context().run, work, m) for m in members]
        try:
            while futures and not all(f.done() for f in futures):
                wait(futures, timeout=0.5)
        except KeyboardInterrupt:
            cancel.set()  # running trajectories close as crashed ("interrupted"); rerun resumes
            wait(futures)
            if store is not None and options.end_run:
                store.end_run(run_id, "interrupted")
            raise
    for f in futures:
        f.result()  # surface a bug in the driver itself
    if store is not None and options.end_run:
        store.end_run(run_id, "finished" if not cancel.is_set() else "interrupted")
    summary.results = sorted(results, key=lambda t: t.id)
    summary.trajectories = [row(t) for t in summary.results]
    summary.duration_s = time.monotonic() - started
    return summary


def plan(groups: Sequence[Group], store: Any, run_id: str, resume: bool, summary: RunSummary,
         emit: Callable[[Event], None]) -> list[Member]:
    """The members to run now, by the resume rule; finished ones go to `summary.skipped`."""
    ids = [(g, k, trajectory_id(run_id, g.task.id, k)) for g in groups for k in range(g.size)]
    previous = {t.id: t for t in store.iter_trajectories(ids=[i[2] for i in ids])} if store is not None else {}
    members = []
    for group, k, tid in ids:
        old = previous.get(tid)
        if old is not None and not resume and store is not None:
            store.reset_trajectory(tid)
            old = None
        if old is not None and old.exit_status in FINAL:
            summary.skipped.append(tid)
            emit(TrajectorySkipped(tid, group.task.id, old.exit_status.value, len(old.turns)))
            continue
        members.append(Member(group, k, tid, list(old.turns) if old else []))
    return members


def run_lease(store: Any, run_id: str, wait: bool, lost: threading.Event | None = None):
    """The run's lease (agentrm.rollout.lease) while a store persists it; losing it cancels."""
    import contextlib

    if store is None or not hasattr(store, "take_lease"):
        return contextlib.nullcontext()
    from agentrm.rollout.lease import hold_run

    return hold_run(store, run_id, wait=wait, lost=lost)


def begin_run(store: Any, config: dict[str, Any], run_id: str | None, kind: str = "run") -> str:
    if store is None:
        import uuid

        return run_id or uuid.uuid4().hex[:12]
    return store.begin_run(config, run_id, kind=kind)


def row(t: Trajectory) -> dict[str, Any]:
    """A trajectory as one JSON-able summary row."""
    return {"id": t.id, "task_id": t.task_id, "group_id": t.group_id,
            "exit_status": t.exit_status.value, "turns": len(t.turns), "reward": t.reward,
            "invalid_turns": sum(not turn.valid for turn in t.turns),
            "error": t.metadata.get("error")}


def _fields(config: Any) -> dict[str, Any]:
    return asdict(config) if is_dataclass(config) and not isinstance(config, type) else {}


def _policy(policy: str | Policy | None) -> Policy:
    if policy is None or isinstance(policy, str):
        from agentrm.rollout.policies import make_policy

        return make_policy(policy)
    return policy


def _prune_snapshots(run_id: str) -> None:
    """Group snapshots are only needed while their forks start; a rerun sets up again."""
    try:
        from agentrm.sandboxes.admin import prune_images

        prune_images(run_id=run_id)
    except Exception:  # noqa: BLE001 - housekeeping must not fail a finished run
        log.warning("could not remove the snapshots of run %s", run_id, exc_info=True)
