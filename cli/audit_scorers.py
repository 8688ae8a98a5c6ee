"""`agentrm audit --run R --scorer S`: perturbation audit of scorers on stored trajectories.

The command function is `scorers`; `register_into(group)` adds it to an `audit` typer group
as `audit scorers` and as the group's callback (`agentrm audit --run R -s S`).
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from agentrm.cli.common import DbOption, JsonOption, console, print_json, progress, rich_table

Opt = typer.Option


def scorers(
    run: Annotated[list[str], Opt("--run", help="Stored run id (repeatable).")],
    scorer: Annotated[list[str], Opt("--scorer", "-s", help="Scorer name from the registry (repeatable).")],
    option: Annotated[list[str], Opt("--option", "-o", help="KEY=VALUE for every scorer, SCORER.KEY=VALUE for one.")] = [],  # noqa: B006
    perturbation: Annotated[list[str], Opt("--perturbation", "-p", help="Only these perturbations (repeatable).")] = [],  # noqa: B006
    limit: Annotated[int | None, Opt(min=1, help="Audit at most this many trajectories.")] = None,
    tol: Annotated[float, Opt(help="Score changes up to this count as no change.")] = 1e-3,
    clip_eta: Annotated[float, Opt(help="η of the clip transform measured against padding.")] = 0.5,
    batch_size: Annotated[int, Opt(min=1, help="Trajectories per scoring batch.")] = 8,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Perturb stored trajectories and report how each scorer's scores move.

    Perturbations: style, padding, false claims, forged or corrupted tool output, reordering,
    truncation (docs/evaluation.md)."""
    from agentrm.cli.eval_verifier import load_run
    from agentrm.errors import InputError
    from agentrm.evaluation.audit import AuditConfig, audit
    from agentrm.evaluation.perturb import PERTURBATIONS
    from agentrm.protocols import ScoringContext
    from agentrm.scoring import scorer_options
    from agentrm.verifiers.registry import make_scorer

    unknown = sorted(set(perturbation) - set(PERTURBATIONS))
    if unknown:
        raise InputError(f"--perturbation {unknown[0]!r}: choose from {', '.join(PERTURBATIONS)}")
    options = scorer_options(option, scorer)
    built = [make_scorer(name, **options[name]) for name in scorer]
    store, trajs, _ = load_run(db, run)
    trajs = trajs[:limit] if limit else trajs
    for b in built:
        if callable(getattr(b, "load", None)):
            b.load()
    cfg = AuditConfig(perturbations=perturbation or list(PERTURBATIONS), tol=tol, clip_eta=clip_eta,
                      batch_size=batch_size)
    with progress() as bar:
        total = len(trajs) + sum(1 for t in trajs for p in cfg.perturbations if PERTURBATIONS[p](t))
        task = bar.add_task("auditing", total=total * len(built))
        report = audit(trajs, built, cfg, ScoringContext(store=store),
                       on_progress=lambda n: bar.advance(task, n))
    if as_json:
        return print_json(report)
    _show(report)


def _fmt(v: Any) -> str:
    return "—" if v is None else f"{v:+.3f}" if isinstance(v, float) else str(v)


def _show(report: dict[str, Any]) -> None:
    for entry in report["scorers"]:
        rows = [[name, report["expected"][name], s["n"], _fmt(s["mean_shift"]),
                 _fmt(s["above"]).lstrip("+"), _fmt(s["flip_rate"]).lstrip("+"),
                 _fmt(s["violations"]).lstrip("+")] for name, s in entry["perturbations"].items()]
        console.print(rich_table(f"{entry['name']}: {entry['scored']} of {report['trajectories']} scored",
                                 ["perturbation", "expect", "n", "shift", "above", "flips", "violate"], rows))
        pad = entry.get("padding")
        if pad is None:
            continue
        line = "rewards padding: FLAGGED" if pad["flagged"] else "rewards padding: no"
        if pad.get("returns"):
            shifts = ", ".join(f"{k} {_fmt(v['mean_shift'])}" for k, v in pad["returns"].items())
            fixed = ", ".join(pad["neutralised_by"]) or "none"
            line += f"; return shift under {shifts}; neutralised by: {fixed}"
        console.print(line, markup=False, highlight=False)


def register_into(group: typer.Typer) -> None:
    """The scorer audit as `audit scorers` and as the group's default action, so that
    `agentrm audit --run R -s S` works next to the group's other subcommands."""
    group.command("scorers")(scorers)
    group.callback(invoke_without_command=True)(callback)


def register(app: typer.Typer) -> None:
    group = typer.Typer(help="Audit scorers and rollouts against reward hacks.")
    register_into(group)
    app.add_typer(group, name="audit")


def callback(
    ctx: typer.Context,
    run: Annotated[list[str] | None, Opt("--run", help="Stored run id (repeatable).")] = None,
    scorer: Annotated[list[str] | None, Opt("--scorer", "-s", help="Scorer name (repeatable).")] = None,
    option: Annotated[list[str], Opt("--option", "-o", help="KEY=VALUE or SCORER.KEY=VALUE.")] = [],  # noqa: B006
    perturbation: Annotated[list[str], Opt("--perturbation", "-p", help="Only these perturbations.")] = [],  # noqa: B006
    limit: Annotated[int | None, Opt(min=1, help="Audit at most this many trajectories.")] = None,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Perturbation audit of scorers (`agentrm audit --run R -s S`), or a subcommand."""
    if ctx.invoked_subcommand is not None:
        return
    if not run or not scorer:
        from agentrm.errors import InputError
        raise InputError("agentrm audit: give --run RUN and --scorer NAME (or a subcommand; --help)")
    scorers(run=run, scorer=scorer, option=option, perturbation=perturbation, limit=limit,
            db=db, as_json=as_json)
