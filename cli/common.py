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

console = Console()
err_console = Console(stderr=True)


def db_url(value: str | None) -> str:
    return value or os.environ.get("AGENTRM_DB") or DEFAULT_DB


def open_db(value: str | None):
    """The trace store named by --db / AGENTRM_DB (default ./agentrm.db)."""
    from agentrm.traces import open_store

    return open_store(db_url(value))


def print_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, indent=2, default=str, ensure_ascii=False) + "\n")


def rich_table(title: str | None, columns: list[str], rows: list[list[Any]]) -> Table:
    table = Table(title=title, show_lines=False)
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*["" if v is None else str(v) for v in row])
    return table


def progress():
    """A rich progress bar on stderr (so --json output on stdout stays clean)."""
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
        SpinnerColumn(), TextColumn("[progress.description]{task.description}"), BarColumn(),
        MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn(),
        console=err_console, transient=False,
    )


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
