"""Re-execution replay: feed the recorded actions to a fresh sandbox and compare observations.

A determinism check before training on a trace: same image,
same task setup, then every recorded tool call, both through agentrm.tasks.prepare (the
runtime's own setup and replay, so a rerun cannot disagree with a resume about a state).
Observations are compared after `normalise_observation_text`, which removes the volatile
fragments (times, temp paths, pids, hex ids, durations) that anchor keys ignore too. The
first call whose normalised observation differs is the divergence; replay stops there,
because later actions were chosen for a state that no longer exists.
"""

from __future__ import annotations

import difflib
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

from agentrm.errors import AgentrmError, InfrastructureError
from agentrm.hashing import normalise_observation_text
from agentrm.protocols import SandboxFactory
from agentrm.replay.view import CallView, build_view, clean_text
from agentrm.tasks import prepare
from agentrm.types import Task, Trajectory

log = logging.getLogger("agentrm.replay.rerun")
DIFF_LINES = 16


@dataclass
class Divergence:
    turn_index: int
    turn_position: int  # 0-based position in the trajectory (turn_index may not start at 0)
    call_position: int
    tool: str
    command: str
    diff: str
    recorded: str
    observed: str


@dataclass
class RerunReport:
    trajectory_id: str
    image: str | None
    turns_total: int
    turns_replayed: int = 0
    calls_compared: int = 0
    calls_unrecorded: int = 0  # recorded trajectory had no observation to compare with
    divergence: Divergence | None = None
    setup_commands: int = 0
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    @property
    def diverged(self) -> bool:
        return self.divergence is not None

    def as_dict(self) -> dict:
        out = asdict(self)
        out["diverged"] = self.diverged
        out["compared_nothing"] = not self.calls_compared
        return out


def short_diff(recorded: str, observed: str, limit: int = DIFF_LINES) -> str:
    lines = list(difflib.unified_diff(recorded.splitlines(), observed.splitlines(),
                                      "recorded", "rerun", n=1, lineterm=""))
    if len(lines) > limit:
        lines = lines[:limit] + [f"… {len(lines) - limit} more diff lines"]
    return "\n".join(lines)


def same_observation(recorded: str, observed: str) -> bool:
    return normalise_observation_text(clean_text(recorded)) == \
        normalise_observation_text(clean_text(observed))


@dataclass
class RerunPlan:
    """Everything needed to rebuild the initial state the trajectory started from."""

    image: str | None
    sandbox: dict  # SandboxConfig fields recorded with the run (limits, workdir, env)
    setup: list[str]
    workdir: str = "/workspace"
    repo_dir: str | None = None
    timeout: float = 60.0
    network: bool = False
    notes: list[str] = field(default_factory=list)


def _recorded_run(store, traj: Trajectory) -> dict:
    if store is None or not traj.run_id:
        return {}
    try:
        config = store.get_run(traj.run_id).get("config") or {}
    except AgentrmError:
        return {}
    return config if isinstance(config, dict) else {}


def _find_task(store, task_id: str) -> Task | None:
    """The recorded task (image, setup) from the store, else a bundled task of the same id."""
    if store is not None:
        try:
            return store.get_task(task_id)
        except AgentrmError:
            pass
    try:
        from agentrm.tasks import bundled_tasks

        return next((t for t in bundled_tasks() if t.id == task_id), None)
    except ImportError:
        return None


def plan_rerun(traj: Trajectory, store_url: str | None = None, image: str | None = None
               ) -> RerunPlan:
    """Image: --image, else the trajectory's recorded image, else the task's, else the run's
    sandbox image, else the base image (None). Setup: the task's setup commands."""
    store = None
    if store_url:
        from agentrm.traces import open_store

        store = open_store(store_url, must_exist=True)
    task = _find_task(store, traj.task_id)
    run = _recorded_run(store, traj)
    sandbox = run.get("sandbox") if isinstance(run.get("sandbox"), dict) else {}
    meta = traj.metadata if isinstance(traj.metadata, dict) else {}
    candidates = [image, *(meta.get(k) for k in ("image_digest", "image_id", "image")),
                  task.image if task else None, sandbox.get("image")]
    chosen = next((c for c in candidates if isinstance(c, str) and c), None)
    limits = run.get("limits") if isinstance(run.get("limits"), dict) else {}
    plan = RerunPlan(chosen, sandbox, list(task.setup) if task else [],
                     workdir=sandbox.get("workdir") or "/workspace",
                     repo_dir=(task.metadata or {}).get("repo_dir") if task else None,
                     timeout=float(limits.get("command_timeout") or 60.0),
                     network=task.network if task else bool(sandbox.get("network")))
    if task is None:
        plan.notes.append(f"task {traj.task_id!r} unknown: no setup commands replayed")
    if chosen is None and not run:
        plan.notes.append("no image recorded: using the base image")
    return plan


