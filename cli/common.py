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
