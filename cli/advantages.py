"""`agentrm advantages`, `agentrm filter`, `agentrm export`: flags from the pipeline's configs,
one pipeline call each, a table or JSON out. Step-row format: docs/advantages.md."""

from __future__ import annotations

import inspect
from typing import Any

import typer

from agentrm.advantages import AdvantageConfig
from agentrm.advantages.filters import FilterConfig
from agentrm.cli.common import (
    DbOption,
    JsonOption,
    LazyProgress,
    console,
    open_db,
    print_json,
    rich_table,
)
from agentrm.cli.options import build, command, parameters
from agentrm.pipeline import AdvantagesConfig, ExportConfig, FilterStageConfig

_KW = inspect.Parameter.KEYWORD_ONLY
COMMON = [inspect.Parameter("db", _KW, default=None, annotation=DbOption),
          inspect.Parameter("json_", _KW, default=False, annotation=JsonOption)]


def _advantages(values: dict[str, Any]) -> None:
    from agentrm import pipeline

    config = build(AdvantagesConfig, values, conventions=build(AdvantageConfig, values))
    store = open_db(values["db"], must_exist=True) if config.run is not None else None
    out = pipeline.advantages(store, config)
    if values["json_"]:
        print_json(out.metadata | {"written": out.written})
        return
    console.print(rich_table("advantages", ["", "value"], _summary(out)))


def _summary(out: Any) -> list[list[Any]]:
    import numpy as np

    meta = out.metadata
    adv = out.result.advantage[np.isfinite(out.result.advantage)]
    step = out.result.columns.get("step_advantage")
    nonzero = int(np.count_nonzero(np.nan_to_num(step))) if step is not None else None
    rows = [["estimator", meta["estimator"]], ["reward", meta.get("reward", "-")],
            ["rows", meta["rows"]], ["groups", meta["groups"]],
            ["trajectories", meta["trajectories"]],
            ["excluded trajectories", meta["excluded_trajectories"]],
            ["mean |A|", f"{np.abs(adv).mean():.4f}" if len(adv) else "-"],
            ["step singleton share", meta.get("step_singleton_share", "-")]]
    if nonzero is not None:
        rows.append(["rows with a step term ≠ 0", nonzero])
    if out.written:
        rows.append(["written to the store", out.written])
    rows.append(["config hash", meta["config_hash"]])
    return rows


def _filter(values: dict[str, Any]) -> None:
    from agentrm import pipeline

    config = build(FilterStageConfig, values, rules=build(FilterConfig, values),
                   conventions=build(AdvantageConfig, values, estimator="gigpo"))
    store = open_db(values["db"], must_exist=True) if config.run is not None else None
    out = pipeline.filter(store, config)
    if values["json_"]:
        print_json({"before": out.before, "after": out.after, "removed_trajectories": out.removed})
        return
    keys = ["rows", "groups", "trajectories", "zero_variance_groups", "zero_variance_share",
            "step_groups", "singleton_share", "singleton_row_share", "mean_step_group_size",
            "step_group_size_histogram"]
    fmt = lambda v: f"{v:.3f}" if isinstance(v, float) else v  # noqa: E731
    console.print(rich_table("batch statistics", ["", "before", "after"],
                             [[k, fmt(out.before.get(k)), fmt(out.after.get(k))] for k in keys]))
    console.print(rich_table("removed trajectories", ["filter", "count"],
                             [[k, v] for k, v in out.removed.items()]))


def _export(values: dict[str, Any]) -> None:
    from agentrm import pipeline

    config = build(ExportConfig, values)
    store = open_db(values["db"], must_exist=True) if config.run is not None else None
    with LazyProgress("tokenising") as bar:
        out = pipeline.export(store, config, on_progress=bar.update)
    if values["json_"]:
        print_json(out.metadata)
        return
    console.print(rich_table("export", ["", "value"],
                             [[k, v] for k, v in out.metadata.items() if not isinstance(v, dict)]))


advantages_cmd = command(
    _advantages, parameters(AdvantagesConfig) + parameters(AdvantageConfig) + COMMON,
    "Compute advantages for a stored run (--run, rewards from --reward) or a step-row file.")
filter_cmd = command(
    _filter, parameters(FilterStageConfig) + parameters(FilterConfig)
    + parameters(AdvantageConfig, skip={"estimator", "omega", "norm", "std", "eps", "eps_var",
                                        "baseline", "penalty_placement", "igpo_norm",
                                        "minform_temperature", "minform_scope"}) + COMMON,
    "Filter step rows (zero-variance groups, score range, best-of-N, verified, near-duplicates) "
    "and print batch statistics before and after.")
export_cmd = command(
    _export, parameters(ExportConfig) + COMMON,
    "Export one row per turn with per-token advantages for a trainer (verl / torch / trl).")


def register(app: typer.Typer) -> None:
    app.command("advantages")(advantages_cmd)
    app.command("filter")(filter_cmd)
    app.command("export")(export_cmd)
