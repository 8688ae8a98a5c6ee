"""`agentrm replay`: play back a trajectory, export it (asciicast, HTML) or re-execute it."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from agentrm.cli.common import DEFAULT_DB, JsonOption, console, print_json
from agentrm.errors import InputError


def register(app: typer.Typer) -> None:
    app.command("replay", help="Play back a trajectory (store id or file), export it, or rerun it.")(
        replay)


def replay(
    source: Annotated[str, typer.Argument(metavar="TRAJ_ID|FILE",
                                          help="A trajectory id in --db, or a JSONL/ATIF/.traj file.")],
    db: Annotated[str | None, typer.Option(
        "--db", envvar="AGENTRM_DB", show_default=DEFAULT_DB,
        help="Trace store URL for ids (and for scores of a file's trajectory).")] = None,
    index: Annotated[int, typer.Option("--index", min=0,
                                       help="Which trajectory of a multi-trajectory file.")] = 0,
    speed: Annotated[float, typer.Option("--speed", help="Playback speed factor.")] = 1.0,
    interactive: Annotated[bool, typer.Option(
        "--interactive/--no-interactive",
        help="Step with keys (default on a terminal) or print everything at once.")] = True,
    play: Annotated[bool, typer.Option("--play", help="Start playing at once.")] = False,
    max_lines: Annotated[int, typer.Option("--max-lines", min=0,
                                           help="Fold outputs longer than this (0 = never).")] = 40,
    idle_limit: Annotated[float, typer.Option(
        "--idle-limit", min=0, help="Shorten recorded pauses longer than this (s; 0 = never).")] = 2.0,
    export_cast: Annotated[Path | None, typer.Option(
        "--export-cast", metavar="FILE.cast", help="Write an asciicast v2 recording.")] = None,
    export_html: Annotated[Path | None, typer.Option(
        "--export-html", metavar="FILE.html", help="Write one self-contained HTML page.")] = None,
    width: Annotated[int, typer.Option("--width", min=40, help="Terminal width of the cast.")] = 110,
    height: Annotated[int, typer.Option("--height", min=10, help="Terminal height of the cast.")] = 32,
    rerun: Annotated[bool, typer.Option(
        "--rerun", help="Re-execute the recorded actions in a fresh sandbox; exit 1 on divergence.")] = False,
    image: Annotated[str | None, typer.Option(
        "--image", help="Sandbox image for --rerun (default: the recorded one).")] = None,
    json_out: JsonOption = False,
) -> None:
    from agentrm.replay.view import build_view, load_scores, load_trajectory

    if not speed > 0:
        raise InputError(f"--speed must be > 0, got {speed:g}")
    url = db or DEFAULT_DB
    traj, from_store = load_trajectory(source, url, index)
    scores, advantages = [], []
    if from_store or db:  # a file's trajectory may have been imported and scored
        scores, advantages = load_scores(url, traj.id)
    view = build_view(traj, scores, advantages)

    if rerun and (export_cast or export_html):
        raise InputError("--rerun cannot be combined with --export-cast/--export-html")
    if not view.turns and (rerun or export_cast or export_html):
        raise InputError(f"trajectory {traj.id!r} is a prediction with no turns: there is nothing "
                         "to rerun or export (replay without flags shows its patch)")
    if rerun:
        _rerun(traj, url if (from_store or db) else None, image, json_out)
        return
    if export_cast or export_html:
        _export(view, export_cast, export_html, width, height, idle_limit, max_lines, json_out)
        return
    if json_out:
        from dataclasses import asdict

        print_json(asdict(view))
        return
    if interactive and view.turns and sys.stdout.isatty():
        from agentrm.replay.player import KeyReader, Player, open_tty

        fd = open_tty()
        if fd is not None:
            player = Player(view, speed, max_lines, idle_limit, out=sys.stdout,
                            color_system=console.color_system)
            try:
                with KeyReader(fd) as keys:
                    player.run(keys, play=play)
            finally:
                if fd != sys.stdin.fileno():
                    os.close(fd)
            return
    from agentrm.replay.render import full_renderable

    console.print(full_renderable(view, max_lines))


def _export(view, cast: Path | None, page: Path | None, width: int, height: int,
            idle_limit: float, max_lines: int, json_out: bool) -> None:
    from agentrm.replay.asciicast import write_cast
    from agentrm.replay.html import write_html

    written = []
    for path in (p for p in (cast, page) if p):
        if path.is_dir():
            raise InputError("is a directory, expected a file to write", path=str(path))
    try:
        if cast:
            n = write_cast(view, cast, width, height, idle_time_limit=idle_limit or None)
            written.append({"kind": "asciicast", "path": str(cast), "events": n})
        if page:
            write_html(view, page, max_lines)
            written.append({"kind": "html", "path": str(page), "turns": len(view.turns)})
    except OSError as exc:
        raise InputError(f"cannot write: {exc.strerror or exc}",
                         path=exc.filename or str(cast or page)) from exc
    if json_out:
        print_json(written)
        return
    for item in written:
        extra = f"{item['events']} events" if item["kind"] == "asciicast" else f"{item['turns']} turns"
        console.print(f"wrote {item['kind']} {item['path']} ({extra})", highlight=False, markup=False)


def _rerun(traj, url: str | None, image: str | None, json_out: bool) -> None:
    from agentrm.cli.common import progress
    from agentrm.replay.rerun import rerun_trajectory

    with progress() as bar:
        task = bar.add_task(f"rerun {traj.id}", total=len(traj.turns))
        report = rerun_trajectory(traj, image=image, store_url=url,
                                  on_progress=lambda done, total: bar.update(task, completed=done))
    if json_out:
        print_json(report.as_dict())
    else:
        from agentrm.replay.rerun import render_report

        console.print(render_report(report))
    if report.diverged:
        raise SystemExit(1)  # typer.Exit is swallowed by main()'s non-standalone mode
    if not report.calls_compared:
        raise SystemExit(3)  # nothing was checked: not a success
