"""RolloutConfig: what `agentrm run` (and pipeline.rollout) asks of the driver, in one dataclass.

The CLI generates its flags from these fields (agentrm.config.option carries the help text);
`run_config` turns a config into one `run` call.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from agentrm.config import option
from agentrm.errors import InputError
from agentrm.rollout.events import Event
from agentrm.rollout.loop import Limits

POLICY_HELP = ("scripted:FILE | transformers:PATH_OR_ID | openai:URL#MODEL | vllm:PATH "
               "(options after ?k=v&…)")


@dataclass
class RolloutConfig:
    tasks: str = option("builtin", "Task file (.jsonl/.yaml) or `builtin`.", metavar="FILE")
    task_ids: list[str] = option(None, "Only these task ids (repeatable).", "--task", factory=list,
                                 metavar="ID")
    policy: str = option("transformers:smollm2", POLICY_HELP, metavar="SPEC")
    group_size: int = option(1, "Rollouts per task from one initial state.")
    max_turns: int = option(10, "Turns before `turn_limit`.")
    max_tokens: int | None = option(None, "Context tokens per model call before `token_limit`.")
    time_limit: float | None = option(None, "Seconds per trajectory before `time_limit`.")
    command_timeout: float = option(60.0, "Seconds per tool command.")
    concurrency: int = option(1, "Trajectories at a time.")
    run_id: str | None = option(None, "Name the run; rerunning it resumes.", metavar="ID")
    wait: bool = option(False, "Another process drives this run id: wait for it instead of refusing.",
                        "--wait")
    executor: str = option("local", "local | ray (one task group per Ray task; workers share --db).")
    ray_address: str | None = option(None, "Ray cluster address (default: start a local one).",
                                     "--ray-address")

    def validate(self) -> None:
        for name in ("group_size", "max_turns", "concurrency", "max_tokens"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise InputError(f"--{name.replace('_', '-')} {value}: must be at least 1")
        for name in ("time_limit", "command_timeout"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise InputError(f"--{name.replace('_', '-')} {value:g}: must be > 0")
        if self.executor not in ("local", "ray"):
            raise InputError(f"unknown executor {self.executor!r} (--executor): choose local or ray")

    @property
    def limits(self) -> Limits:
        return Limits(max_turns=self.max_turns, max_tokens=self.max_tokens,
                      max_seconds=self.time_limit, command_timeout=self.command_timeout)

    def selected_tasks(self) -> list[Any]:
        from agentrm.tasks import load_tasks

        tasks = load_tasks(self.tasks)
        if self.task_ids:
            unknown = sorted(set(self.task_ids) - {t.id for t in tasks})
            if unknown:
                raise InputError(f"--task: no task {', '.join(unknown)} in {self.tasks}")
            tasks = [t for t in tasks if t.id in set(self.task_ids)]
        return tasks


def run_config(store: Any, config: RolloutConfig, *, store_url: str | None = None,
               on_event: Callable[[Event], None] | None = None,
               cancel: threading.Event | None = None) -> Any:
    """Validate `config`, load its tasks and policy, and run them through the driver.
    `store` may be a function that opens it: called only once the input is valid, so bad input
    writes nothing."""
    from agentrm.rollout.run import RunOptions, run

    config.validate()
    tasks = config.selected_tasks()
    options = RunOptions(limits=config.limits, concurrency=config.concurrency, wait=config.wait)
    executor, policy = None, config.policy
    if config.executor == "ray":
        from agentrm.executors import RayExecutor

        executor = RayExecutor(config.ray_address)
    else:
        from agentrm.rollout.policies import make_policy

        policy = make_policy(config.policy)
    if callable(store):
        store = store()
    return run(tasks, policy, store, group_size=config.group_size, executor=executor,
               run_id=config.run_id, options=options, store_url=store_url, on_event=on_event,
               cancel=cancel)
