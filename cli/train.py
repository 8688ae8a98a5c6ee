"""`agentrm train`: the GiGPO loop (rollouts, rewards, advantages, a policy update, repeated);
`agentrm train report RUN` its curve; `agentrm train prm` a PRM from the store.
The loop's flags come from agentrm.training.loop.TrainConfig."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Annotated

import typer

from agentrm.cli.common import (
    DbOption,
    JsonOption,
    console,
    err_console,
    print_json,
    progress,
    rich_table,
)

Opt = typer.Option


def register(app: typer.Typer) -> None:
    from agentrm.cli.options import command, parameters
    from agentrm.training.loop import TrainConfig
    from agentrm.training.verl_recipe import VerlOptions

    ctx = inspect.Parameter("ctx", inspect.Parameter.KEYWORD_ONLY, annotation=typer.Context)
    loop = command(_train, [ctx, TRAINER, *parameters(TrainConfig), *parameters(VerlOptions), *COMMON],
                   "Train a policy with group rollouts, verified and process rewards and GiGPO "
                   "advantages; a rerun of --run-id resumes. --trainer verl --out DIR writes the "
                   "files to run the same loop with verl on a GPU cluster instead. "
                   "Subcommands: report, prm.")
    group = typer.Typer(help="Train a policy (GiGPO loop) or a PRM from the trace store.",
                        invoke_without_command=True)
    group.callback(invoke_without_command=True)(loop)
    group.command("report")(report)
    group.command("prm")(prm)
    app.add_typer(group, name="train")


TRAINER = inspect.Parameter(
    "trainer", inspect.Parameter.KEYWORD_ONLY, default="local",
    annotation=Annotated[str, Opt("--trainer", help="local: train in this process; verl: write "
                                  "verl's data, reward module, agent loop and run.sh into --out.")])
COMMON = [inspect.Parameter("db", inspect.Parameter.KEYWORD_ONLY, default=None, annotation=DbOption),
          inspect.Parameter("json_", inspect.Parameter.KEYWORD_ONLY, default=False, annotation=JsonOption)]


def _train(values: dict) -> None:
    if values.pop("ctx").invoked_subcommand is not None:
        return
    from agentrm.cli.common import open_db
    from agentrm.cli.options import build
    from agentrm.training.loop import TrainConfig, TrainEvent, train

    config = build(TrainConfig, values)
    if values["trainer"] != "local":
        return _verl(config, values)
    config.validate()  # bad flags fail before the store is opened
    store = open_db(values["db"])
    with progress() as bar:
        task = bar.add_task("starting", total=None)

        def on_event(event: TrainEvent) -> None:
            nonlocal task
            label = (f"held-out eval after {event.iteration} iterations" if event.stage == "eval"
                     else f"iteration {event.iteration}: {event.stage}")
            if event.seconds is None:  # a new stage: a new bar (a total of None keeps the old one)
                bar.remove_task(task)
                task = bar.add_task(label, total=None)
            else:
                err_console.print(f"{label} {event.seconds:.1f} s", markup=False, highlight=False)

        def on_rollout(event) -> None:
            from agentrm.rollout.events import RunPlanned, TrajectoryEnded

            if isinstance(event, RunPlanned):
                bar.update(task, total=event.total, completed=event.skipped)
            elif isinstance(event, TrajectoryEnded):
                bar.advance(task)

        result = train(store, config, on_event=on_event, on_rollout=on_rollout)
    if values["json_"]:
        print_json({"run_id": result.run_id, "out": str(result.out), "resumed_from": result.resumed_from,
                    "iterations": result.iterations, "evaluations": result.evaluations})
        return
    _render(result.run_id, result.iterations, result.evaluations)
    console.print(f"checkpoints: {result.out}; curve: agentrm train report {result.run_id}",
                  markup=False, highlight=False)


def _verl(config, values: dict) -> None:
    from agentrm.cli.options import build
    from agentrm.errors import InputError
    from agentrm.training.verl_recipe import VerlOptions, write_recipe

    if values["trainer"] != "verl":
        raise InputError(f"--trainer {values['trainer']!r}: use local or verl")
    recipe = write_recipe(config, build(VerlOptions, values))
    if values["json_"]:
        print_json({"out": str(recipe.out), "files": {k: str(v) for k, v in recipe.files.items()},
                    "command": recipe.command, "overrides": recipe.overrides,
                    "train_tasks": recipe.train_rows, "val_tasks": recipe.val_rows, "notes": recipe.notes})
        return
    what = {"train.parquet": f"{recipe.train_rows} training tasks (verl RLHFDataset rows)",
            "val.parquet": f"{recipe.val_rows} validation tasks",
            "reward.py": "reward.custom_reward_function: agentrm's reward SPEC",
            "agent_loop.yaml": "the agentrm agent loop (Docker sandbox per rollout)",
            "config.yaml": f"{len(recipe.overrides)} Hydra overrides over verl's ppo_trainer",
            "run.sh": "python -m verl.trainer.main_ppo with those overrides"}
    console.print(rich_table(f"verl recipe in {recipe.out}", ["file", "what"],
                             [[name, what[name]] for name in recipe.files]))
    for note in recipe.notes:
        err_console.print(f"note: {note}", markup=False, highlight=False)
    console.print(f"run on the cluster: {recipe.command}", markup=False, highlight=False)


def _fmt(value, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def _render(run_id: str, iterations: list[dict], evaluations: list[dict]) -> None:
    rows = [[it["iteration"], _fmt(it.get("train_reward_mean")), _fmt(it.get("success_rate")),
             _fmt(it.get("valid_tool_call_rate")), _fmt(it["update"].get("loss"), 4),
             _fmt(it["update"].get("pg_clipfrac")), f"{it['seconds'].get('rollout', 0):.0f}",
             f"{it['seconds'].get('update', 0):.0f}"] for it in iterations]
    console.print(rich_table(f"training run {run_id}", ["it", "reward", "success", "valid", "loss",
                                                        "clip", "roll s", "upd s"], rows))
    if evaluations:
        console.print(rich_table("held-out evaluations", ["after it", "success", "reward", "valid", "n"],
                                 [[e["after_iterations"], _fmt(e.get("success_rate")),
                                   _fmt(e.get("reward_mean")), _fmt(e.get("valid_tool_call_rate")),
                                   e.get("trajectories")] for e in evaluations]))


def report(
    run: Annotated[str, typer.Argument(help="The training run id.")],
    out: Annotated[Path | None, Opt("--out", "-o", help="Write the curve here (.png or .html; "
                                    "default runs/train/RUN/curve.png).")] = None,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """The reward and success-rate curve of a training run, per iteration (and held-out)."""
    from agentrm.cli.common import open_db
    from agentrm.training.report import training_curve

    store = open_db(db, must_exist=True)
    iterations, evaluations, path = training_curve(store, run, out)
    if as_json:
        return print_json({"run_id": run, "curve": str(path), "iterations": iterations,
                           "evaluations": evaluations})
    _render(run, iterations, evaluations)
    console.print(f"curve: {path}", markup=False, highlight=False)


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
    lora_rank: Annotated[int, Opt("--lora-rank", help="LoRA adapters of this rank on the backbone's "
                                                      "projections (0: train every weight); merged at "
                                                      "save.")] = 0,
    soft_labels: Annotated[bool, Opt("--soft-labels", help="--labels progress/mc: the share of a step's "
                                                           "branches that succeed is its target "
                                                           "(Math-Shepherd's soft label), not share ≥ "
                                                           "--min-share.")] = False,
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
                         freeze_backbone=freeze_backbone, lora_rank=lora_rank, soft_labels=soft_labels)
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
