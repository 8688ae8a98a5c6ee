"""`agentrm score`: per-turn and per-trajectory scores for a stored run or a trajectory file.

Flags come from agentrm.scoring.ScoreConfig; every --scorer NAME is built through the scorer
registry (verifiers/registry.py), which also says which model flags each scorer takes.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Annotated, Any

import typer

from agentrm.cli.common import (
    DbOption,
    JsonOption,
    LazyProgress,
    OtelOption,
    console,
    open_db,
    otel,
    print_json,
    rich_table,
)
from agentrm.cli.options import build, command, parameters
from agentrm.errors import InputError
from agentrm.scoring import ScoreConfig

_KW = inspect.Parameter.KEYWORD_ONLY


def _score(values: dict[str, Any]) -> None:
    from agentrm import pipeline

    config = build(ScoreConfig, values)
    config.scorer_specs()  # unknown scorer, bad -o: one line before any work
    otel(values["otel"])
    file: Path | None = values["file"]
    if file is None and config.run is None and not values["db"]:
        raise InputError("nothing to score: give a FILE, or --db (with --run ID) for stored trajectories")
    # a file without --db is scored in memory: nothing is written, no database is created
    store = (open_db(values["db"], must_exist=file is None) if values["db"] or file is None else None)
    trajs = None
    if file is not None:
        from agentrm.traces.io import read_trajectories

        if not file.exists():
            raise InputError("no such file", path=str(file))
        trajs = list(read_trajectories(file))
        if store is not None:
            store.import_trajectories(trajs)
    with LazyProgress("scoring") as bar:
        result = pipeline.score(store, config, trajs, on_progress=bar.update)
    _show(result.scores, result.trajectories, values["json_"], values["show"])


def _rows(scores: list, trajs: list) -> list[list[Any]]:
    order = {t.id: i for i, t in enumerate(trajs)}
    ranked = sorted(scores, key=lambda s: (order.get(s.trajectory_id, 0), s.scorer,
                                           s.turn_index is None, s.turn_index or 0))
    out = []
    for s in ranked:
        value = "abstain" if s.value is None else f"{s.value:.4f}"
        turn = "all" if s.turn_index is None else s.turn_index
        note = s.details.get("reason") or (f"{s.details['aggregate']} of {s.details.get('scored')}"
                                           if "aggregate" in s.details else "")
        out.append([s.trajectory_id, turn, s.scorer, value, note])
    return out


def _show(scores: list, trajs: list, as_json: bool, show: int) -> None:
    if as_json:
        print_json([{"scorer": s.scorer, "trajectory_id": s.trajectory_id, "level": s.level.value,
                     "turn_index": s.turn_index, "value": s.value, "version": s.version,
                     "config_hash": s.config_hash, "details": s.details} for s in scores])
        return
    rows = _rows(scores, trajs)
    console.print(rich_table(f"{len(trajs)} trajectories, {len(scores)} scores",
                             ["trajectory", "turn", "scorer", "score", "note"], rows[:show]))
    if len(rows) > show:
        console.print(f"… {len(rows) - show} more rows (--show, or --json for all)")


def _help() -> str:
    from agentrm.verifiers.registry import available

    names = ", ".join(sorted(available()))
    return ("Score trajectories: one row per turn and one per trajectory, for each scorer. "
            f"Scorers: {names} (docs/verifiers.md, docs/prm.md).")


score = command(_score, [
    inspect.Parameter("file", _KW, default=None, annotation=Annotated[Path | None, typer.Argument(
        help="Trajectory file (JSONL, ATIF, SWE-agent .traj), imported into the store.")]),
    *parameters(ScoreConfig),
    inspect.Parameter("show", _KW, default=200, annotation=Annotated[int, typer.Option(
        "--show", help="Table rows to print at most.")]),
    inspect.Parameter("otel", _KW, default=False, annotation=OtelOption),
    inspect.Parameter("db", _KW, default=None, annotation=DbOption),
    inspect.Parameter("json_", _KW, default=False, annotation=JsonOption)], _help())


def register(root: typer.Typer) -> None:
    root.command("score")(score)
