"""`agentrm run`: group rollouts of a task file with a policy, logged to the trace store."""

from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import asdict
from typing import Annotated

import typer

from agentrm.cli.common import (
    DbOption,
    JsonOption,
    console,
    db_url,
    err_console,
    print_json,
    rich_table,
)

INFRA = {"sandbox_error", "model_error", "crashed"}


def register(app: typer.Typer) -> None:
    app.command("run")(run)


class LiveView:
    """Run state fed by the runner's events (from worker threads), drawn by rich.Live."""

    def __init__(self):
        self.lock = threading.Lock()
        self.total = self.skipped = 0
        self.rows: dict[str, dict] = {}
        self.started = time.monotonic()

    def __call__(self, event: dict) -> None:
        with self.lock:
            kind, tid = event["type"], event.get("trajectory_id")
            if kind == "plan":
                self.total, self.skipped = event["total"], event["skipped"]
            elif kind == "skip":
                self.rows[tid] = {"task": event["task_id"], "turns": event["turns"],
                                  "status": event["status"], "note": "skipped (finished)"}
            elif kind == "start":
                self.rows[tid] = {"task": event["task_id"], "turns": 0, "status": "running",
                                  "note": "resumed" if event.get("resumed") else ""}
            elif kind == "turn" and tid in self.rows:
                self.rows[tid]["turns"] = event["turn"]
            elif kind == "end":
                self.rows[tid].update(status=event["status"], turns=event["turns"],
                                      note=(event.get("error") or "")[:60],
                                      reward=event.get("reward"))

    def render(self):
        from rich.console import Group
        from rich.text import Text

        with self.lock:
            statuses = Counter(r["status"] for r in self.rows.values())
            running = statuses.pop("running", 0)
            failed = sum(statuses[s] for s in INFRA)
            done = sum(statuses.values())
            head = Text.assemble(
                ("done ", "bold"), f"{done}/{self.total}  ", ("running ", "bold cyan"), f"{running}  ",
                ("failed ", "bold red"), f"{failed}  ", ("turns ", "bold"),
                f"{sum(r['turns'] for r in self.rows.values())}  ",
                f"{time.monotonic() - self.started:.0f}s  ",
                "  ".join(f"{k}={v}" for k, v in sorted(statuses.items())))
            live = [tid for tid, r in self.rows.items() if r["status"] == "running"]
            recent = [tid for tid in self.rows if tid not in live][-8:]
            table = rich_table(None, ["trajectory", "turns", "status", "note"],
                               [[tid, self.rows[tid]["turns"], self.rows[tid]["status"],
                                 self.rows[tid].get("note", "")] for tid in live + recent])
        return Group(head, table)


