"""Task preparation: the one place that turns a task into a sandbox state, and recorded actions
back into one.

Setup: every command of `task.setup` runs in its own process (`stateless`), so the agent's
persistent shell starts untouched in the working directory; a failing command is an
infrastructure failure (`SetupFailed`), never the agent's. Replay: recorded tool calls run
through the runtime's own tools with the runtime's rule (every call of a turn in order, none
after a valid `submit`). The rollout driver (group snapshots, resume), `agentrm replay --rerun`
and progress branches all go through here, so they cannot disagree about a state.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from agentrm.errors import InfrastructureError
from agentrm.protocols import Sandbox, SandboxFactory
from agentrm.types import Task, ToolCall, ToolResult, Turn

log = logging.getLogger("agentrm.tasks.prepare")

SETUP_TIMEOUT = 300.0


class SetupFailed(InfrastructureError):
    """A setup command of the task failed: the initial state could not be built."""


@dataclass(frozen=True)
class Replay:
    """How recorded actions are re-run: where relative paths and `submit`'s diff resolve."""

    workdir: str = "/workspace"
    repo_dir: str | None = None
    timeout: float = 60.0

    @classmethod
    def of(cls, task: Task | None, workdir: str = "/workspace", timeout: float = 60.0) -> Replay:
        repo_dir = (task.metadata or {}).get("repo_dir") if task is not None else None
        return cls(workdir, repo_dir, timeout)


def default_factory(config: Any) -> Sandbox:
    """A Docker sandbox (imported lazily: callers that bring their own factory need no Docker)."""
    from agentrm.sandboxes import DockerSandbox

    return DockerSandbox(config)


def sandbox_config(task: Task, base: Any = None) -> Any:
    """The sandbox config for `task`: `base` (a SandboxConfig) with the task's image and network."""
    if base is None:
        from agentrm.sandboxes import SandboxConfig

        base = SandboxConfig()
    return base.with_(image=task.image or base.image, network=task.network)


def setup(sandbox: Sandbox, task: Task, timeout: float = SETUP_TIMEOUT) -> None:
    """Run the task's setup commands, each in its own process; SetupFailed on the first failure."""
    for cmd in task.setup:
        r = sandbox.exec(cmd, timeout=timeout, stateless=True)  # type: ignore[call-arg]
        if not r.ok:
            raise SetupFailed(f"task {task.id}: setup command failed (exit {r.exit_code}): "
                              f"{cmd[:80]!r}: {(r.stderr or r.stdout)[-300:]}")


def fresh(task: Task, config: Any, factory: SandboxFactory | None = None) -> Sandbox:
    """A new sandbox in the task's initial state (the caller closes it)."""
    sandbox = (factory or default_factory)(config)
    try:
        setup(sandbox, task)
    except BaseException:
        sandbox.close()
        raise
    return sandbox


def run_calls(sandbox: Sandbox, calls: Iterable[ToolCall], replay: Replay
              ) -> Iterator[tuple[ToolCall, ToolResult]]:
    """Execute one turn's tool calls as the runtime does: in order, none after a valid submit.
    A generator, so a caller that compares observations can stop at the first difference."""
    from agentrm.rollout.tools import SUBMIT, call_error, execute_tool_call

    for call in calls:
        result = execute_tool_call(sandbox, call, timeout=replay.timeout, workdir=replay.workdir,
                                   repo_dir=replay.repo_dir)
        yield call, result
        if call.name == SUBMIT and call_error(call) is None:
            return


def replay_turns(sandbox: Sandbox, turns: Sequence[Turn], replay: Replay,
                 on_turn: Callable[[int], None] | None = None) -> None:
    """Re-run the recorded actions of `turns` in `sandbox` (their results are not compared)."""
    for n, turn in enumerate(turns, 1):
        for _ in run_calls(sandbox, turn.tool_calls, replay):
            pass
        if on_turn is not None:
            on_turn(n)


def boundary_snapshots(task: Task, turns: Sequence[Turn], config: Any, replay: Replay,
                       factory: SandboxFactory | None = None) -> list[str]:
    """Snapshots of the states h_0..h_n (n = len(turns)): the task's initial state, then the state
    after each recorded turn, from one sandbox that replays the turns in order."""
    with fresh(task, config, factory) as sandbox:
        refs = [sandbox.snapshot()]
        for turn in turns:
            replay_turns(sandbox, [turn], replay)
            refs.append(sandbox.snapshot())
    return refs
