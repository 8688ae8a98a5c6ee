"""Options and output helpers shared by every command group."""

from __future__ import annotations

import json
import os
import sys
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

DEFAULT_DB = "sqlite:///agentrm.db"

DbOption = Annotated[
    str,
    typer.Option(
        "--db",
        envvar="AGENTRM_DB",
        help="Trace store URL: sqlite:///FILE (default ./agentrm.db) or postgresql+psycopg://…",
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON instead of tables.")]
OtelOption = Annotated[bool, typer.Option("--otel", help="Emit OpenTelemetry spans (OTLP when "
                                                     "OTEL_EXPORTER_OTLP_ENDPOINT is set, else stderr).")]


def otel(enabled: bool) -> None:
    """`--otel`: configure OpenTelemetry before the command's work starts."""
    if enabled:
        from agentrm import telemetry

        telemetry.setup()

err_console = Console(stderr=True, emoji=False)  # user text such as `openai:x:` stays text


def db_url(value: str | None) -> str:
    return value or os.environ.get("AGENTRM_DB") or DEFAULT_DB


def open_db(value: str | None, must_exist: bool = False):
    """The trace store named by --db / AGENTRM_DB (default ./agentrm.db); commands that read
    what is stored pass `must_exist`, so a typo never leaves an empty database behind."""
    from agentrm.traces import open_store

    return open_store(db_url(value), must_exist=must_exist)


def print_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, indent=2, default=str, ensure_ascii=False) + "\n")


# Column headers that hold ids people copy into the next command: never wrapped or cut.
ID_COLUMNS = frozenset({"id", "trajectory", "trajectory_id", "run", "run_id", "task_id",
                        "group_id", "instance", "instance_id"})


class IdTable(Table):
    """A table made by `rich_table`: `console.print` lays it out with `fit`."""


def rich_table(title: str | None, columns: list[str], rows: list[list[Any]],
               keep_whole: int = 0) -> IdTable:
    """A table whose cells are plain text: ids, paths and messages are user data and never
    rich markup (`runs[v2].jsonl` stays as it is); pass a rich `Text` to style a cell. Id
    columns (headers in ID_COLUMNS, and the first `keep_whole`) never wrap or get cut; the
    others give way. Print it with `console.print` or `print_table`, which never crop it."""
    from rich.text import Text

    cells = [[v if isinstance(v, Text) else Text("" if v is None else str(v)) for v in row] for row in rows]
    widths = [max([len(column)] + [r[k].cell_len for r in cells if k < len(r)]) for k, column in enumerate(columns)]
    table = IdTable(title=None if title is None else Text(title), show_lines=False)
    for k, column in enumerate(columns):
        if k < keep_whole or column in ID_COLUMNS:
            table.add_column(Text(column), no_wrap=True, min_width=widths[k])
        else:
            table.add_column(Text(column), overflow="fold", min_width=min(len(column), widths[k]))
    for row in cells:
        table.add_row(*row)
    return table


def fit(table: Table, out: Console) -> int:
    """Lay a rich_table out so its ids stay whole, and say how wide to print it: boxed when
    that fits the console; else without borders (like `docker ps`, and `awk '{print $1}'`
    gets the ids); else wider than the console — a long line in a log is better than an id
    that cannot be copied (or a last column cropped away)."""
    from rich.measure import Measurement

    def least() -> int:  # what rich cannot go below: whole ids, the longest word of each cell
        return Measurement.get(out, out.options.update_width(1 << 16), table).minimum

    if not isinstance(table, IdTable) or least() <= out.width:
        return out.width
    table.box, table.show_edge, table.pad_edge, table.padding = None, False, False, (0, 1)
    return max(out.width, least())


def print_table(table: Table, out: Console | None = None) -> None:
    """Print a table without cropping it (see `fit`)."""
    out = out or console
    width = fit(table, out)
    if width <= out.width:
        Console.print(out, table, crop=False)
        return
    wide = Console(width=width, file=out.file, force_terminal=out.is_terminal, emoji=False,
                   color_system=out.color_system if out.color_system else None, no_color=out.no_color)
    wide.print(table, crop=False)