def run(
    tasks: Annotated[str, typer.Option("--tasks", help="Task file (.jsonl/.yaml) or `builtin`.")] = "builtin",
    task_ids: Annotated[list[str] | None, typer.Option("--task", help="Only these task ids (repeatable).")] = None,
    policy: Annotated[str, typer.Option("--policy", help="scripted:FILE | transformers:PATH_OR_ID | openai:URL#MODEL | vllm:PATH (options after ?k=v&…)")] = "transformers:smollm2",
    group_size: Annotated[int, typer.Option("--group-size", min=1, help="Rollouts per task from one initial state.")] = 1,
    max_turns: Annotated[int, typer.Option("--max-turns", min=1, help="Turns before `turn_limit`.")] = 10,
    max_tokens: Annotated[int | None, typer.Option("--max-tokens", min=1, help="Context tokens per model call before `token_limit`.")] = None,
    time_limit: Annotated[float | None, typer.Option("--time-limit", min=1, help="Seconds per trajectory before `time_limit`.")] = None,
    command_timeout: Annotated[float, typer.Option("--command-timeout", min=1, help="Seconds per tool command.")] = 60.0,
    concurrency: Annotated[int, typer.Option("--concurrency", min=1, help="Trajectories at a time.")] = 1,
    run_id: Annotated[str | None, typer.Option("--run-id", help="Name the run; rerunning it resumes.")] = None,
    executor: Annotated[str, typer.Option("--executor", help="local | ray (one task group per Ray task; workers share --db).")] = "local",
    ray_address: Annotated[str | None, typer.Option("--ray-address", envvar="RAY_ADDRESS", help="Ray cluster address (default: start a local one).")] = None,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Roll a policy out on tasks in Docker sandboxes; every turn lands in the trace store."""
    from rich.live import Live

    from agentrm.errors import InputError
    from agentrm.rollout.loop import Limits
    from agentrm.rollout.policies import make_policy
    from agentrm.rollout.runner import run_rollouts
    from agentrm.tasks import load_tasks
    from agentrm.traces import open_store

    selected = load_tasks(tasks)
    if task_ids:
        unknown = sorted(set(task_ids) - {t.id for t in selected})
        if unknown:
            raise InputError(f"--task: no task {', '.join(unknown)} in {tasks}")
        selected = [t for t in selected if t.id in set(task_ids)]
    limits = Limits(max_turns=max_turns, max_tokens=max_tokens, max_seconds=time_limit,
                    command_timeout=command_timeout)
    if executor == "ray":
        return _run_on_ray(selected, policy, db_url(db), run_id, group_size, limits, ray_address, as_json)
    if executor != "local":
        raise InputError(f"unknown executor {executor!r} (--executor): choose local or ray")
    the_policy = make_policy(policy)
    store = open_store(db_url(db))
    view = LiveView()
    with Live(console=err_console, get_renderable=view.render, refresh_per_second=4, transient=True):
        summary = run_rollouts(selected, the_policy, store, run_id=run_id, group_size=group_size,
                               concurrency=concurrency, limits=limits, on_event=view)
    if as_json:
        print_json({**asdict(summary), "counts": summary.counts})
        return
    _report(summary.run_id, summary.trajectories, summary.skipped, summary.duration_s)


def _report(run_id: str, trajectories: list[dict], skipped: list, seconds: float) -> None:
    counts = Counter(t["exit_status"] for t in trajectories)
    console.print(rich_table(f"run {run_id}", ["trajectory", "status", "turns", "invalid", "reward", "error"],
                             [[t["id"], t["exit_status"], t["turns"], t["invalid_turns"],
                               t["reward"], (t["error"] or "")[:60]] for t in trajectories]))
    console.print(f"{len(trajectories)} run, {len(skipped)} skipped (already finished) "
                  f"in {seconds:.1f}s  " + "  ".join(f"{k}={v}" for k, v in sorted(counts.items())))
    failed = sum(counts.get(s, 0) for s in INFRA)
    if failed:
        err_console.print(f"[yellow]{failed} trajectories failed on infrastructure (reward unknown); "
                          f"rerun with --run-id {run_id} to retry them[/]")


def _run_on_ray(tasks, policy, url, run_id, group_size, limits, ray_address, as_json) -> None:
    """One Ray task per task group; every worker writes its turns to the shared store."""
    from agentrm.cli.common import progress
    from agentrm.distributed import run_rollouts_on
    from agentrm.executors import RayExecutor

    started = time.monotonic()
    with progress() as bar:
        task = bar.add_task(f"task groups on Ray ({group_size} rollouts each)", total=len(tasks))
        result = run_rollouts_on(RayExecutor(ray_address), tasks, policy, url, run_id=run_id,
                                 group_size=group_size, limits=limits,
                                 on_group=lambda i, r: bar.advance(task))
    if as_json:
        print_json(result)
        return
    _report(result["run_id"], result["trajectories"], result["skipped"], time.monotonic() - started)
    for failure in result["failed"]:
        err_console.print(f"[red]task {failure['task_id']}: worker lost ({failure['error']})[/]")
