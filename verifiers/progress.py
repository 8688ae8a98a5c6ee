"""PAV-style progress rewards (ALGORITHMS.md §5): the change a turn makes in the probability that
a prover policy μ still succeeds from there.

    V(h_t) = (1/K) Σ_k success(branch_k),  branch_k = μ continued from the state after t turns
    progress_t = V(h_{t+1}) − V(h_t)       (turn t, 0-based; Σ_t telescopes to V(h_T) − V(h_0))

States: one "spine" sandbox from the task's image and setup replays the agent's recorded tool
calls turn by turn and is snapshotted at every boundary; K branches fork from each snapshot
(`agentrm.sandboxes.fork`) and μ continues from the conversation prefix with the runtime's
tools until it submits or runs out of turns. Success is the task's own check
(`agentrm.tasks.check.outcome_reward` ≥ `success_threshold`). V(h_T) after the last turn is the
trajectory's outcome reward when known (the episode is over), else it is estimated too.

Choices (agentrm's own; the paper has no code): prover = `prover` policy spec (default the
embedded SmolLM2; pass a stronger or Best-of-K prover for real use), K = `branches` (the
budget; `max_branches` caps a whole call), branch turns, γ = 1, raw differences (no threshold).
Estimates are cached by (task, conversation prefix, prover, K, branch turns) in memory and on
disk, so the shared prompt h_0 of a group is estimated once.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from agentrm.errors import AgentrmError, InfrastructureError
from agentrm.hashing import stable_hash
from agentrm.protocols import ScoringContext
from agentrm.types import ExitStatus, Message, Score, Task, ToolCall, Trajectory
from agentrm.verifiers.base import ScorerBase
from agentrm.verifiers.exec_verifier import TaskLookup

log = logging.getLogger("agentrm.verifiers.progress")


def prefixes(traj: Trajectory) -> list[list[Message]]:
    """Conversation at every boundary h_0..h_T (h_t: before turn t's action; h_T: after the last)."""
    out, history = [], []
    for turn in traj.turns:
        history = history + list(turn.observation)
        out.append(history)
        history = history + [turn.assistant]
    return out + [history + list(traj.tail)]


def progress_values(values: Sequence[float]) -> list[float]:
    """progress_t = V_{t+1} − V_t for t = 0..T−1 (γ = 1)."""
    return [b - a for a, b in zip(values[:-1], values[1:], strict=True)]


class ProgressScorer(ScorerBase):
    name = "progress"
    version = "1"

    def __init__(self, prover: str | None = None, branches: int = 4, branch_turns: int = 8,
                 success_threshold: float = 1.0, max_branches: int | None = None, tasks: Any = None,
                 db: str | None = None, cache: str | None = None, command_timeout: float = 30.0,
                 prover_policy: Any = None):
        if int(branches) < 1:
            from agentrm.errors import InputError
            raise InputError(f"progress --branches {branches}: must be at least 1")
        self.prover_spec = prover or "transformers:smollm2"
        self.branches, self.branch_turns = int(branches), int(branch_turns)
        self.success_threshold, self.command_timeout = float(success_threshold), float(command_timeout)
        self.max_branches = int(max_branches) if max_branches is not None else None
        self._lookup = TaskLookup(tasks, db)
        self._policy = prover_policy
        self.cache_path = Path(cache) if cache else _default_cache()
        self._cache: dict[str, dict[str, Any]] | None = None
        self.branches_run = 0

    def config(self) -> dict[str, Any]:
        return {"prover": getattr(self._policy, "name", None) or self.prover_spec, "branches": self.branches,
                "branch_turns": self.branch_turns, "success_threshold": self.success_threshold}

    @property
    def prover(self) -> Any:
        if self._policy is None:
            from agentrm.rollout.policies import make_policy
            self._policy = make_policy(self.prover_spec)
        return self._policy

    # -- cache ---------------------------------------------------------------------------------
    def _load_cache(self) -> dict[str, dict[str, Any]]:
        if self._cache is None:
            try:
                self._cache = json.loads(self.cache_path.read_text()) if self.cache_path.is_file() else {}
            except (OSError, json.JSONDecodeError):
                self._cache = {}
        return self._cache

    def _save_cache(self) -> None:
        self.cache_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.cache_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self._load_cache()))
        tmp.replace(self.cache_path)

    def key(self, task: Task, prefix: list[Message]) -> str:
        convo = [[m.get("role"), m.get("content"), m.get("tool_calls")] for m in prefix]
        return stable_hash([task.id, task.image, task.setup, task.answer, task.verifier, convo, self.config()], 32)

    # -- scoring -------------------------------------------------------------------------------
    def score(self, trajectories: Sequence[Trajectory], context: ScoringContext | None = None) -> list[Score]:
        out: list[Score] = []
        for traj in trajectories:
            out.extend(self.score_one(traj))
        self._save_cache()
        return out

    def score_one(self, traj: Trajectory) -> list[Score]:
        if (abstention := self.infrastructure_abstention(traj)) is not None:
            return [abstention]
        task = self._lookup.get(traj.task_id)
        if task is None:
            return [self.trajectory_score(traj.id, None, abstain=f"task {traj.task_id!r} unknown (-o tasks=FILE or -o db=URL)")]
        if not traj.turns:
            return [self.trajectory_score(traj.id, None, abstain="no turns")]
        try:
            values = self.values(traj, task)
        except AgentrmError as exc:
            return [self.trajectory_score(traj.id, None, error=str(exc)[:300], failure="infrastructure")]
        except Exception as exc:  # noqa: BLE001 - docker/engine trouble is not the agent's 0
            log.exception("progress failed on %s", traj.id)
            return [self.trajectory_score(traj.id, None, error=f"{type(exc).__name__}: {exc}"[:300],
                                          failure="infrastructure")]
        rows = []
        for t in range(len(traj.turns)):
            before, after = values[t], values[t + 1]
            if before["value"] is None or after["value"] is None:
                rows.append(self.turn_score(traj.id, t, None, abstain="branch budget exhausted"))
                continue
            rows.append(self.turn_score(traj.id, t, after["value"] - before["value"], value_before=before,
                                        value_after=after))
        return rows

    def values(self, traj: Trajectory, task: Task) -> list[dict[str, Any]]:
        """V(h_t) for t = 0..T with how each was obtained."""
        cache = self._load_cache()
        pre = prefixes(traj)
        keys = [self.key(task, p) for p in pre]
        out: list[dict[str, Any] | None] = [None] * len(pre)
        if traj.reward is not None and traj.exit_status != ExitStatus.RUNNING:
            out[-1] = {"value": float(traj.reward >= self.success_threshold), "source": "outcome"}
        for t, key in enumerate(keys):
            if out[t] is None and key in cache:
                out[t] = {**cache[key], "source": "cache"}
        todo = [t for t in range(len(pre)) if out[t] is None]
        if todo:
            refs = self._snapshots(traj, task, max(todo))
            for t in todo:
                out[t] = self._estimate(task, pre[t], refs[t])
                if out[t]["value"] is not None:
                    cache[keys[t]] = {k: out[t][k] for k in ("value", "successes", "branches")}
        return out  # type: ignore[return-value]

    def _snapshots(self, traj: Trajectory, task: Task, last: int) -> list[str]:
        """Replay the agent's tool calls in one sandbox, snapshotting the state at h_0..h_last."""
        from agentrm.rollout.tools import execute_tool_call
        from agentrm.sandboxes import DockerSandbox, SandboxConfig

        refs = []
        with DockerSandbox(SandboxConfig(image=task.image, network=task.network, wall_clock_s=1800)) as sb:
            for cmd in task.setup:
                r = sb.exec(cmd, timeout=300, stateless=True)
                if not r.ok:
                    raise InfrastructureError(f"task {task.id}: setup failed (exit {r.exit_code}): {cmd[:80]!r}")
            refs.append(sb.snapshot())
            for turn in traj.turns[:last]:
                for call in turn.tool_calls:
                    if call.valid and call.name != "submit":
                        execute_tool_call(sb, call, timeout=self.command_timeout,
                                          repo_dir=task.metadata.get("repo_dir"))
                refs.append(sb.snapshot())
        return refs

    def _estimate(self, task: Task, prefix: list[Message], ref: str) -> dict[str, Any]:
        if self.max_branches is not None and self.branches_run + self.branches > self.max_branches:
            return {"value": None, "source": "budget"}
        from agentrm.sandboxes import SandboxConfig, fork

        successes, outcomes = 0, []
        children = fork(ref, self.branches, SandboxConfig(network=task.network, wall_clock_s=1800))
        try:
            for sb in children:
                reward = self._branch(task, prefix, sb)
                outcomes.append(reward)
                successes += int(reward is not None and reward >= self.success_threshold)
        finally:
            for sb in children:
                sb.close()
        self.branches_run += self.branches
        return {"value": successes / self.branches, "successes": successes, "branches": self.branches,
                "source": "branches", "rewards": outcomes}

    def _branch(self, task: Task, prefix: list[Message], sandbox: Any) -> float | None:
        """Continue the conversation with the prover until it submits or runs out of turns."""
        from agentrm.rollout.tools import SUBMIT, TOOL_SCHEMAS, execute_tool_call
        from agentrm.tasks.check import outcome_reward

        messages = [dict(m) for m in prefix]
        for _ in range(self.branch_turns):
            try:
                message = dict(self.prover.act(messages, TOOL_SCHEMAS).message)
            except Exception as exc:  # noqa: BLE001 - a prover failure counts as a failed branch
                log.info("prover failed: %s", exc)
                return 0.0
            messages.append(message)
            calls = [ToolCall.from_message(c) for c in message.get("tool_calls") or []]
            for call in calls:
                result = execute_tool_call(sandbox, call, timeout=self.command_timeout,
                                           repo_dir=task.metadata.get("repo_dir"))
                messages.append({"role": "tool", "tool_call_id": call.id, "content": result.content})
                if call.name == SUBMIT and call.valid:
                    reward, _ = outcome_reward(task, ExitStatus.SUBMITTED, result.content, sandbox)
                    return reward
        reward, _ = outcome_reward(task, ExitStatus.TURN_LIMIT, None, sandbox)
        return reward


def _default_cache() -> Path:
    from agentrm.models import cache_dir
    return cache_dir() / "progress-values.json"


def make_scorer(**options: Any) -> ProgressScorer:
    return ProgressScorer(**options)
