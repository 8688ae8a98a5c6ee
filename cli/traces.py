"""`agentrm traces import|export|list|show|runs`: the trace store from the command line."""

from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Annotated

import typer

from agentrm.cli.common import (
    DbOption,
    JsonOption,
    console,
    db_url,
    err_console,
    print_json,
    print_table,
    progress,
    rich_table,
)

app = typer.Typer(help="Import, export, list and inspect stored trajectories.", no_args_is_help=True)

RunOpt = Annotated[str | None, typer.Option("--run", help="Only this run id.")]
TaskOpt = Annotated[str | None, typer.Option("--task", help="Only this task id.")]
GroupOpt = Annotated[str | None, typer.Option("--group", help="Only this group id.")]
StatusOpt = Annotated[str | None, typer.Option("--status", help="Only this exit status (submitted, turn_limit, …).")]


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="traces")


def _store(db: str | None, must_exist: bool = False):
    """The store at --db; read-only commands pass must_exist so they never create a file."""
    from agentrm.traces import open_store

    return open_store(db_url(db), must_exist=must_exist)


class _LazyProgress:
    """A progress bar that appears only once the work has taken more than a second."""

    def __init__(self, total: int | None, label: str):
        self.total, self.label, self.start = total, label, time.monotonic()
        self.done, self.bar, self.task = 0, None, None

    def __call__(self, n: int) -> None:
        self.done += n
        if self.bar is None and time.monotonic() - self.start > 1.0:
            self.bar = progress()
            self.bar.start()
            self.task = self.bar.add_task(self.label, total=self.total, completed=self.done)
        elif self.bar is not None:
            self.bar.update(self.task, completed=self.done)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()


def _count_lines(path: Path) -> int | None:
    if not path.name.endswith(".jsonl") or not path.is_file():
        return None
    with path.open("rb") as fh:
        return sum(1 for line in fh if line.strip())


@app.command("import")
def import_(
    file: Annotated[Path, typer.Argument(help="A .jsonl, ATIF .json, SWE-agent .traj or mini-swe-agent .traj.json file; "
                                              "a Harbor trial or job directory; Agent Lightning spans "
                                              "(a file or directory); or a directory of trace files.")],
    run_id: Annotated[str | None, typer.Option("--run-id", help="Store under this run id (default: a new import-… id).")] = None,
    fmt: Annotated[str | None, typer.Option("--format", help="jsonl | atif | swe-agent | mini-swe-agent | harbor | agentlightning "
                                                              "(default: by name and content).")] = None,
    db: DbOption = None, as_json: JsonOption = False,
) -> None:
    """Import trajectories from FILE (or a directory) in one transaction: all of it, or nothing."""
    from agentrm.traces.io import read_trajectories

    run_id = run_id or f"import-{time.strftime('%Y%m%d-%H%M%S')}-{file.stem[:40]}"
    counted = {"turns": 0}

    def counting(trajs):
        for t in trajs:
            counted["turns"] += len(t.turns)
            yield t

    trajectories = read_trajectories(file, fmt)  # a missing file fails before a store is made
    store = _store(db)
    bar = _LazyProgress(_count_lines(file), f"importing {file.name}")
    try:
        n = store.import_trajectories(counting(trajectories), run_id=run_id,
                                      on_progress=bar, run_config={"source": str(file)})
    finally:
        bar.close()
        store.close()
    result = {"imported": n, "turns": counted["turns"], "run_id": run_id, "db": store.url}
    if as_json:
        print_json(result)
    else:
        from rich.markup import escape  # paths and ids are data, never markup: runs[v2].jsonl

        console.print(f"imported {n} trajectories ({counted['turns']} turns) from {escape(str(file))} "
                      f"as run [bold]{escape(run_id)}[/] into {escape(store.url)}", highlight=False)


