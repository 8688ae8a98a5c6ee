"""`agentrm train`: training from the trace store. `agentrm train prm` makes a PRM.

The group is kept open for more subcommands (and a group callback) from the RL trainer.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from agentrm.cli.common import DbOption, JsonOption, console, print_json, progress, rich_table

Opt = typer.Option


def register(app: typer.Typer) -> None:
    group = typer.Typer(help="Train from the trace store (PRMs).", no_args_is_help=True)
    group.command("prm")(prm)
    app.add_typer(group, name="train")


def prm(
    run: Annotated[list[str], Opt("--run", help="Stored run id (repeatable).")],
    out: Annotated[Path, Opt("--out", "-o", help="Directory for the trained checkpoint.")],
    labels: Annotated[str, Opt("--labels", help="progress (stored Monte-Carlo branch values), mc (run the "
                                                "progress scorer now, needs Docker), outcome, or a "
                                                "first-error JSONL file.")] = "progress",
    base: Annotated[str, Opt("--base", help="Backbone: smollm2 (embedded) or a checkpoint directory.")] = "smollm2",
    min_share: Annotated[float, Opt(help="A step is good when ≥ this share of its branches succeed.")] = 0.5,
    branches: Annotated[int, Opt(min=1, help="--labels mc: continuations per step (K).")] = 4,
    prover: Annotated[str | None, Opt(help="--labels mc: prover policy SPEC (default the embedded SmolLM2).")] = None,
    epochs: Annotated[int, Opt(min=1)] = 3,
    lr: Annotated[float, Opt(help="Backbone learning rate.")] = 1e-4,
    head_lr: Annotated[float, Opt(help="Head learning rate.")] = 1e-3,
    batch_size: Annotated[int, Opt(min=1)] = 4,
    max_length: Annotated[int, Opt(min=16, help="Tokens per trajectory (left-truncated).")] = 1024,
    seed: Annotated[int, Opt()] = 0,
    freeze_backbone: Annotated[bool, Opt("--freeze-backbone", help="Train the head only (hidden states "
                                                                   "computed once; fast on a CPU).")] = False,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Train a token-classification PRM on step labels from the store; load it with
    `agentrm score -s prm --model OUT --style token-cls`."""
    from agentrm.cli.eval_verifier import load_run
    from agentrm.training.prm_train import PRMTrainConfig, labelled, step_labels, train_prm

    source = "progress" if labels == "mc" else labels
    cfg = PRMTrainConfig(base=base, labels=source, min_share=min_share, epochs=epochs, lr=lr,
                         head_lr=head_lr, batch_size=batch_size, max_length=max_length, seed=seed,
                         freeze_backbone=freeze_backbone)
    store, trajs, scores = load_run(db, run)
    if labels == "mc":
        scores = _branch_values(store, trajs, branches, prover) + list(scores)
    by_traj = step_labels(trajs, scores, cfg)
    items = [got for t in trajs if t.id in by_traj and (got := labelled(t, by_traj[t.id])) is not None]
    with progress() as bar:
        task = bar.add_task("training", total=None)
        summary = train_prm(items, out, cfg, on_step=lambda s, n, loss: bar.update(
            task, completed=s, total=n, description=f"training (loss {loss:.3f})" if loss == loss else "hidden states"))
    if as_json:
        return print_json(summary)
    rows = [[e + 1, f"{loss:.4f}"] for e, loss in enumerate(summary["losses"])]
    console.print(rich_table(f"{summary['trajectories']} trajectories, {summary['steps']} steps "
                             f"({summary['good_steps']} good)", ["epoch", "loss"], rows))
    console.print(f"saved {out}: agentrm score -s prm --model {out} --style token-cls",
                  markup=False, highlight=False)


def _branch_values(store, trajs, branches: int, prover: str | None) -> list:
    """Monte-Carlo branch rollouts from sandbox snapshots, through the progress scorer."""
    from agentrm.pipeline import default_context
    from agentrm.scoring import score_trajectories
    from agentrm.verifiers.registry import make_scorer

    options = {"branches": branches} | ({"prover": prover} if prover else {})
    scorer = make_scorer("progress", **options)
    with progress() as bar:
        task = bar.add_task(f"branch rollouts (K={branches})", total=len(trajs))
        return score_trajectories(trajs, [scorer], store=store, batch_size=1,
                                  on_progress=lambda done, _: bar.update(task, completed=done),
                                  context=default_context(store))