class TableConsole(Console):
    """stdout's console: a rich_table printed through it goes through `print_table`, so no
    command crops an id whatever the terminal's width."""

    def print(self, *objects: Any, **kwargs: Any) -> None:  # type: ignore[override]
        if len(objects) == 1 and isinstance(objects[0], IdTable) and not kwargs:
            print_table(objects[0], self)
            return
        super().print(*objects, **kwargs)


console = TableConsole(emoji=False)


def _fold_option_names() -> None:
    """typer's help joins a flag's names with ',' into one word its options table cannot wrap,
    so at 80 columns `--dataset,--dataset_name,-…` was cut to `--dataset,--dataset_na…`: join
    them with ', ' instead, and every accepted spelling shows, over two lines if need be."""
    import re

    from typer import rich_utils

    names = re.compile(r"-[\w-]+(,-[\w-]+)+")

    def folding(base: type) -> Any:
        class Folding(base):  # type: ignore[misc, valid-type]
            def __call__(self, text: Any) -> Any:
                if isinstance(text, str) and names.fullmatch(text):
                    text = text.replace(",", ", ")
                return super().__call__(text)

        return Folding()

    rich_utils.highlighter = folding(rich_utils.OptionHighlighter)
    rich_utils.negative_highlighter = folding(rich_utils.NegativeOptionHighlighter)


_fold_option_names()


def progress():
    """A rich progress bar on stderr (so --json output on stdout stays clean); in a log or a
    pipe, where a bar cannot redraw, a plain line every 10 seconds instead."""
    if not err_console.is_terminal:
        return LogProgress()
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        SpinnerColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    return Progress(
        SpinnerColumn(), TextColumn("{task.description}", markup=False), BarColumn(),
        MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn(),
        console=err_console, transient=False,
    )


class LogProgress:
    """The subset of rich.progress.Progress the commands use, as one plain line per task every
    `every` seconds (from a timer, so a long step still shows signs of life) and at the end."""

    def __init__(self, every: float = 10.0):
        import threading
        import time

        self.every, self.clock = every, time.monotonic
        self.tasks: dict[int, dict[str, Any]] = {}
        self.next_key = 0
        self.lock, self.stopped = threading.Lock(), threading.Event()
        self.thread: Any = None

    def add_task(self, description: str, total: float | None = None, completed: float = 0,
                 **_: Any) -> int:
        with self.lock:
            key = self.next_key
            self.next_key += 1
            self.tasks[key] = {"description": description, "total": total, "completed": completed,
                               "start": self.clock()}
        return key

    def update(self, task: int, *, completed: float | None = None, total: float | None = None,
               advance: float | None = None, description: str | None = None, **_: Any) -> None:
        with self.lock:
            t = self.tasks[task]
            if completed is not None:
                t["completed"] = completed
            if advance is not None:
                t["completed"] += advance
            if total is not None:
                t["total"] = total
            if description is not None:
                t["description"] = description

    def advance(self, task: int, advance: float = 1) -> None:
        self.update(task, advance=advance)

    def remove_task(self, task: int) -> None:
        with self.lock:
            self.tasks.pop(task, None)

    def _print(self) -> None:
        with self.lock:
            lines = []
            for t in self.tasks.values():
                done = f"{t['completed']:g}" + (f"/{t['total']:g}" if t["total"] else "")
                lines.append(f"{t['description']}: {done} ({self.clock() - t['start']:.0f} s)")
        for line in lines:
            err_console.print(line, markup=False, highlight=False, soft_wrap=True)

    def _tick(self) -> None:
        while not self.stopped.wait(self.every):
            self._print()

    def start(self) -> None:
        import threading

        self.thread = threading.Thread(target=self._tick, daemon=True, name="agentrm-progress")
        self.thread.start()

    def stop(self) -> None:
        if self.thread is not None and not self.stopped.is_set():
            self.stopped.set()
            self._print()

    def __enter__(self) -> LogProgress:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class LazyProgress:
    """A progress bar that appears with the first update, so errors raised while a stage gets
    ready (a bad model, a missing run) print as one clean line without a bar above them."""

    def __init__(self, description: str):
        self.description, self.bar, self.task = description, None, None

    def update(self, done: int, total: int | None = None) -> None:
        if self.bar is None:
            self.bar = progress()
            self.bar.start()
            self.task = self.bar.add_task(self.description, total=total)
        self.bar.update(self.task, completed=done, total=total)

    def __enter__(self) -> LazyProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.stop()
