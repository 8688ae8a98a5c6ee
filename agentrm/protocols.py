"""The extension points. Each is a small Protocol; implementations live in their stage.

Policy      agentrm.rollout.policies   (OpenAI endpoint, vLLM, transformers, scripted)
Sandbox     agentrm.sandboxes          (Docker)
Scorer      agentrm.verifiers          (PRMs, verifiers, turn rewards)
TraceStore  agentrm.traces             (SQLAlchemy: SQLite, PostgreSQL); its parts: TurnSink
            (the rollout loop), RunLog, TaskSource, TraceReader, ScoreStore
AdvantageEstimator agentrm.advantages  (GRPO, RLOO, GiGPO, IGPO, min-form)
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from agentrm.types import (
    Advantage,
    ExecResult,
    ExitStatus,
    Message,
    Score,
    Task,
    TokenTrace,
    Trajectory,
    Turn,
)


@dataclass
class PolicyOutput:
    """One assistant message plus what the backend could tell about its tokens."""

    message: Message  # {"role": "assistant", "content": ..., "tool_calls": [...]}
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    logprobs: list[float] | None = None  # per completion token, when the backend gives them
    raw: dict[str, Any] = field(default_factory=dict)
    tokens: TokenTrace | None = None  # ready for Turn.tokens: prompt/completion ids as sampled


@runtime_checkable
class Policy(Protocol):
    name: str

    def act(self, messages: Sequence[Message], tools: Sequence[dict[str, Any]]) -> PolicyOutput:
        """Return the next assistant message for the conversation so far."""
        ...


@runtime_checkable
class TrainablePolicy(Policy, Protocol):
    """A policy `agentrm train` updates: it hands out the model the optimiser steps, and after
    each step (or a loaded checkpoint) `sync` makes sampling use those weights."""

    def trainable(self, wrap: Any = None) -> tuple[Any, Any]:
        """(model, tokenizer) to optimise in place; `wrap` (LoRA adapters) is applied once."""
        ...

    def sync(self) -> None:
        """Sample from the trainable model's current weights from the next `act` on."""
        ...


@runtime_checkable
class Sandbox(Protocol):
    """An isolated machine to run an agent's commands in. Use it as a context manager."""

    def exec(self, cmd: str | list[str], timeout: float | None = None, *,
             stateless: bool = False, input: bytes | str | None = None) -> ExecResult:
        """Run `cmd` in the persistent shell (cd/env persist) or as a process of its own
        (`stateless`, an argv list, or `input` for its stdin); raise only when the sandbox
        itself is gone (SandboxGone)."""
        ...

    def verify_exec(self, cmd: str, timeout: float = 600.0, *,
                    restore: dict[str, str | bytes] | None = None) -> ExecResult:
        """Run a verifier after the agent's last turn, out of the agent's reach: the agent's
        processes are stopped, `restore` files are put back where the agent cannot change
        them, and `cmd` runs in a fresh environment (nothing the agent defined applies)."""
        ...

    def read_file(self, path: str) -> bytes: ...

    def write_file(self, path: str, data: bytes | str) -> None: ...

    def snapshot(self) -> str:
        """Commit the current state; return a reference new sandboxes can start from."""
        ...

    def close(self) -> None: ...

    def __enter__(self) -> Sandbox: ...

    def __exit__(self, *exc: object) -> None: ...


class SandboxFactory(Protocol):
    """Makes a sandbox from a sandbox config (agentrm.sandboxes.SandboxConfig for Docker)."""

    def __call__(self, config: Any, /) -> Sandbox: ...  # positional: DockerSandbox(cfg) fits


@dataclass
class ScoringContext:
    """What a scorer may use but must not build itself, so its cost and lifetime stay visible
    to whoever runs it: the store (tasks, side trajectories such as a judge's), how to make
    sandboxes, where to run units of work, and the torch device."""

    store: Any = None  # a TraceStore (plus TaskSource for scorers that need the task)
    sandbox_factory: SandboxFactory | None = None
    executor: Any = None  # agentrm.executors.Executor
    device: str | None = None  # None: CUDA when present, else CPU


