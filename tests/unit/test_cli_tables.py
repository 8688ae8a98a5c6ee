"""Tables read well in any terminal and log: at 80 columns (or 40) every id prints whole on one
line, so two trajectories never look alike; `--wide` adds the id's parts; cells are never rich
markup (`runs[v2].jsonl` and `[bold]x[/]` print as written)."""

from __future__ import annotations

import io

from rich.console import Console
from typer.testing import CliRunner

from agentrm.cli.common import rich_table
from agentrm.cli.main import app
from agentrm.traces import open_store
from agentrm.types import ExitStatus, Trajectory


def stored(tmp_path) -> tuple[str, list[str]]:
    url = f"sqlite:///{tmp_path / 'ids.db'}"
    store = open_store(url)
    run = store.begin_run({}, run_id="main-agent-with-a-long-run-name")
    ids = [f"{run}/agentrm__inventory-{k}/{m}" for k in (1, 2) for m in (0, 1)]
    for tid in ids:
        store.begin_trajectory(Trajectory(id=tid, task_id=tid.split("/")[1], group_id=tid.rsplit("/", 1)[0],
                                          run_id=run))
        store.end_trajectory(tid, ExitStatus.TURN_LIMIT, 0.0)
    return url, ids


def test_ids_print_whole_on_one_line_at_any_width(tmp_path):
    url, ids = stored(tmp_path)
    for columns in ("80", "40"):
        res = CliRunner().invoke(app, ["traces", "list", "--db", url], env={"COLUMNS": columns})
        assert res.exit_code == 0, res.output
        lines = res.output.splitlines()
        for tid in ids:
            assert sum(tid in line for line in lines) == 1, (tid, res.output)
    wide = CliRunner().invoke(app, ["traces", "list", "--db", url, "--wide"], env={"COLUMNS": "80"})
    assert wide.exit_code == 0
    header = next(line for line in wide.output.splitlines() if "run_id" in line)
    assert "group_id" in header and "failure_kind" in header
    row = next(line for line in wide.output.splitlines() if ids[0] in line)
    assert "main-agent-with-a-long-run-name/agentrm__inventory-1 " in row  # the group id, whole


def test_cells_are_never_markup():
    out = io.StringIO()
    Console(file=out, width=120).print(rich_table("files [v2]", ["path", "note"],
                                                  [["runs[v2].jsonl", "[bold red]x[/]"],
                                                   ["pip install 'agentrm[postgres]'", None]]))
    text = out.getvalue()
    assert "runs[v2].jsonl" in text and "[bold red]x[/]" in text and "files [v2]" in text
    assert "'agentrm[postgres]'" in text
