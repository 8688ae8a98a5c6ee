"""`agentrm score`: per-turn and per-trajectory scores for a stored run or a trajectory file.

Every --scorer NAME is built through the scorer registry (verifiers/registry.py), so PRMs,
verifiers and turn rewards share this command. The PRM flags (--model, --style, …) are passed
to each scorer whose factory accepts them; -o KEY=VALUE passes anything else.
"""

from __future__ import annotations

import inspect
import json
from pathlib import Path
from typing import Annotated, Any

import typer

from agentrm.cli.common import JsonOption, console, print_json, progress, rich_table
from agentrm.errors import InfrastructureError, InputError

Opt = typer.Option


def register(root: typer.Typer) -> None:
    root.command("score")(score)


def _parse_options(pairs: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise InputError(f"-o {pair!r}: expected KEY=VALUE")
        try:
            out[key.replace("-", "_")] = json.loads(value)
        except json.JSONDecodeError:
            out[key.replace("-", "_")] = value
    return out


def _parameters(factory: Any) -> dict[str, inspect.Parameter] | None:
    """Keyword parameters a factory takes (looking through `**options` into the class it
    returns); None when it takes anything."""
    import typing

    params = inspect.signature(factory).parameters
    if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return dict(params)
    if len(params) > 1:  # named parameters and **options: it validates the rest itself
        return None
    try:
        returned = typing.get_type_hints(factory).get("return")
    except Exception:  # noqa: BLE001 - unresolvable annotations: accept everything
        returned = None
    if inspect.isclass(returned):
        inner = inspect.signature(returned.__init__).parameters
        if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in inner.values()):
            return {k: v for k, v in inner.items() if k != "self"}
    return None


def _accepted(name: str, options: dict[str, Any], explicit: set[str]) -> dict[str, Any]:
    """The options this scorer's factory takes; -o options it does not take are an error."""
    import importlib

    from agentrm.verifiers.registry import available

    target = available().get(name)
    if target is None:
        return options  # make_scorer reports the unknown name
    module, _, attr = target.partition(":")
    params = _parameters(getattr(importlib.import_module(module), attr))
    if params is None:
        return options
    refused = sorted(explicit - set(params))
    if refused:
        raise InputError(f"--scorer {name} does not take option(s) {', '.join(refused)} (-o)")
    return {k: v for k, v in options.items() if k in params}


def _load(path: Path | None, db: str | None, run: str | None):
    """(trajectories, store or None). A file is imported into the store when --db is given."""
    store = None
    if db:
        from agentrm.traces import open_store

        store = open_store(db)
    if path is not None:
        from agentrm.traces.io import read_trajectories

        if not path.exists():
            raise InputError("no such file", path=str(path))
        trajs = list(read_trajectories(path))
        if store is not None:
            store.import_trajectories(trajs)
        return trajs, store
    if store is None:
        raise InputError("nothing to score: give a FILE, or --db (with --run ID) for stored trajectories")
    return list(store.iter_trajectories(run_id=run)), store


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


