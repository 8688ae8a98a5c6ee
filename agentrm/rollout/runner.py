"""Compatibility alias: `run_rollouts` is the driver's `run` (agentrm/rollout/run.py) with the
old keyword arguments. New code calls `agentrm.rollout.run.run`."""

from __future__ import annotations

from typing import Any

from agentrm.rollout.group import trajectory_id
from agentrm.rollout.loop import Limits
from agentrm.rollout.run import FINAL, RunOptions, RunSummary, run

__all__ = ["FINAL", "RunSummary", "run_rollouts", "trajectory_id"]


def run_rollouts(tasks, policy_spec, store, *, run_id: str | None = None, group_size: int = 1,
                 max_turns: int = 20, concurrency: int = 1, limits: Limits | None = None,
                 sandbox_config: Any = None, on_event=None, cancel=None) -> RunSummary:
    options = RunOptions(limits=limits or Limits(max_turns=max_turns), sandbox=sandbox_config,
                         concurrency=concurrency)
    return run(tasks, policy_spec, store, group_size=group_size, run_id=run_id, options=options,
               on_event=on_event, cancel=cancel)
