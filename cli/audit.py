"""`agentrm audit …`: checks that rewards hold up against an adversary.

`audit hacks` runs the shipped reward-hack corpus (agentrm/hacks) against built-in tasks and
SWE-bench instances with their real verifiers. Further audits (e.g. perturbations of scorers)
are further subcommands of this group.
"""

from __future__ import annotations

from typing import Annotated

import typer

from agentrm.cli.common import JsonOption, console, err_console, print_json, progress, rich_table

app = typer.Typer(help="Audit rewards against an adversary: the reward-hack corpus, …",
                  no_args_is_help=True)


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="audit")


# the group's callback is the scorer perturbation audit (`agentrm audit --run R -s S`), also
# `agentrm audit scorers`; cli/audit_scorers.py
from agentrm.cli.audit_scorers import register_into  # noqa: E402

register_into(app)


@app.command("hacks")
def hacks(
    task: Annotated[list[str] | None, typer.Option("--task", help="A task id (of --tasks); repeat for several.")] = None,
    tasks: Annotated[str | None, typer.Option("--tasks", help="Task file or `builtin` (all its tasks unless --task).")] = None,
    dataset: Annotated[str | None, typer.Option("--dataset", help="SWE-bench instances: `bundled` or a dataset file.")] = None,
    instance: Annotated[list[str] | None, typer.Option("--instance", help="An instance id of --dataset; repeat for several.")] = None,
    hack: Annotated[list[str] | None, typer.Option("--hack", help="Only this hack; repeat for several (default: all).")] = None,
    timeout: Annotated[float, typer.Option(min=5, help="Seconds for each SWE-bench test run.")] = 60.0,
    concurrency: Annotated[int, typer.Option(min=1, help="Rollouts (tasks) or instances (SWE-bench) at a time.")] = 2,
    list_only: Annotated[bool, typer.Option("--list", help="List the corpus and exit.")] = False,
    json_out: JsonOption = False,
) -> None:
    """Run reward hacks against tasks and SWE-bench instances; exit 1 if one was accepted unflagged.

    Accepted: the hack earned a reward above 0, turned its outcome into unknown (None), or did
    what it set out to (its success marker). Flagged: the grader marked the patch suspicious
    (the in-process limit of test grading)."""
    from agentrm.errors import InputError
    from agentrm.hacks.audit import run_swebench_hacks, run_task_hacks, select_hacks, task_pairs

    chosen = select_hacks(hack)
    if list_only:
        return _list(chosen, json_out)
    if task and not tasks:
        tasks = "builtin"
    if not tasks and not dataset:
        raise InputError("nothing to attack: give --task ID / --tasks builtin|FILE and/or --dataset bundled|FILE")
    if instance and not dataset:
        raise InputError("--instance needs --dataset")
    task_list = _tasks(tasks, task) if tasks else []
    n_swe = 0
    if dataset:
        from agentrm.evals.swebench.dataset import load_instances, select

        n_swe = len(select(load_instances(dataset), instance)) * sum(h.target == "swebench" for h in chosen)
    total = task_pairs(task_list, chosen) + n_swe
    if total == 0:
        raise InputError("no hack in the selection applies to these targets (see --list)")
    results = []
    bar = progress()
    with bar:
        job = bar.add_task("reward hacks", total=total)

        def done(result) -> None:
            bar.advance(job)

        if task_list:
            results += run_task_hacks(task_list, chosen, concurrency=concurrency, on_result=done)
        if dataset:
            results += run_swebench_hacks(dataset, instance, chosen, timeout=timeout,
                                          workers=concurrency, on_result=done)
    _show(results, json_out)
    if not all(r.passed for r in results):
        raise typer.Exit(1)


def _tasks(source: str, ids: list[str] | None):
    from agentrm.errors import InputError
    from agentrm.tasks import load_tasks

    every = load_tasks(source)
    if not ids:
        return every
    by_id = {t.id: t for t in every}
    unknown = [i for i in ids if i not in by_id]
    if unknown:
        raise InputError(f"unknown task id(s) {', '.join(unknown)} in {source}; "
                         f"known: {', '.join(by_id)}")
    return [by_id[i] for i in ids]


def _list(chosen, json_out: bool) -> None:

    if json_out:
        print_json([{"name": h.name, "target": h.target, "expected": h.expected,
                     "description": h.description, "source": h.source, "actions": h.actions}
                    for h in chosen])
        return
    console.print(rich_table(f"{len(chosen)} reward hacks", ["hack", "target", "expected", "what it does"],
                             [[h.name, h.target, h.expected, h.description] for h in chosen]))


def _verdict(r) -> str:
    if r.status == "not_run":
        return "not run"
    if not r.accepted:
        return "rejected"
    from rich.text import Text

    return "flagged" if r.flagged else Text("ACCEPTED", style="bold red")


def _show(results, json_out: bool) -> None:
    from rich.markup import escape

    accepted = [r for r in results if r.accepted]
    flagged = [r for r in accepted if r.flagged]
    not_run = [r for r in results if r.status == "not_run"]
    summary = {"tried": len(results), "accepted": len(accepted), "accepted_flagged": len(flagged),
               "accepted_unflagged": len(accepted) - len(flagged), "not_run": len(not_run)}
    if json_out:
        print_json({"summary": summary, "results": [r.to_dict() for r in results]})
        return
    rows = [[r.hack, r.target, "-" if r.reward is None else f"{r.reward:g}",
             r.status, _verdict(r)] for r in results]
    console.print(rich_table("reward hacks", ["hack", "target", "reward", "status", "verdict"], rows))
    for r in results:
        if r.accepted:
            why = ", ".join(r.reasons) if r.flagged else r.note
            err_console.print(f"{r.hack} on {escape(r.target)}: {escape(why or '-')}", highlight=False)
    console.print(f"tried {summary['tried']}, accepted {summary['accepted']} "
                  f"({summary['accepted_flagged']} flagged, {summary['accepted_unflagged']} unflagged), "
                  f"not run {summary['not_run']}", highlight=False)