def score(
    file: Annotated[Path | None, typer.Argument(help="Trajectory file (JSONL, ATIF, SWE-agent .traj).")] = None,
    db: Annotated[str | None, Opt("--db", envvar="AGENTRM_DB", help="Trace store URL; scores are written there.")] = None,
    run: Annotated[str | None, Opt("--run", help="Score this stored run (with --db).")] = None,
    scorer: Annotated[list[str], Opt("--scorer", "-s", help="Scorer name (repeatable).")] = ["prm"],  # noqa: B006
    model: Annotated[str | None, Opt("--model", help="PRM checkpoint path or id (default: embedded SmolLM2).")] = None,
    style: Annotated[str | None, Opt("--style", help="token-cls | tag | value | judge")] = None,
    template: Annotated[str | None, Opt("--template", help="chat | plain (default per style).")] = None,
    separator: Annotated[str | None, Opt("--separator", help="Step separator / tag token (one token).")] = None,
    good: Annotated[str | None, Opt("--good", help="tag/judge: the 'correct' token.")] = None,
    bad: Annotated[str | None, Opt("--bad", help="tag/judge: the 'wrong' token.")] = None,
    aggregate: Annotated[str | None, Opt("--aggregate", help="min | last | mean | product | minform")] = None,
    max_length: Annotated[int | None, Opt("--max-length", help="Tokens kept (left truncation).")] = None,
    batch_size: Annotated[int | None, Opt("--batch-size", min=1, help="Trajectories per batch (default 8).")] = None,
    device: Annotated[str | None, Opt("--device", help="cpu | cuda | cuda:N (default: auto).")] = None,
    backend: Annotated[str | None, Opt("--backend", help="transformers | vllm")] = None,
    option: Annotated[list[str], Opt("--option", "-o", help="KEY=VALUE for the scorer (repeatable).")] = [],  # noqa: B006
    executor: Annotated[str, Opt("--executor", help="local | ray (scorer actors on a Ray cluster; needs --db).")] = "local",
    ray_address: Annotated[str | None, Opt("--ray-address", envvar="RAY_ADDRESS", help="Ray cluster address (default: start a local one).")] = None,
    actors: Annotated[int, Opt("--actors", min=1, help="Ray scorer actors (one model each).")] = 2,
    show: Annotated[int, Opt("--show", help="Table rows to print at most.")] = 200,
    as_json: JsonOption = False,
) -> None:
    """Score trajectories: one row per turn and one per trajectory, for each scorer."""
    from agentrm.scoring import score_trajectories
    from agentrm.verifiers.registry import make_scorer

    extra = _parse_options(option)
    flags = dict(model=model, style=style, template=template, separator=separator, good=good,
                 bad=bad, aggregate=aggregate, max_length=max_length, device=device,
                 backend=backend, batch_size=batch_size)
    options = {k: v for k, v in flags.items() if v is not None} | extra
    specs = [{"name": name, "options": _accepted(name, options, set(extra))} for name in scorer]
    if executor not in {"local", "ray"}:
        raise InputError(f"unknown executor {executor!r} (--executor): choose local or ray")
    if executor == "ray":
        if not db:
            raise InputError("--executor ray needs --db: Ray workers read and write the shared store")
        trajs, store = _load(file, db, run)
        scores = _score_on_ray(trajs, store, db, specs, actors, batch_size or 8, ray_address)
        return _show(scores, trajs, db, as_json, show)
    scorers = [make_scorer(spec["name"], **spec["options"]) for spec in specs]
    trajs, store = _load(file, db, run)
    for built in scorers:  # load models and check tokens before the bar: fail up front
        if callable(getattr(built, "load", None)):
            built.load()
    with progress() as bar:
        task = bar.add_task("scoring", total=len(trajs))
        scores = score_trajectories(trajs, scorers, store=store, batch_size=batch_size or 8,
                                    on_progress=lambda done, total: bar.update(task, completed=done))
    _show(scores, trajs, db if store is not None else None, as_json, show)


def _score_on_ray(trajs, store, db, specs, actors, batch_size, ray_address) -> list:
    from agentrm.distributed import score_on_ray

    ids = [t.id for t in trajs]
    with progress() as bar:
        task = bar.add_task(f"scoring on Ray ({actors} actors)", total=len(ids))
        report = score_on_ray(ids, db, specs, actors=actors, batch_size=batch_size,
                              ray_address=ray_address, on_batch=lambda n: bar.advance(task, n))
    if report["failed"]:
        lost = sum(len(f["trajectory_ids"]) for f in report["failed"])
        raise InfrastructureError(f"{lost} trajectories could not be scored on Ray: "
                         f"{report['failed'][0]['error']} (rerun the same command to finish them)")
    names = {spec["name"] for spec in specs}
    return [s for s in store.get_scores(trajectory_ids=ids) if s.scorer in names]


def _show(scores: list, trajs: list, db: str | None, as_json: bool, show: int) -> None:
    if as_json:
        print_json([{"scorer": s.scorer, "trajectory_id": s.trajectory_id, "level": s.level.value,
                     "turn_index": s.turn_index, "value": s.value, "version": s.version,
                     "config_hash": s.config_hash, "details": s.details} for s in scores])
        return
    rows = _rows(scores, trajs)
    where = f" → {db}" if db else ""
    console.print(rich_table(f"{len(trajs)} trajectories, {len(scores)} scores{where}",
                             ["trajectory", "turn", "scorer", "score", "note"], rows[:show]))
    if len(rows) > show:
        console.print(f"… {len(rows) - show} more rows (--show, or --json for all)")
