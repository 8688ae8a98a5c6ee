"""Tables read well in any terminal and log: at 80 columns (or 40) every id prints whole on one
line, so two trajectories never look alike, in every command's table (not only traces list); a
table that cannot fit boxed drops its borders before it grows past the width; `--wide` adds the
id's parts; cells are never rich markup (`runs[v2].jsonl` and `[bold]x[/]` print as written)."""

from __future__ import annotations

import io

from rich.console import Console
from typer.testing import CliRunner

from agentrm.cli.common import print_table, rich_table
from agentrm.cli.main import app
from agentrm.traces import open_store
from agentrm.types import ExitStatus, Trajectory, Turn


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
    assert "group_id" in header and "failure" in header
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


def test_a_default_run_id_fits_80_columns_and_awk_gets_the_ids(tmp_path):
    """`run-YYYYmmdd-HHMMSS-xxxxxx/<swe-bench instance>/k` is 51 characters: boxed, the table
    needs 88; without borders and with short headers it fits, and column 1 is the id."""
    url = f"sqlite:///{tmp_path / 'swe.db'}"
    store = open_store(url)
    run = store.begin_run({})  # the default id a newcomer gets
    ids = [f"{run}/astropy__astropy-12907/{k}" for k in range(3)]
    for tid in ids:
        store.begin_trajectory(Trajectory(id=tid, task_id="astropy__astropy-12907",
                                          group_id=f"{run}/astropy__astropy-12907", run_id=run))
        store.end_trajectory(tid, ExitStatus.TURN_LIMIT, 0.0)
    res = CliRunner().invoke(app, ["traces", "list", "--db", url], env={"COLUMNS": "80"})
    assert res.exit_code == 0, res.output
    lines = [line for line in res.output.splitlines() if line.strip()]
    assert max(len(line.rstrip()) for line in lines) <= 80, res.output
    assert [line.split()[0] for line in lines if line.startswith(run)] == ids
    assert lines[1].split() == ["id", "status", "reward", "turns"]


def test_traces_show_keeps_its_last_column_at_80_columns(tmp_path):
    """Eight columns whose words cannot fit 80 boxed: the table drops its borders instead of
    cropping the 's' column away."""
    url = f"sqlite:///{tmp_path / 'show.db'}"
    store = open_store(url)
    run = store.begin_run({}, run_id="r")
    store.begin_trajectory(Trajectory(id="r/t/0", task_id="t", group_id="r/t", run_id=run))
    for k in range(2):
        store.append_turn("r/t/0", Turn(index=k, observation=[{"role": "user", "content": "repository "
                                                               "agentrm/textkit is cloned"}],
                                        assistant={"role": "assistant", "content": "ok"},
                                        prompt_tokens=625, completion_tokens=28, duration_s=24.71))
    store.end_trajectory("r/t/0", ExitStatus.TURN_LIMIT, 0.0)
    res = CliRunner().invoke(app, ["traces", "show", "r/t/0", "--db", url], env={"COLUMNS": "80"})
    assert res.exit_code == 0, res.output
    assert max(len(line.rstrip()) for line in res.output.splitlines()) <= 80, res.output
    header = next(line for line in res.output.splitlines() if "anchor" in line)
    assert header.split()[-1] == "s" and "24.71" in res.output


def test_every_command_keeps_ids_whole_not_only_traces_list(tmp_path):
    """`agentrm score` prints its table with console.print (no keep_whole): a 'trajectory'
    column is an id column all the same; at 40 columns it used to fold ids over lines."""
    url, ids = stored(tmp_path)
    res = CliRunner().invoke(app, ["score", "--run", ids[0].split("/")[0], "-s", "submitted",
                                   "--db", url], env={"COLUMNS": "40"})
    assert res.exit_code == 0, res.output
    lines = res.output.splitlines()
    for tid in ids:
        assert sum(tid in line for line in lines) == 1, (tid, res.output)


def layout(width: int, id_length: int) -> list[str]:
    out = io.StringIO()
    table = rich_table("t", ["id", "status", "note"],
                       [["x" * (id_length - 1) + str(k), "turn_limit", "a long note " * 3] for k in range(2)])
    print_table(table, Console(file=out, width=width))
    return out.getvalue().splitlines()


def test_fit_boxed_then_bare_then_wider_never_a_cut_id():
    boxed = layout(80, 30)
    assert boxed[1].startswith("┏") and max(map(len, boxed)) <= 80
    # boxed: id 60 + 'turn_limit' 10 + 'note' 4 (longest words) + 10 borders = 84; bare: 78
    bare = layout(80, 60)
    assert not any("│" in line or "┃" in line for line in bare) and max(map(len, bare)) <= 80
    assert sum(("x" * 59 + "0") in line for line in bare) == 1
    wider = layout(40, 60)  # nothing fits 40: one long line per row, the id whole
    assert sum(("x" * 59 + "1") in line for line in wider) == 1 and max(map(len, wider)) > 40
