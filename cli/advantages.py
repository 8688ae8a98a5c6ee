"""`agentrm advantages`, `agentrm filter`, `agentrm export`: thin wrappers over
agentrm.advantages (numbers) and agentrm.training (tokens). Step-row format: docs/advantages.md."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Annotated, Any

import typer

from agentrm.cli.common import DbOption, JsonOption, console, print_json, progress, rich_table
from agentrm.errors import InputError

Est = Annotated[str, typer.Option("--estimator", help="gigpo | grpo | rloo | igpo | minform")]
Gamma = Annotated[float | None, typer.Option("--gamma", help="discount γ (default 1.0)")]
Omega = Annotated[float, typer.Option("--omega", help="GiGPO step-advantage weight ω")]
Norm = Annotated[str | None, typer.Option("--norm", help="mean | mean_std (default per estimator)")]
Anchor = Annotated[str, typer.Option("--anchor", help="exact | similar:T (difflib ratio ≥ T)")]
Baseline = Annotated[str, typer.Option("--baseline", help="episode pool: trajectory | step")]
Penalty = Annotated[float | None, typer.Option("--invalid-penalty", help="coef for valid=false rows")]
Placement = Annotated[str, typer.Option("--penalty-placement", help="row (reference) | reward (fold into r_t)")]
Std = Annotated[str | None, typer.Option("--std", help="sample (σ₁) | population (σ₀)")]
Eps = Annotated[float | None, typer.Option("--eps", help="ε added to σ")]
EpsVar = Annotated[float | None, typer.Option("--eps-var", help="ε' inside the root: σ = sqrt(var + ε')")]
IgpoNorm = Annotated[str, typer.Option("--igpo-norm", help="IGPO: separate | joint")]
Temp = Annotated[float, typer.Option("--temperature", help="min-form soft-min T (0 = hard min)")]
Scope = Annotated[str, typer.Option("--minform-scope", help="min-form: future | all")]
Run = Annotated[str | None, typer.Option("--run", help="read trajectories of this run from the store")]
RewardFrom = Annotated[str | None, typer.Option("--reward-from", help="scorer whose scores are the step rewards")]
TurnRewardFrom = Annotated[str | None, typer.Option("--turn-reward-from", help="scorer giving turn_reward (IGPO IG / PRM)")]
Out = Annotated[Path | None, typer.Option("-o", "--output", help="output file")]


def _config(estimator, gamma, omega, norm, anchor, baseline, penalty, placement, std, eps,
            igpo_norm, temperature, scope, eps_var=None):
    from agentrm.advantages import AdvantageConfig

    return AdvantageConfig(estimator=estimator, gamma=gamma, omega=omega, norm=norm, std=std,
                           eps=eps, eps_var=eps_var, baseline=baseline, anchor=anchor, invalid_penalty=penalty,
                           penalty_placement=placement, igpo_norm=igpo_norm,
                           minform_temperature=temperature, minform_scope=scope).resolve()


def _clean(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _store_rows(db: str, run: str, reward_from, turn_reward_from, estimator: str):
    from agentrm.advantages.trajectories import rows_from_trajectories
    from agentrm.traces import open_store

    store = open_store(db)
    trajs = list(store.iter_trajectories(run_id=run))
    if not trajs:
        raise InputError(f"--run {run}: no trajectories in {db}")
    if estimator in ("igpo", "minform") and turn_reward_from is None:
        turn_reward_from, reward_from = reward_from, None
    needed = [s for s in (reward_from, turn_reward_from) if s]
    scores = store.get_scores(trajectory_ids=[t.id for t in trajs]) if needed else []
    rows, keys = rows_from_trajectories(trajs, scores, reward_from, turn_reward_from)
    return store, trajs, rows, keys


def _summary(meta: dict, result) -> list[list[Any]]:
    import numpy as np

    adv = result.advantage[np.isfinite(result.advantage)]
    return [["estimator", meta["estimator"]], ["rows", meta["rows"]], ["groups", meta["groups"]],
            ["trajectories", meta["trajectories"]], ["excluded trajectories", meta["excluded_trajectories"]],
            ["mean |A|", f"{np.abs(adv).mean():.4f}" if len(adv) else "-"],
            ["step singleton share", meta.get("step_singleton_share", "-")],
            ["config hash", meta["config_hash"]]]


def advantages_cmd(
    input: Annotated[Path | None, typer.Argument(help="step rows, one JSON object per line")] = None,
    output: Out = None, estimator: Est = "gigpo", gamma: Gamma = None, omega: Omega = 1.0,
    norm: Norm = None, anchor: Anchor = "exact", baseline: Baseline = "trajectory",
    invalid_penalty: Penalty = None, penalty_placement: Placement = "row", std: Std = None,
    eps: Eps = None, eps_var: EpsVar = None, igpo_norm: IgpoNorm = "separate", temperature: Temp = 0.1,
    minform_scope: Scope = "future", db: DbOption = "sqlite:///agentrm.db", run: Run = None,
    reward_from: RewardFrom = None, turn_reward_from: TurnRewardFrom = None, json_: JsonOption = False,
) -> None:
    """Compute advantages from a step-row file (IN.jsonl -o OUT.jsonl) or a stored run (--run)."""
    from agentrm.advantages import compute, read_step_rows
    from agentrm.advantages.rows import write_jsonl_atomic
    from agentrm.advantages.trajectories import advantage_records

    cfg = _config(estimator, gamma, omega, norm, anchor, baseline, invalid_penalty, penalty_placement,
                  std, eps, igpo_norm, temperature, minform_scope, eps_var)
    if (input is None) == (run is None):
        raise InputError("give either a step-row file (IN.jsonl -o OUT.jsonl) or --run ID (with --db)")
    if input is not None:
        if output is None:
            raise InputError("-o OUT.jsonl is required with an input file")
        rows, records = read_step_rows(input)
        if not records:
            raise InputError("no step rows in the file", path=str(input))
        result = compute(rows, cfg)
        cols = {k: v.tolist() for k, v in result.columns.items()}
        out = ({**rec, **{k: _clean(cols[k][i]) for k in cols}} for i, rec in enumerate(records))
        write_jsonl_atomic(out, output)
        write_jsonl_atomic([result.metadata], Path(f"{output}.meta.json"))
    else:
        store, _, rows, keys = _store_rows(db, run, reward_from, turn_reward_from, cfg.estimator)
        result = compute(rows, cfg)
        written = store.write_advantages(advantage_records(result, keys, cfg))
        result.metadata["written"] = written
        if output is not None:
            cols = {k: v.tolist() for k, v in result.columns.items()}
            recs = ({"uid": str(rows.uid[i]), "traj_uid": str(rows.traj_uid[i]), "step": int(rows.step[i]),
                     "anchor": rows.anchor[i], "reward": _clean(float(rows.reward[i])),
                     "valid": bool(rows.valid[i]), "turn_reward": _clean(float(rows.turn_reward[i])),
                     **{k: _clean(cols[k][i]) for k in cols}} for i in range(len(rows)))
            write_jsonl_atomic(recs, output)
    if json_:
        print_json(result.metadata)
    else:
        console.print(rich_table("advantages", ["", "value"], _summary(result.metadata, result)))


def _records_column(records: list[dict], key: str, kind: type):
    import numpy as np

    if not any(key in r for r in records):
        return None
    if kind is bool:
        return np.array([bool(r.get(key, True)) for r in records])
    out = np.empty(len(records), object)
    out[:] = [None if r.get(key) is None else str(r.get(key)) for r in records]
    return out


def _stats_rows(before: dict, after: dict | None) -> list[list[Any]]:
    keys = ["rows", "groups", "trajectories", "zero_variance_groups", "zero_variance_share",
            "step_groups", "singleton_share", "singleton_row_share", "mean_step_group_size",
            "step_group_size_histogram"]
    fmt = lambda v: f"{v:.3f}" if isinstance(v, float) else v  # noqa: E731
    return [[k, fmt(before.get(k)), fmt(after.get(k)) if after else ""] for k in keys]


def filter_cmd(
    input: Annotated[Path | None, typer.Argument(help="step rows (JSONL)")] = None,
    output: Out = None,
    zero_variance: Annotated[str, typer.Option("--zero-variance", help="keep | drop | keep-step")] = "keep",
    min_score: Annotated[float | None, typer.Option("--min-score")] = None,
    max_score: Annotated[float | None, typer.Option("--max-score")] = None,
    best_of: Annotated[int | None, typer.Option("--best-of", help="keep top-N per group")] = None,
    require_verified: Annotated[bool, typer.Option("--require-verified", help="keep verified only")] = False,
    dedup: Annotated[float | None, typer.Option("--dedup", help="near-duplicate ratio threshold")] = None,
    anchor: Anchor = "exact", gamma: Gamma = None, invalid_penalty: Penalty = None,
    db: DbOption = "sqlite:///agentrm.db", run: Run = None,
    verifier: Annotated[str | None, typer.Option("--verifier", help="store: scorer gating --require-verified")] = None,
    ids_out: Annotated[Path | None, typer.Option("--ids-out", help="store: write kept trajectory ids")] = None,
    json_: JsonOption = False,
) -> None:
    """Filter step rows (zero-variance groups, score range, best-of-N, verified, near-duplicates)
    and print batch statistics before and after."""
    import numpy as np

    from agentrm.advantages import AdvantageConfig, read_step_rows
    from agentrm.advantages.filters import FilterConfig, apply_filters, batch_statistics
    from agentrm.advantages.rows import write_jsonl_atomic

    fcfg = FilterConfig(zero_variance=zero_variance, min_score=min_score, max_score=max_score,
                        best_of=best_of, require_verified=require_verified, dedup=dedup)
    acfg = AdvantageConfig(estimator="gigpo", anchor=anchor, gamma=gamma, invalid_penalty=invalid_penalty)
    if (input is None) == (run is None):
        raise InputError("give either a step-row file (IN.jsonl) or --run ID (with --db)")
    if input is not None:
        rows, records = read_step_rows(input)
        verified, text = _records_column(records, "verified", bool), _records_column(records, "text", str)
    else:
        store, trajs, rows, keys = _store_rows(db, run, None, None, "gigpo")
        verified, text = _store_extras(store, trajs, keys, verifier, require_verified)
    keep, removed = apply_filters(rows, fcfg, acfg, verified, text)
    before = batch_statistics(rows, acfg)
    after = batch_statistics(rows.take(np.flatnonzero(keep)), acfg)
    if input is not None and output is not None:
        write_jsonl_atomic((r for r, k in zip(records, keep.tolist(), strict=True) if k), output)
    if input is None and ids_out is not None:
        kept = sorted({keys[i][0] for i in np.flatnonzero(keep).tolist()})
        ids_out.write_text("".join(f"{t}\n" for t in kept))
    if json_:
        print_json({"before": before, "after": after, "removed_trajectories": removed})
        return
    console.print(rich_table("batch statistics", ["", "before", "after"], _stats_rows(before, after)))
    console.print(rich_table("removed trajectories", ["filter", "count"], [[k, v] for k, v in removed.items()]))


def _store_extras(store, trajs, keys, verifier, require_verified):
    import numpy as np

    text = np.empty(len(keys), object)
    by_id = {t.id: {turn.index: turn for turn in t.turns} for t in trajs}
    text[:] = [json.dumps([by_id[t][i].assistant.get("content"), by_id[t][i].assistant.get("tool_calls")],
                          sort_keys=True, default=str) for t, i in keys]
    if not require_verified:
        return None, text
    if verifier is None:
        raise InputError("--require-verified with --run needs --verifier SCORER")
    passed = {s.trajectory_id for s in store.get_scores(trajectory_ids=list(by_id), scorer=verifier)
              if s.turn_index is None and s.value is not None and s.value >= 0.5}
    return np.array([t in passed for t, _ in keys]), text


def export_cmd(
    output: Annotated[Path, typer.Option("-o", "--output", help="file (.parquet/.pt) or directory (trl)")],
    fmt: Annotated[str, typer.Option("--format", help="verl | torch | trl")] = "verl",
    db: DbOption = "sqlite:///agentrm.db", run: Run = None,
    estimator: Annotated[str, typer.Option("--estimator", help="which stored advantages (store mode)")] = "gigpo",
    config_hash: Annotated[str | None, typer.Option("--config-hash", help="pick one stored config")] = None,
    trajectories: Annotated[Path | None, typer.Option("--trajectories", help="trajectory JSONL (file mode)")] = None,
    advantages: Annotated[Path | None, typer.Option("--advantages", help="OUT.jsonl of `agentrm advantages`")] = None,
    tokenizer: Annotated[str, typer.Option("--tokenizer", help="policy tokenizer: smollm2 | path")] = "smollm2",
    tool_tokens: Annotated[str, typer.Option("--tool-tokens", help="zero | broadcast")] = "zero",
    json_: JsonOption = False,
) -> None:
    """Export one row per turn with per-token advantages for a trainer (verl / torch / trl)."""
    from agentrm.models import load_tokenizer
    from agentrm.training.export import FORMATS, build_batch, write_batch

    if fmt not in FORMATS:
        raise InputError(f"--format {fmt!r}: choose from {', '.join(FORMATS)}")
    if tool_tokens not in ("zero", "broadcast"):
        raise InputError(f"--tool-tokens {tool_tokens!r}: use zero or broadcast")
    if run is not None:
        trajs, adv_map, meta = _store_advantages(db, run, estimator, config_hash)
    elif trajectories is not None and advantages is not None:
        trajs, adv_map, meta = _file_advantages(trajectories, advantages)
    else:
        raise InputError("give --run ID (with --db) or --trajectories FILE --advantages OUT.jsonl")
    tok = load_tokenizer(tokenizer)
    with progress() as bar:
        task = bar.add_task("tokenising", total=len(trajs))
        batch = build_batch(trajs, adv_map, tok, meta, tool_tokens=tool_tokens,
                            on_progress=lambda n: bar.advance(task, n))
    pad = tok.pad_token_id if tok.pad_token_id is not None else (tok.eos_token_id or 0)
    path = write_batch(batch, fmt, output, pad_id=pad)
    info = {"format": fmt, "output": str(path), **batch.metadata}
    if json_:
        print_json(info)
    else:
        console.print(rich_table("export", ["", "value"], [[k, v] for k, v in info.items()
                                                          if not isinstance(v, dict)]))


def _store_advantages(db: str, run: str, estimator: str, config_hash: str | None):
    from agentrm.traces import open_store

    store = open_store(db)
    trajs = list(store.iter_trajectories(run_id=run))
    advs = store.get_advantages(trajectory_ids=[t.id for t in trajs], estimator=estimator)
    hashes = sorted({a.config_hash for a in advs})
    if config_hash is not None:
        advs = [a for a in advs if a.config_hash == config_hash]
    elif len(hashes) > 1:
        raise InputError(f"--run {run}: {estimator} advantages exist for several configs "
                         f"({', '.join(hashes)}): pick one with --config-hash")
    if not advs:
        raise InputError(f"--run {run}: no stored {estimator} advantages; run `agentrm advantages "
                         f"--estimator {estimator} --run {run}` first")
    meta = {"estimator": estimator, "config_hash": advs[0].config_hash, "run": run,
            "conventions": advs[0].details.get("config") if advs[0].details else None}
    return trajs, {(a.trajectory_id, a.turn_index): a.value for a in advs}, meta


def _file_advantages(trajectories: Path, advantages: Path):
    from agentrm.advantages.rows import iter_jsonl
    from agentrm.traces.io import read_trajectories

    trajs = list(read_trajectories(trajectories))
    adv_map: dict[tuple[str, int], float] = {}
    for rec, (path, line) in iter_jsonl(advantages):
        if not isinstance(rec, dict) or "traj_uid" not in rec or "step" not in rec or "advantage" not in rec:
            raise InputError("need traj_uid, step and advantage (output of `agentrm advantages`)",
                             path=path, line=line)
        value = rec["advantage"]
        adv_map[(str(rec["traj_uid"]), int(rec["step"]))] = math.nan if value is None else float(value)
    meta_path = Path(f"{advantages}.meta.json")
    meta = json.loads(meta_path.read_text().splitlines()[0]) if meta_path.exists() else {}
    return trajs, adv_map, {"conventions": meta, "source": str(advantages)}


def register(app: typer.Typer) -> None:
    app.command("advantages")(advantages_cmd)
    app.command("filter")(filter_cmd)
    app.command("export")(export_cmd)
