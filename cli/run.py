"""`agentrm run`: group rollouts of a task file with a policy, logged to the trace store.
Flags come from agentrm.rollout.config.RolloutConfig; the driver is agentrm.rollout.run."""

from __future__ import annotations

import inspect
import threading
import time
from collections import Counter
from typing import Any

import typer

from agentrm.cli.common import (
    DbOption,
    JsonOption,
    OtelOption,
    console,
    db_url,
    err_console,
    otel,
    print_json,
    rich_table,
)
from agentrm.cli.options import build, command, parameters
from agentrm.rollout import events as ev
from agentrm.rollout.config import RolloutConfig

INFRA = {"sandbox_error", "model_error", "crashed"}
_KW = inspect.Parameter.KEYWORD_ONLY


class LiveView:
    """Run state fed by the driver's events (from worker threads), drawn by rich.Live."""

    def __init__(self):
        self.lock = threading.Lock()
        self.total = 0
        self.rows: dict[str, dict] = {}
        self.started = time.monotonic()

    def __call__(self, event: ev.Event) -> None:
        with self.lock:
            match event:
                case ev.RunPlanned(total=total):
                    self.total = total
                case ev.TrajectorySkipped(trajectory_id=tid):
                    self.rows[tid] = {"turns": event.turns, "status": event.status,
                                      "note": "skipped (finished)"}
                case ev.TrajectoryStarted(trajectory_id=tid):
                    self.rows[tid] = {"turns": event.resumed_turns, "status": "running",
                                      "note": "resumed" if event.resumed else ""}
                case ev.TurnDone(trajectory_id=tid) if tid in self.rows:
                    self.rows[tid]["turns"] = event.turn
                case ev.TrajectoryEnded(trajectory_id=tid):
                    self.rows.setdefault(tid, {}).update(status=event.status, turns=event.turns,
                                                         note=(event.error or "")[:60])
                case ev.GroupFailed(task_id=task_id):
                    self.rows[f"{task_id} (group)"] = {"turns": 0, "status": "failed",
                                                       "note": event.error[:60]}

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


def _run(values: dict[str, Any]) -> None:
    from rich.live import Live

    from agentrm.rollout.config import run_config
    from agentrm.traces import open_store

    config = build(RolloutConfig, values)
    otel(values["otel"])
    url = db_url(values["db"])
    view = LiveView()
    with Live(console=err_console, get_renderable=view.render, refresh_per_second=4, transient=True):
        # the store is opened only once the input is valid: bad input writes nothing
        summary = run_config(lambda: open_store(url), config, store_url=url, on_event=view)
    if values["json_"]:
        print_json(summary.as_dict())
        return
    _report(summary)


def _report(summary: Any) -> None:
    rows = summary.trajectories
    console.print(rich_table(f"run {summary.run_id}", ["trajectory", "status", "turns", "invalid", "reward", "error"],
                             [[t["id"], t["exit_status"], t["turns"], t["invalid_turns"],
                               t["reward"], (t["error"] or "")[:60]] for t in rows]))
    console.print(f"{len(rows)} run, {len(summary.skipped)} skipped (already finished) "
                  f"in {summary.duration_s:.1f}s  "
                  + "  ".join(f"{k}={v}" for k, v in sorted(summary.counts.items())), highlight=False,
                  markup=False)
    failed = sum(summary.counts.get(s, 0) for s in INFRA)
    if failed:
        err_console.print(f"{failed} trajectories failed on infrastructure (reward unknown); "
                          f"rerun with --run-id {summary.run_id} to retry them", style="yellow",
                          markup=False, highlight=False)
    for group in summary.failed:
        err_console.print(f"task {group['task_id']}: worker lost ({group['error']})", style="red",
                          markup=False, highlight=False)


run = command(_run, parameters(RolloutConfig) + [
    inspect.Parameter("otel", _KW, default=False, annotation=OtelOption),
    inspect.Parameter("db", _KW, default=None, annotation=DbOption),
    inspect.Parameter("json_", _KW, default=False, annotation=JsonOption)],
    "Roll a policy out on tasks in Docker sandboxes; every turn lands in the trace store.")


def register(app: typer.Typer) -> None:
    app.command("run")(run)
