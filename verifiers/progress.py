"""PAV-style progress rewards: the change a turn makes in the probability that
a prover policy μ still succeeds from there.

    V(h_t) = (1/K) Σ_k success(branch_k),  branch_k = μ continued from the state after t turns
    progress_t = V(h_{t+1}) − V(h_t)       (turn t, 0-based; Σ_t telescopes to V(h_T) − V(h_0))

States: one "spine" sandbox from the task's image and setup replays the agent's recorded tool
calls turn by turn and is snapshotted at every boundary (agentrm.tasks.prepare, the runtime's own
setup and replay); from each snapshot the rollout driver runs a group of K branches
(agentrm.rollout.run, a group `Start`): μ continues the conversation prefix with the runtime's
tools until it submits or runs out of turns. Success is the task's own check (the branch's
outcome reward ≥ `success_threshold`). A branch whose outcome is unknown (the prover or its
sandbox failed) abstains: V(h_t) is the success rate of the branches with an outcome, and None
when none has one. V(h_T) after the last turn is the trajectory's outcome reward when known
(the episode is over), else it is estimated too. Sandboxes come from the ScoringContext.

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

from agentrm.errors import AgentrmError
from agentrm.files import atomic_write
from agentrm.hashing import stable_hash
from agentrm.protocols import ScoringContext
from agentrm.types import ExitStatus, Message, Score, Task, Trajectory
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
                 cache: str | None = None, command_timeout: float = 30.0,
                 prover_policy: Any = None):
        if int(branches) < 1:
            from agentrm.errors import InputError
            raise InputError(f"progress --branches {branches}: must be at least 1")
        self.prover_spec = prover or "transformers:smollm2"
        self.branches, self.branch_turns = int(branches), int(branch_turns)
        self.success_threshold, self.command_timeout = float(success_threshold), float(command_timeout)
        self.max_branches = int(max_branches) if max_branches is not None else None
        self._lookup = TaskLookup(tasks)
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
        atomic_write(self.cache_path, json.dumps(self._load_cache()))

    def key(self, task: Task, prefix: list[Message]) -> str:
        convo = [[m.get("role"), m.get("content"), m.get("tool_calls")] for m in prefix]
        return stable_hash([task.id, task.image, task.setup, task.answer, task.verifier, convo, self.config()], 32)

    # -- scoring -------------------------------------------------------------------------------
    def score(self, trajectories: Sequence[Trajectory], context: ScoringContext | None = None) -> list[Score]:
        out: list[Score] = []
        self._lookup.store = context.store if context is not None else None
        for traj in trajectories:
            out.extend(self.score_one(traj, context))
        self._save_cache()
        return out

    def score_one(self, traj: Trajectory, context: ScoringContext | None = None) -> list[Score]:
        if (abstention := self.infrastructure_abstention(traj)) is not None:
            return [abstention]
        task = self._lookup.get(traj.task_id)
        if task is None:
            return [self.trajectory_score(traj.id, None, abstain=f"task {traj.task_id!r} unknown (-o tasks=FILE, or score a stored run)")]
        if not traj.turns:
            return [self.trajectory_score(traj.id, None, abstain="no turns")]
        try:
            values = self.values(traj, task, context)
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
                why = "branch budget exhausted" if "budget" in (before["source"], after["source"]) \
                    else "no branch had an outcome (prover or sandbox failed)"
                rows.append(self.turn_score(traj.id, t, None, abstain=why))
                continue
            rows.append(self.turn_score(traj.id, t, after["value"] - before["value"], value_before=before,
                                        value_after=after))
        return rows

    def values(self, traj: Trajectory, task: Task, context: ScoringContext | None = None
               ) -> list[dict[str, Any]]:
        """V(h_t) for t = 0..T with how each was obtained."""
        factory = context.sandbox_factory if context is not None else None
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
            from agentrm.tasks import prepare

            config = prepare.sandbox_config(task)
            refs = prepare.boundary_snapshots(task, traj.turns[:max(todo)], config, self._replay(task),
                                              factory)
            for t in todo:
                out[t] = self._estimate(task, pre[t], refs[t], config, factory)
                if out[t]["value"] is not None:
                    cache[keys[t]] = {k: out[t][k] for k in ("value", "successes", "branches")}
        return out  # type: ignore[return-value]

    def _replay(self, task: Task) -> Any:
        from agentrm.tasks.prepare import Replay

        return Replay.of(task, timeout=self.command_timeout)

    def _estimate(self, task: Task, prefix: list[Message], ref: str, config: Any,
                  factory: Any) -> dict[str, Any]:
        """K prover branches from snapshot `ref`, one group of the rollout driver (nothing stored)."""
        if self.max_branches is not None and self.branches_run + self.branches > self.max_branches:
            return {"value": None, "source": "budget"}
        from agentrm.rollout.group import Group, Start
        from agentrm.rollout.loop import Limits
        from agentrm.rollout.run import RunOptions, run_groups

        group = Group(task, config, self.branches, factory, start=Start(ref, prefix))
        limits = Limits(max_turns=self.branch_turns, command_timeout=self.command_timeout)
        summary = run_groups([group], self.prover, None, run_id="progress",
                             options=RunOptions(limits=limits))
        self.branches_run += self.branches
        outcomes = [t.reward for t in summary.results]
        known = [r for r in outcomes if r is not None]
        successes = sum(r >= self.success_threshold for r in known)
        failed = [t.metadata.get("error") for t in summary.results if t.reward is None]
        if failed:
            log.info("%d of %d progress branches have no outcome: %s", len(failed), self.branches,
                     failed[0])
        return {"value": successes / len(known) if known else None, "successes": successes,
                "branches": len(known), "source": "branches", "rewards": outcomes}


def _default_cache() -> Path:
    from agentrm.models import cache_dir
    return cache_dir() / "progress-values.json"


def make_scorer(**options: Any) -> ProgressScorer:
    return ProgressScorer(**options)
