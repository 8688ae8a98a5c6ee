"""`agentrm eval verifier`: how well each scorer's stored scores predict verified outcomes."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from agentrm.cli.common import DbOption, JsonOption, console, db_url, print_json, rich_table

Opt = typer.Option


def load_run(db: str | None, runs: list[str]):
    """(store, trajectories of the runs, their scores); InputError when the selection is empty."""
    from agentrm.errors import InputError
    from agentrm.traces import open_store

    store = open_store(db_url(db), must_exist=True)
    trajs = [t for r in runs for t in store.iter_trajectories(run_id=r)]
    if not trajs:
        raise InputError(f"--run {', '.join(runs)}: no stored trajectories in {db_url(db)}")
    return store, trajs, store.get_scores(trajectory_ids=[t.id for t in trajs])


def _aggregates(pairs: list[str]) -> dict[str, str]:
    from agentrm.errors import InputError

    out = {}
    for pair in pairs:
        name, sep, how = pair.partition("=")
        if not sep:
            raise InputError(f"--aggregate {pair!r}: expected SCORER=mean|sum|min|last|max")
        out[name] = how
    return out


def verifier(
    run: Annotated[list[str], Opt("--run", help="Stored run id (repeatable).")],
    scorer: Annotated[list[str], Opt("--scorer", "-s", help="Scorer with stored scores (repeatable; NAME or NAME@HASH).")],
    labels: Annotated[str, Opt("--labels", help="reward (stored outcome), a verifier's name (e.g. tests), "
                                                "or a JSONL file of first-wrong-step labels.")] = "reward",
    threshold: Annotated[float, Opt(help="An outcome ≥ this is a success.")] = 1.0,
    step_threshold: Annotated[float, Opt(help="Step labels: a step score below this is a predicted error.")] = 0.5,
    max_n: Annotated[int, Opt("--max-n", min=1, help="Best-of-N for N = 1..max-n.")] = 16,
    bins: Annotated[int, Opt(min=1, help="Equal-width ECE bins on [0, 1].")] = 10,
    group_by: Annotated[str, Opt(help="group (rollouts of one initial state) | task.")] = "group",
    hybrid: Annotated[str, Opt(help="learn (per held-out fold: a within-group pairwise fit or the best single scorer, "
                                         "chosen on the other groups), a --combine SPEC, or none.")] = "learn",
    folds: Annotated[int, Opt(min=2, help="Group folds for the learned hybrid.")] = 2,
    l2: Annotated[float, Opt("--l2", min=0.0, help="Ridge penalty of the learned hybrid's pairwise fit.")] = 1.0,
    aggregate: Annotated[list[str], Opt(help="SCORER=mean|sum|min|last|max for scorers without a trajectory row.")] = [],  # noqa: B006
    html: Annotated[Path | None, Opt("--html", help="Write a self-contained HTML report here.")] = None,
    png_dir: Annotated[Path | None, Opt("--png-dir", help="Also write the plots as PNG files here.")] = None,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """ROC-AUC, calibration, best-of-N vs the oracle and first-error F1 for each scorer."""
    from agentrm.evaluation import report as rep
    from agentrm.evaluation.verifier_eval import EvalConfig, evaluate

    cfg = EvalConfig(scorers=scorer, labels=labels, threshold=threshold, step_threshold=step_threshold,
                     ns=list(range(1, max_n + 1)), bins=bins, group_by=group_by,
                     hybrid=None if hybrid == "none" or len(scorer) < 2 and hybrid == "learn" else hybrid,
                     folds=folds, l2=l2, aggregate=_aggregates(aggregate))
    _, trajs, scores = load_run(db, run)
    result = evaluate(trajs, scores, cfg)
    if html is not None:
        rep.write_html(result, html)
    if png_dir is not None:
        png_dir.mkdir(parents=True, exist_ok=True)
        for name, png in (("reliability", rep.reliability_png(result)), ("best_of_n", rep.best_of_n_png(result))):
            if png is not None:
                (png_dir / f"{name}.png").write_bytes(png)
    if as_json:
        return print_json(result)
    _show(result, html)


def _show(result: dict, html: Path | None) -> None:
    from agentrm.evaluation.report import SUMMARY_COLUMNS, summary_rows

    lab = result["labels"]
    fmt = lambda v: "—" if v is None else f"{v:.3f}" if isinstance(v, float) else v  # noqa: E731
    rows = [[fmt(v) for v in r] for r in summary_rows(result)]
    console.print(rich_table(f"{lab['trajectories']} labelled trajectories, {lab['positives']} successes, "
                             f"{lab['groups']} groups", [c.format(n=4) for c in SUMMARY_COLUMNS], rows))
    hybrid = result.get("hybrid") or {}
    curves = hybrid.get("best_of_n") or {s["name"]: s["best_of_n"] for s in result["scorers"]}
    if curves:
        names = list(curves)
        first = curves[names[0]]
        shown = [r["n"] for r in first if r["n"] in (1, 2, 4, 8, 16)]
        table = [[n, *[fmt(next(r["accuracy"] for r in curves[k] if r["n"] == n)) for k in names],
                  fmt(next(r["oracle"] for r in first if r["n"] == n)),
                  next(r["groups"] for r in first if r["n"] == n)] for n in shown]
        console.print(rich_table("best-of-N (exact over subsets; hybrid held out)",
                                 ["N", *names, "oracle", "groups"], table))
    if html is not None:
        console.print(f"report: {html}", markup=False, highlight=False)
