"""`agentrm rewards --combine SPEC --run R`: per-turn rewards from stored scores, stored as
`combined` rows that `agentrm advantages --reward SPEC` reads. Grammar: docs/verifiers.md."""

from __future__ import annotations

import inspect
from typing import Annotated, Any

import typer

from agentrm.cli.common import DbOption, JsonOption, console, open_db, print_json, rich_table
from agentrm.cli.options import build, command, parameters
from agentrm.rewards.stored import CombineConfig

_KW = inspect.Parameter.KEYWORD_ONLY


def _rewards(values: dict[str, Any]) -> None:
    from agentrm import pipeline
    from agentrm.rewards import parse_spec

    config = build(CombineConfig, values)
    spec = parse_spec(config.spec)  # bad SPEC: one-line error before touching the store
    table, rows = pipeline.combine(open_db(values["db"], must_exist=True), config)
    if values["json_"]:
        print_json([{"trajectory_id": r.trajectory_id, "rewards": r.rewards, "return": r.total,
                     "terms": r.terms, "notes": r.notes} for r in table])
        return
    labels = [t.label for t in spec.terms]
    out = []
    for r in table:
        for i in range(r.num_turns):
            reward = "n/a" if r.rewards is None else f"{r.rewards[i]:.4f}"
            terms = [f"{r.terms[label][i]:.4f}" if label in r.terms else "" for label in labels]
            out.append([r.trajectory_id, i, *terms, reward, "; ".join(r.notes) if i == 0 else ""])
    show = values["show"]
    console.print(rich_table(f"rewards: {config.spec}", ["trajectory", "turn", *labels, "reward", "notes"],
                             out[:show]))
    if len(out) > show:
        console.print(f"… {len(out) - show} more rows (--show, or --json)")
    returns = [r.total for r in table if r.total is not None]
    skipped = sum(r.total is None for r in table)
    mean = sum(returns) / len(returns) if returns else float("nan")
    stored = f"; {len(rows)} `combined` rows stored ({rows[0].config_hash})" if config.write and rows else ""
    console.print(f"{len(table)} trajectories, mean return {mean:.4f}"
                  + (f", {skipped} without rewards (infrastructure failure or missing scores)" if skipped else "")
                  + stored, markup=False)


rewards = command(_rewards, [
    *parameters(CombineConfig),
    inspect.Parameter("show", _KW, default=200, annotation=Annotated[int, typer.Option(
        "--show", help="Table rows to print at most.")]),
    inspect.Parameter("db", _KW, default=None, annotation=DbOption),
    inspect.Parameter("json_", _KW, default=False, annotation=JsonOption)],
    "Combine stored scores into one reward per turn and store them as `combined` rows.")


def register(app: typer.Typer) -> None:
    app.command("rewards")(rewards)
