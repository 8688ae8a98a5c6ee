"""`agentrm eval swe-bench`: SWE-bench-compatible evaluation in local Docker (thin CLI)."""

from __future__ import annotations

from typing import Annotated

import typer

from agentrm.cli.common import (
    DbOption,
    JsonOption,
    console,
    db_url,
    print_json,
    progress,
    rich_table,
)


def register(app: typer.Typer) -> None:
    group = typer.Typer(help="Evaluate on benchmarks in local Docker.", no_args_is_help=True)
    group.command("swe-bench")(swe_bench)
    from agentrm.cli.eval_verifier import verifier  # agentrm eval verifier
    group.command("verifier")(verifier)
    app.add_typer(group, name="eval")


def _ids(values: list[str] | None) -> list[str] | None:
    if not values:
        return None
    return [i.strip() for v in values for i in v.replace(",", " ").split() if i.strip()]


def swe_bench(
    dataset: Annotated[str, typer.Option(help="Instances: JSON/JSONL/parquet file, a saved "
                                              "dataset directory, or 'bundled'.")] = "bundled",
    predictions: Annotated[str | None, typer.Option(
        help="Predictions FILE (JSONL or JSON), 'gold' or 'empty' (default gold).")] = None,
    instance_ids: Annotated[list[str] | None, typer.Option(
        "--instance-ids", help="Only these instances (comma/space separated; repeatable).")] = None,
    max_workers: Annotated[int | None, typer.Option(
        help="Parallel instances (default 0.75 × cores).", min=1)] = None,
    timeout: Annotated[float | None, typer.Option(help="Seconds per test run (default: spec).",
                                                     min=1)] = None,
    run_id: Annotated[str | None, typer.Option(help="Run id (reuse one to resume).")] = None,
    run_dir: Annotated[str, typer.Option(help="Where per-instance logs and reports go.")] = "runs",
    repos: Annotated[str, typer.Option(help="Repositories: a mirror directory, a git URL "
                                            "template like https://host/{repo}.git, or 'bundled'.")] = "bundled",
    specs: Annotated[str | None, typer.Option(help="Extra environment spec table (YAML).")] = None,
    agent: Annotated[bool, typer.Option("--agent", help="Let a policy solve each instance; its "
                                                        "git diff is the prediction.")] = False,
    policy: Annotated[str | None, typer.Option(help="Policy SPEC for --agent (default "
                                                       "transformers:smollm2).")] = None,
    max_turns: Annotated[int, typer.Option(help="Agent turn limit.", min=1)] = 20,
    agent_timeout: Annotated[float, typer.Option(help="Agent wall-clock seconds per instance.",
                                                 min=1)] = 1800.0,
    group_size: Annotated[int, typer.Option(help="Agent rollouts per instance (one group, for "
                                                 "GRPO/GiGPO); the first is the report's.", min=1)] = 1,
    redo: Annotated[bool, typer.Option("--redo", help="Re-evaluate even when a stored result "
                                                      "matches.")] = False,
    executor: Annotated[str, typer.Option("--executor", help="local | ray (one Ray task per instance).")] = "local",
    ray_address: Annotated[str | None, typer.Option("--ray-address", envvar="RAY_ADDRESS", help="Ray cluster address (default: start a local one).")] = None,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Evaluate predictions (or an agent) on SWE-bench instances; gold resolves, empty does not."""
    from agentrm.errors import InputError
    from agentrm.evals.swebench.harness import EvalConfig, Harness, default_workers
    from agentrm.evals.swebench.report import TABLE_COLUMNS, table_rows

    if agent and predictions:
        raise InputError("--predictions and --agent exclude each other: the agent makes the patches")
    if policy and not agent:
        raise InputError("--policy needs --agent")
    if group_size > 1 and not agent:
        raise InputError("--group-size needs --agent")
    if executor not in {"local", "ray"}:
        raise InputError(f"unknown executor {executor!r} (--executor): choose local or ray")
    cfg = EvalConfig(dataset=dataset, predictions=predictions or "gold", instance_ids=_ids(instance_ids),
                     max_workers=max_workers or default_workers(), timeout=timeout, run_id=run_id,
                     run_dir=run_dir, repos=repos, specs=specs, db=db_url(db), redo=redo,
                     agent=agent, policy=policy, max_turns=max_turns,
                     agent_timeout=agent_timeout, group_size=group_size, executor=executor,
                     ray_address=ray_address)
    harness = Harness(cfg)
    instances, _, _ = harness.prepare()  # bad input fails here, before any progress output
    with progress() as bar:
        task = bar.add_task("swe-bench", total=len(instances))
        harness.on_progress = lambda r: bar.update(task, advance=1, description=f"{r.instance_id}: {r.status}")
        result = harness.run()
    s = result.summary
    if as_json:
        print_json({"summary": s, "summary_path": str(result.summary_path),
                    "results": [r.to_dict() for r in result.results]})
        return
    console.print(rich_table(f"SWE-bench run {result.run_id} ({result.model})", TABLE_COLUMNS,
                             table_rows(result.results)))
    console.print(f"resolved {s['resolved_instances']}/{s['total_instances']} · unresolved "
                  f"{s['unresolved_instances']} · empty {s['empty_patch_instances']} · errors "
                  f"{s['error_instances']} (patch failed {len(s['patch_failed_ids'])}, timeout "
                  f"{len(s['timeout_ids'])}, infrastructure {len(s['infrastructure_error_ids'])})")
    console.print(f"report: {result.summary_path}")