@app.command("export")
def export(
    output: Annotated[Path | None, typer.Option("-o", "--output", help="Write here (default: stdout). "
                                                "With --format atif: a .json file for one trajectory, "
                                                "else a new directory (one ID.atif.json each).")] = None,
    run: RunOpt = None, task: TaskOpt = None, group: GroupOpt = None, status: StatusOpt = None,
    fmt: Annotated[str, typer.Option("--format", help="jsonl (one trajectory a line) | atif "
                                                      "(one ATIF document a trajectory, step rewards "
                                                      "from the atif scores).")] = "jsonl",
    db: DbOption = None, as_json: JsonOption = False,
) -> None:
    """Export trajectories as JSONL or ATIF (formats `traces import` reads back)."""
    from rich.markup import escape

    from agentrm.errors import InputError

    if fmt not in ("jsonl", "atif"):
        raise InputError(f"--format {fmt!r} is not one of: jsonl, atif")
    exit_status = _status(status)
    store = _store(db, must_exist=True)
    try:
        if run is not None:
            store.get_run(run)  # an unknown run is a mistake, not an empty export
        trajs = store.iter_trajectories(run_id=run, task_id=task, group_id=group,
                                        exit_status=exit_status)
        if fmt == "atif":
            n = _write_atif(store, trajs, output)
        else:
            n = _write_stdout(trajs) if output is None else _write_file(trajs, output)
    finally:
        store.close()
    if output is not None:
        if as_json:
            print_json({"exported": n, "path": str(output)})
        else:
            err_console.print(f"exported {n} trajectories to {escape(str(output))}", highlight=False)


def _write_file(trajs, output: Path) -> int:
    """All or nothing: written beside the target and renamed into place once complete."""
    from agentrm.errors import InputError
    from agentrm.files import atomic_open
    from agentrm.traces.io import write_jsonl

    try:
        with atomic_open(output, parents=False) as out:
            return write_jsonl(trajs, out)
    except OSError as exc:
        raise InputError(f"cannot write: {exc.strerror}", path=str(output)) from None


def _write_atif(store, trajs, output: Path | None) -> int:
    """ATIF holds one trajectory per document: one document to stdout or a .json file, else a
    directory of them, written beside the target and renamed into place once complete."""
    from agentrm.errors import InputError
    from agentrm.traces.harnesses import atif_documents, write_atif_directory

    if output is None or output.suffix.lower() == ".json":
        docs = list(atif_documents(store, trajs, limit=2))
        if len(docs) != 1:
            found = "no trajectory matches" if not docs else "more than one trajectory matches"
            raise InputError(f"{found}; ATIF holds one per document: narrow the selection "
                             "(--run/--task/--group/--status) or give -o a directory",
                             path=None if output is None else str(output))
        text = json.dumps(docs[0][1], ensure_ascii=False, indent=2) + "\n"
        if output is None:
            _write_stdout_text(text)
            return 1
        from agentrm.files import atomic_open

        try:
            with atomic_open(output, parents=False) as out:
                out.write(text)
        except OSError as exc:
            raise InputError(f"cannot write: {exc.strerror}", path=str(output)) from None
        return 1
    return write_atif_directory(atif_documents(store, trajs), output)


def _write_stdout_text(text: str) -> None:
    try:
        sys.stdout.write(text)
        sys.stdout.flush()
    except BrokenPipeError:  # `| head`: end quietly, as the JSONL export does
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        raise typer.Exit(141) from None


def _write_stdout(trajs) -> int:
    """JSONL on stdout; a reader that stops early (`| head`) ends the export quietly."""
    import os
    import sys

    from agentrm.traces.io import write_jsonl

    try:
        n = write_jsonl(trajs, sys.stdout)
        sys.stdout.flush()
        return n
    except BrokenPipeError:
        # Python would otherwise complain again when it flushes stdout at exit
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        raise typer.Exit(141) from None  # 128 + SIGPIPE, as `cat` ends in the same spot


def _status(value: str | None):
    from agentrm.errors import InputError
    from agentrm.types import ExitStatus

    if value is None:
        return None
    try:
        return ExitStatus(value)
    except ValueError:
        raise InputError(f"--status {value!r} is not one of: "
                         f"{', '.join(s.value for s in ExitStatus)}") from None


