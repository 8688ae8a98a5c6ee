"""`agentrm eval swe-bench`: SWE-bench-compatible evaluation in local Docker (thin CLI).

The SWE-bench harness's own spellings are accepted too (`--predictions_path`/`-p`,
`--dataset_name`/`-d`, `-s`, `--max_workers`, `--run_id`, `--instance_ids a b c`/`-i`,
`--report_dir`, `--cache_level`, `--clean True`, `--force_rebuild True`, `-t`, ...), so its
command lines work unchanged.
"""

from __future__ import annotations

from typing import Annotated

import typer
from typer.core import TyperCommand

from agentrm.cli.common import (
    DbOption,
    JsonOption,
    OtelOption,
    console,
    db_url,
    otel,
    print_json,
    progress,
    rich_table,
)

BOOL_WORDS = {"true": True, "yes": True, "1": True, "false": False, "no": False, "0": False}
VALUE_FLAGS = ("--clean", "--force_rebuild", "--force-rebuild")
ID_FLAGS = ("--instance-ids", "--instance_ids", "-i")


class _KeepsArgs(TyperCommand):
    """Keeps the command's own arguments (ctx.meta["args"]) for the harness's value forms."""

    def parse_args(self, ctx, args):  # type: ignore[no-untyped-def]
        ctx.meta["args"] = list(args)
        return super().parse_args(ctx, args)


def register(app: typer.Typer) -> None:
    group = typer.Typer(help="Evaluate on benchmarks in local Docker.", no_args_is_help=True)
    group.command("swe-bench", cls=_KeepsArgs,
                  context_settings={"allow_extra_args": True})(swe_bench)
    from agentrm.cli.eval_verifier import verifier  # agentrm eval verifier (docs/evaluation.md)
    group.command("verifier")(verifier)
    app.add_typer(group, name="eval")


def _ids(values: list[str] | None) -> list[str] | None:
    if not values:
        return None
    return [i.strip() for v in values for i in v.replace(",", " ").split() if i.strip()]


def _harness_style(extra: list[str], argv: list[str]) -> tuple[dict[str, bool], list[str]]:
    """Leftover words of the harness's spellings: `--clean True` / `--force_rebuild false`
    (a value after a flag) and `--instance_ids a b c` (several values), found by their place in
    the command's arguments `argv`. Anything else left over is a usage error."""
    from agentrm.errors import InputError

    values, ids = {}, []
    left = list(extra)
    for i, token in enumerate(argv):
        nxt = argv[i + 1] if i + 1 < len(argv) else None
        if token in VALUE_FLAGS and nxt is not None and nxt.lower() in BOOL_WORDS and nxt in left:
            values[token.lstrip("-").replace("-", "_")] = BOOL_WORDS[nxt.lower()]
            left.remove(nxt)
        elif token in ID_FLAGS:
            for word in argv[i + 2:]:
                if word.startswith("-"):
                    break
                if word in left:
                    ids.append(word)
                    left.remove(word)
    if left:
        raise InputError(f"unexpected argument {left[0]!r} (see agentrm eval swe-bench --help)")
    return values, ids