def _sandbox_config(plan: RerunPlan, traj: Trajectory, network: bool):
    from dataclasses import fields

    from agentrm.sandboxes import SandboxConfig

    known = {f.name for f in fields(SandboxConfig)} - {"image", "run_id", "network", "labels"}
    recorded = {k: v for k, v in plan.sandbox.items() if k in known and v is not None}
    return SandboxConfig(**recorded).with_(image=plan.image, network=network,
                                           run_id=f"replay-{traj.id}"[:60]).validated()


def _compare(report: RerunReport, pos: int, turn_index: int, k: int, call: CallView,
             observed: str) -> bool:
    """Record the comparison; True when the call diverged."""
    if call.output is None:
        report.calls_unrecorded += 1
        return False
    report.calls_compared += 1
    if same_observation(call.output, observed):
        return False
    recorded, new = clean_text(call.output), clean_text(observed)
    report.divergence = Divergence(turn_index, pos, k, call.name, call.command or call.arguments,
                                   short_diff(recorded, new), recorded, new)
    return True


def rerun_trajectory(traj: Trajectory, image: str | None = None, store_url: str | None = None,
                     on_progress: Callable[[int, int], None] | None = None,
                     sandbox_factory: SandboxFactory | None = None) -> RerunReport:
    """Replay every recorded tool call in a fresh sandbox; stop at the first divergence.
    Setup and replay are the runtime's own (agentrm.tasks.prepare)."""
    plan = plan_rerun(traj, store_url, image)
    view = build_view(traj)
    report = RerunReport(traj.id, plan.image, len(traj.turns), notes=list(plan.notes))
    started = time.monotonic()
    how = prepare.Replay(plan.workdir, plan.repo_dir, plan.timeout)
    with _start(plan, traj, sandbox_factory) as sandbox:
        prepare.setup(sandbox, Task(id=traj.task_id, instruction="", setup=plan.setup))
        report.setup_commands = len(plan.setup)
        for pos, (turn, turn_view) in enumerate(zip(traj.turns, view.turns, strict=True)):
            calls = prepare.run_calls(sandbox, turn.tool_calls, how)
            for k, ((_, observed), call_view) in enumerate(zip(calls, turn_view.calls, strict=False)):
                if _compare(report, pos, turn.index, k, call_view, observed.content):
                    break
            report.turns_replayed = pos + 1
            if on_progress:
                on_progress(pos + 1, len(traj.turns))
            if report.diverged:
                break
    report.seconds = time.monotonic() - started
    log.info("rerun %s: %d turns, diverged=%s", traj.id, report.turns_replayed, report.diverged)
    return report


def _start(plan: RerunPlan, traj: Trajectory, factory: SandboxFactory | None):
    config = _sandbox_config(plan, traj, network=plan.network)
    try:
        return (factory or prepare.default_factory)(config)
    except AgentrmError:
        raise
    except Exception as exc:  # the engine's own errors (no such image, ...): one clear line
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
        raise InfrastructureError(f"cannot start a rerun sandbox from image "
                                  f"{plan.image or 'base image'!r}: {first}") from exc


def render_report(report: RerunReport):
    """A rich renderable of the report (the CLI prints it)."""
    from rich.console import Group
    from rich.panel import Panel
    from rich.syntax import Syntax
    from rich.text import Text

    facts = Text(f"trajectory {report.trajectory_id} · image {report.image or 'base image'} · "
                 f"{report.turns_replayed}/{report.turns_total} turns replayed · "
                 f"{report.calls_compared} observations compared · {report.seconds:.1f}s")
    notes = [Text(n, style="dim") for n in report.notes]
    if report.calls_unrecorded:
        notes.append(Text(f"{report.calls_unrecorded} calls had no recorded observation",
                          style="yellow"))
    d = report.divergence
    if d is None and not report.calls_compared:
        return Group(Text("nothing compared: no recorded observation to check the rerun against",
                          style="bold yellow"), facts, *notes)
    if d is None:
        return Group(Text("no divergence: every observation matched", style="bold green"),
                     facts, *notes)
    head = Text(f"DIVERGED at turn {d.turn_index} (call {d.call_position + 1}, {d.tool}): "
                f"{d.command.splitlines()[0][:80] if d.command else ''}", style="bold red")
    return Group(head, facts, *notes, Panel(Syntax(d.diff or "(whitespace only)", "diff",
                                                   background_color="default"),
                                            title="recorded → rerun", title_align="left"))
