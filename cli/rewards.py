"""`agentrm rewards --combine SPEC`: the per-turn reward table from stored scores.

SPEC combines scorers with transforms (clip, delta, min-form, log-sigmoid) and an optional
G-RA gate; the grammar is in agentrm.rewards.combine and docs/verifiers.md.
"""

from __future__ import annotations

from typing import Annotated

import typer

from agentrm.cli.common import DbOption, JsonOption, console, db_url, print_json, rich_table
from agentrm.errors import InputError


def register(app: typer.Typer) -> None:
    app.command("rewards")(rewards)


def rewards(
    combine: Annotated[str, typer.Option("--combine", "-c", help="SPEC, e.g. 'tests + 0.5*prm|clip:0.8 ; gate=tests>=1'.")],
    db: DbOption = None,
    run: Annotated[str | None, typer.Option("--run", help="Run id (default: every stored trajectory).")] = None,
    show: Annotated[int, typer.Option("--show", help="Table rows to print at most.")] = 200,
    as_json: JsonOption = False,
) -> None:
    """Combine stored scores into one reward per turn (nothing is written)."""
    from agentrm.traces import open_store
    from agentrm.rewards.combine import combine_scores, parse_spec

    spec = parse_spec(combine)  # bad SPEC: one-line error before touching the store
    store = open_store(db_url(db))
    trajs = list(store.iter_trajectories(run_id=run))
    if not trajs:
        raise InputError(f"no trajectories{' in run ' + repr(run) if run else ''} in {db_url(db)} (--run)")
    scorers = {t.scorer for t in spec.terms} | ({spec.gate[0]} if spec.gate else set())
    scores = [s for s in store.get_scores(trajectory_ids=[t.id for t in trajs]) if s.scorer in scorers]
    missing = sorted(scorers - {s.scorer for s in scores})
    if missing:
        raise InputError(f"--combine {combine!r}: no stored scores from {', '.join(missing)} "
                         f"(run `agentrm score -s {missing[0]}` first)")
    table = combine_scores(combine, trajs, scores)
    if as_json:
        print_json([{"trajectory_id": r.trajectory_id, "rewards": r.rewards, "return": r.total,
                     "terms": r.terms, "notes": r.notes} for r in table])
        return
    labels = [t.label for t in spec.terms]
    rows = []
    for r in table:
        for i in range(r.num_turns):
            reward = "n/a" if r.rewards is None else f"{r.rewards[i]:.4f}"
            terms = [f"{r.terms[label][i]:.4f}" if label in r.terms else "" for label in labels]
            rows.append([r.trajectory_id, i, *terms, reward, "; ".join(r.notes) if i == 0 else ""])
    console.print(rich_table(f"rewards: {combine}", ["trajectory", "turn", *labels, "reward", "notes"], rows[:show]))
    if len(rows) > show:
        console.print(f"… {len(rows) - show} more rows (--show, or --json)")
    returns = [r.total for r in table if r.total is not None]
    skipped = sum(r.total is None for r in table)
    mean = sum(returns) / len(returns) if returns else float("nan")
    console.print(f"{len(table)} trajectories, mean return {mean:.4f}"
                  + (f", {skipped} without rewards (infrastructure failure or missing scores)" if skipped else ""))