def swe_bench(
    ctx: typer.Context,
    dataset: Annotated[str, typer.Option(
        "--dataset", "--dataset_name", "--dataset-name", "-d",
        help="Instances: JSON/JSONL/parquet file, a saved dataset directory, a hub NAME "
             "(through `datasets`, its cache first), or 'bundled'.")] = "bundled",
    split: Annotated[str, typer.Option("--split", "-s", help="Dataset split.")] = "test",
    predictions: Annotated[str | None, typer.Option(
        "--predictions", "--predictions_path", "--predictions-path", "-p",
        help="Predictions FILE (JSONL or JSON; several models allowed), 'gold' or 'empty' "
             "(default gold).")] = None,
    instance_ids: Annotated[list[str] | None, typer.Option(
        "--instance-ids", "--instance_ids", "-i",
        help="Only these instances (comma/space separated; repeatable).")] = None,
    max_workers: Annotated[int | None, typer.Option(
        "--max-workers", "--max_workers", help="Parallel instances (default 0.75 × cores).",
        min=1)] = None,
    timeout: Annotated[float | None, typer.Option(
        "--timeout", "-t", help="Seconds per test run (default: spec).", min=1)] = None,
    run_id: Annotated[str | None, typer.Option(
        "--run-id", "--run_id", help="Run id (reuse one to resume).")] = None,
    run_dir: Annotated[str, typer.Option(
        "--run-dir", help="Where per-instance logs and reports go.")] = "runs",
    report_dir: Annotated[str | None, typer.Option(
        "--report-dir", "--report_dir",
        help="Where the summaries <model>.<run_id>.json go (default: the run directory).")] = None,
    repos: Annotated[str, typer.Option(help="Repositories: a mirror directory, a git URL "
                                            "template like https://host/{repo}.git, or 'bundled'.")] = "bundled",
    specs: Annotated[str | None, typer.Option(help="Extra environment spec table (YAML).")] = None,
    namespace: Annotated[str, typer.Option(
        "--namespace", help="Instance images: 'none' (agentrm builds them), 'local' (official "
                            "names already here) or a registry namespace such as swebench.")] = "none",
    instance_image_tag: Annotated[str, typer.Option(
        "--instance-image-tag", "--instance_image_tag", help="Tag of official images.")] = "latest",
    pull: Annotated[str, typer.Option(
        "--pull", help="Pre-built images: never | missing | always pull through the engine.")] = "missing",
    cache_level: Annotated[str, typer.Option(
        "--cache-level", "--cache_level",
        help="Images kept after the run: none | base | env | instance.")] = "env",
    clean: Annotated[bool, typer.Option(
        "--clean", help="Also remove images above the cache level that predate the run.")] = False,
    force_rebuild: Annotated[bool, typer.Option(
        "--force-rebuild", "--force_rebuild", help="Rebuild images agentrm builds.")] = False,
    agent: Annotated[bool, typer.Option("--agent", help="Let a policy solve each instance; its "
                                                        "git diff is the prediction.")] = False,
    policy: Annotated[str | None, typer.Option(help="Policy SPEC for --agent (default "
                                                       "transformers:smollm2).")] = None,
    max_turns: Annotated[int, typer.Option(help="Agent turn limit.", min=1)] = 20,
    agent_timeout: Annotated[float, typer.Option(help="Agent wall-clock seconds per instance.",
                                                 min=1)] = 1800.0,
    group_size: Annotated[int, typer.Option(
        "--group-size", help="Agent rollouts per instance (one group).", min=1)] = 1,
    warm_pool: Annotated[int, typer.Option(
        "--warm-pool", help="Agent mode: instance sandboxes kept started ahead (0: off).",
        min=0)] = 0,
    redo: Annotated[bool, typer.Option("--redo", help="Re-evaluate even when a stored result "
                                                      "matches.")] = False,
    executor: Annotated[str, typer.Option("--executor", help="local | ray (one Ray task per instance).")] = "local",
    ray_address: Annotated[str | None, typer.Option("--ray-address", envvar="RAY_ADDRESS", help="Ray cluster address (default: start a local one).")] = None,
    otel_spans: OtelOption = False,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Evaluate predictions (or an agent) on SWE-bench instances; gold resolves, empty does not."""

    from agentrm.errors import InputError
    from agentrm.evals.swebench.harness import EvalConfig, Harness, default_workers
    from agentrm.evals.swebench.report import TABLE_COLUMNS, table_rows

    values, more_ids = _harness_style(list(ctx.args), ctx.meta.get("args", []))
    otel(otel_spans)
    clean = values.get("clean", clean)
    force_rebuild = values.get("force_rebuild", force_rebuild)
    ids = _ids((instance_ids or []) + more_ids)
    if agent and predictions:
        raise InputError("--predictions and --agent exclude each other: the agent makes the patches")
    if policy and not agent:
        raise InputError("--policy needs --agent")
    if (group_size > 1 or warm_pool) and not agent:
        raise InputError("--group-size and --warm-pool need --agent")
    if executor not in {"local", "ray"}:
        raise InputError(f"unknown executor {executor!r} (--executor): choose local or ray")
    cfg = EvalConfig(dataset=dataset, split=split, predictions=None if agent else predictions or "gold",
                     instance_ids=ids, max_workers=max_workers or default_workers(),
                     timeout=timeout, run_id=run_id, run_dir=run_dir, report_dir=report_dir,
                     repos=repos, specs=specs, namespace=namespace,
                     instance_image_tag=instance_image_tag, pull=pull, cache_level=cache_level,
                     clean=clean, force_rebuild=force_rebuild, db=db_url(db), redo=redo,
                     agent=agent, policy=policy, max_turns=max_turns, agent_timeout=agent_timeout,
                     group_size=group_size, warm_pool=warm_pool, executor=executor,
                     ray_address=ray_address)
    harness = Harness(cfg)
    instances, by_model = harness.prepare()  # bad input fails here, before any progress output
    with progress() as bar:
        task = bar.add_task("swe-bench", total=len(instances) * len(by_model))
        harness.on_progress = lambda r: bar.update(task, advance=1, description=f"{r.instance_id}: {r.status}")
        result = harness.run()
    if as_json:
        print_json({"summary": result.summary, "summary_path": str(result.summary_path),
                    "summaries": {m: {"summary": s, "path": str(p)}
                                  for m, (s, p) in result.summaries.items()},
                    "results": [r.to_dict() for r in result.all_results]})
        return
    for model, (s, path) in result.summaries.items():
        # instance ids, models and error notes are user data: never rich markup
        rows = table_rows([r for r in result.all_results if r.model == model])
        if rows:
            console.print(rich_table(f"SWE-bench run {result.run_id} ({model})", TABLE_COLUMNS,
                                     rows, keep_whole=1))
        console.print(f"{model}: resolved {s['resolved_instances']}/{s['total_instances']} · "
                      f"unresolved {s['unresolved_instances']} · empty {s['empty_patch_instances']} · "
                      f"errors {s['error_instances']} (patch failed {len(s['patch_failed_ids'])}, "
                      f"timeout {len(s['timeout_ids'])}, infrastructure "
                      f"{len(s['infrastructure_error_ids'])})", markup=False)
        console.print(f"report: {path}", markup=False)