@app.command("list")
def list_(
    run: RunOpt = None, task: TaskOpt = None, group: GroupOpt = None, status: StatusOpt = None,
    scorer: Annotated[str | None, typer.Option("--scorer", help="Show and filter by this scorer's score (else the outcome reward).")] = None,
    min_score: Annotated[float | None, typer.Option("--min-score", help="Keep score (or reward) ≥ this.")] = None,
    max_score: Annotated[float | None, typer.Option("--max-score", help="Keep score (or reward) ≤ this.")] = None,
    limit: Annotated[int | None, typer.Option("--limit", min=1, help="At most this many rows.")] = None,
    wide: Annotated[bool, typer.Option("--wide", help="Also the run, task and group ids and the "
                                                      "failure kind (they are parts of the id).")] = False,
    db: DbOption = None, as_json: JsonOption = False,
) -> None:
    """List trajectories from their summary columns (turns are not loaded). Ids are printed
    whole on one line, whatever the width; --json has every column."""
    exit_status = _status(status)  # a bad flag is reported before a missing store
    store = _store(db, must_exist=True)
    try:
        rows = store.summaries(run_id=run, task_id=task, group_id=group,
                               exit_status=exit_status, scorer=scorer,
                               min_score=min_score, max_score=max_score, limit=limit)
    finally:
        store.close()
    if as_json:
        print_json(rows)
        return
    cols = ["id", "exit_status", "reward", "n_turns"]
    if wide:
        cols = ["id", "run_id", "task_id", "group_id", "exit_status", "failure_kind", "reward", "n_turns"]
    cols += ["score"] if scorer else []
    headers = [SHORT_HEADERS.get(c, c) for c in cols]  # narrow, so a long id still fits 80 columns
    print_table(rich_table(f"{len(rows)} trajectories", headers,
                           [[_plain(_fmt(r.get(c))) for c in cols] for r in rows],
                           keep_whole=4 if wide else 1))


SHORT_HEADERS = {"exit_status": "status", "n_turns": "turns", "failure_kind": "failure"}


def _fmt(value):
    return f"{value:.4g}" if isinstance(value, float) else value


def _plain(value) -> str:
    """Recorded data for a table cell: terminal escapes and control bytes dropped (rich_table
    never reads its cells as markup)."""
    from agentrm.replay.view import clean_text

    return clean_text("" if value is None else str(value))


def _safe(value) -> str:
    """Recorded data inside a markup string: cleaned, and its brackets escaped."""
    from rich.markup import escape

    return escape(_plain(value))


def _clip(text, width: int = 60) -> str:
    if text is None:
        return ""
    from agentrm.replay.view import clean_text

    text = " ".join(clean_text(text if isinstance(text, str) else str(text)).split())
    return text if len(text) <= width else text[: width - 1] + "…"


@app.command("show")
def show(
    trajectory_id: Annotated[str, typer.Argument(metavar="ID", help="Trajectory id.")],
    db: DbOption = None, as_json: JsonOption = False,
) -> None:
    """Show one trajectory turn by turn."""
    from agentrm.errors import NotFoundError
    from agentrm.replay.view import id_hint

    store = _store(db, must_exist=True)
    try:
        traj = store.get_trajectory(trajectory_id)
    except NotFoundError as exc:
        raise NotFoundError(f"{exc}{id_hint(store, trajectory_id)}") from None
    finally:
        store.close()
    if as_json:
        data = asdict(traj)
        data["failure_kind"] = traj.failure_kind
        print_json(data)
        return
    console.print(f"[bold]{_safe(traj.id)}[/]  task={_safe(traj.task_id)}  group={_safe(traj.group_id)}  "
                  f"run={_safe(traj.run_id)}  status={traj.exit_status.value}  "
                  f"failure={traj.failure_kind.value if traj.failure_kind else '-'}  reward={traj.reward}",
                  highlight=False)
    rows = []
    for t in traj.turns:
        obs = t.observation[-1].get("content") if t.observation else ""
        calls = ", ".join(_plain(c.name) + ("" if c.valid else "(invalid)") for c in t.tool_calls)
        tokens = f"{t.prompt_tokens or '-'}/{t.completion_tokens or '-'}"
        rows.append([t.index, t.anchor_key[:8], "yes" if t.valid else "NO", _clip(obs, 40),
                     _clip(t.assistant.get("content"), 50), calls, tokens,
                     _fmt(t.duration_s)])
    console.print(rich_table(f"{len(traj.turns)} turns", ["#", "anchor", "valid", "observation",
                  "assistant", "tool calls", "tokens p/c", "s"], rows))
    if traj.tail:
        console.print(f"tail: {len(traj.tail)} message(s) after the last turn")


@app.command("runs")
def runs(db: DbOption = None, as_json: JsonOption = False) -> None:
    """List runs (id, kind, status, start/end)."""
    store = _store(db, must_exist=True)
    try:
        rows = store.list_runs()
    finally:
        store.close()
    if as_json:
        print_json(rows)
        return
    cols = ["id", "kind", "status", "started_at", "ended_at"]
    fmt = lambda v: time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(v)) if isinstance(v, float) else v  # noqa: E731
    console.print(rich_table(f"{len(rows)} runs", cols, [[fmt(r[c]) for c in cols] for r in rows]))