@runtime_checkable
class Scorer(Protocol):
    """Batched scoring of trajectories. May abstain (Score.value None) or return nothing."""

    name: str
    version: str

    def config(self) -> dict[str, Any]:
        """Everything that changes the scores; hashed into Score.config_hash."""
        ...

    def score(self, trajectories: Sequence[Trajectory],
              context: ScoringContext | None = None) -> list[Score]: ...


@runtime_checkable
class TurnSink(Protocol):
    """What the rollout loop writes while a trajectory runs; every turn lands as it completes.

    Writes are idempotent on (trajectory, turn index), so a resumed rollout never duplicates."""

    def begin_trajectory(self, trajectory: Trajectory) -> None: ...

    def append_turn(self, trajectory_id: str, turn: Turn) -> None: ...

    def set_tail(self, trajectory_id: str, messages: Sequence[Message]) -> None:
        """The messages after the last assistant turn (the final tool results)."""
        ...

    def update_trajectory(self, trajectory_id: str, **fields: Any) -> None:
        """Set descriptive fields (metadata, group_id, answer, policy, task_id, tail)."""
        ...

    def end_trajectory(
        self, trajectory_id: str, status: ExitStatus, reward: float | None = None
    ) -> None: ...


@runtime_checkable
class RunLog(Protocol):
    """Runs and what a driver needs to resume one: which trajectories finished, and a restart."""

    def begin_run(self, config: dict, run_id: str | None = None, kind: str = "run") -> str: ...

    def end_run(self, run_id: str, status: str = "finished") -> None: ...

    def get_run(self, run_id: str) -> dict[str, Any]: ...

    def annotate_run(self, run_id: str, **fields: Any) -> None:
        """Merge fields into the run's stored config (statistics a run records as it goes)."""
        ...

    def finished_trajectory_ids(self, run_id: str) -> set[str]: ...

    def reset_trajectory(self, trajectory_id: str) -> None:
        """Drop a trajectory's turns, scores and advantages, to rerun it under the same id."""
        ...

    def take_lease(self, run_id: str, holder: str, ttl_s: float,
                   is_dead: Callable[[str], bool] = ...) -> dict[str, Any] | None:
        """One live driver per run id: None when `holder` now holds it, else the holder's row."""
        ...

    def renew_lease(self, run_id: str, holder: str) -> bool: ...

    def release_lease(self, run_id: str, holder: str) -> None: ...


@runtime_checkable
class TaskSource(Protocol):
    """Tasks by id (scorers that need the task's answer or setup)."""

    def upsert_task(self, task: Task) -> None: ...

    def get_task(self, task_id: str) -> Task: ...


@runtime_checkable
class TraceReader(Protocol):
    """Stored trajectories, streamed or by id."""

    def get_trajectory(self, trajectory_id: str) -> Trajectory: ...

    def iter_trajectories(
        self, run_id: str | None = None, task_id: str | None = None,
        group_id: str | None = None, exit_status: ExitStatus | str | None = None,
        ids: Iterable[str] | None = None,
    ) -> Iterator[Trajectory]: ...


@runtime_checkable
class ScoreStore(Protocol):
    """Score and advantage rows, upserted on their natural keys."""

    def write_scores(self, items: Iterable[Score]) -> int: ...

    def get_scores(self, trajectory_ids: Iterable[str] | None = None,
                   scorer: str | None = None) -> list[Score]: ...

    def write_advantages(self, advs: Iterable[Advantage]) -> int: ...

    def get_advantages(self, trajectory_ids: Iterable[str] | None = None,
                       estimator: str | None = None) -> list[Advantage]: ...


@runtime_checkable
class TraceStore(TurnSink, RunLog, TaskSource, TraceReader, ScoreStore, Protocol):
    """The whole store (agentrm.traces.SQLStore): what the pipeline hands each stage a part of."""

    def close(self) -> None: ...


@runtime_checkable
class AdvantageEstimator(Protocol):
    """Pure function of step rows (column arrays) to per-row advantages (numpy, no torch)."""

    name: str

    def __call__(self, rows: Any) -> Any: ...
