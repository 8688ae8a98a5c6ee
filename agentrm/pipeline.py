"""The one module that crosses stages: task → rollout → trace → scores → rewards → advantages →
training batch. Each function takes a store and one config dataclass and only calls the stages;
the CLI parses flags (generated from these configs), calls one function here and renders.

    summary = rollout(store, RolloutConfig(tasks="builtin", policy="scripted:gold.json", group_size=4))
    score(store, ScoreConfig(run=summary.run_id, scorers=["prm"]))
    advantages(store, AdvantagesConfig(run=summary.run_id, reward="outcome + 0.5*prm|clip:0.8"))
    export(store, ExportConfig(run=summary.run_id, output=Path("batch.parquet")))
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from agentrm.advantages import AdvantageConfig
from agentrm.config import option
from agentrm.errors import InputError, NotFoundError
from agentrm.hashing import stable_hash
from agentrm.protocols import ScoringContext
from agentrm.rewards.stored import OUTCOME, CombineConfig, combine_stored, is_plain_scorer
from agentrm.scoring import ScoreConfig, ScoreResult, build_scorers, score_trajectories
from agentrm.types import Score, Trajectory

log = logging.getLogger("agentrm.pipeline")

__all__ = ["AdvantagesConfig", "AdvantagesResult", "CombineConfig", "ExportConfig",
           "FilterStageConfig", "ScoreConfig", "advantages", "combine", "export", "filter",
           "rollout", "score", "trajectories_of"]


def trajectories_of(store: Any, run: str | None) -> list[Trajectory]:
    """The run's trajectories (every stored one when `run` is None); NotFoundError (exit 4)
    for a run id the store does not know, InputError for an empty store."""
    if run is not None:
        try:
            store.get_run(run)
        except NotFoundError:
            raise NotFoundError(f"--run {run}: no such run in the store "
                                "(`agentrm traces runs` lists them)") from None
    trajs = list(store.iter_trajectories(run_id=run))
    if not trajs:
        raise InputError(f"no trajectories{' in run ' + repr(run) if run else ''} in the store (--run)")
    return trajs


# ------------------------------------------------------------------------------ rollout

def rollout(store: Any, config: Any, **kwargs: Any) -> Any:
    """Group rollouts of a policy on tasks through the one driver (agentrm.rollout.run)."""
    from agentrm.rollout.config import run_config

    return run_config(store, config, **kwargs)


# ------------------------------------------------------------------------------ scores

def score(store: Any, config: ScoreConfig, trajectories: Sequence[Trajectory] | None = None,
          context: ScoringContext | None = None,
          on_progress: Callable[[int, int | None], None] | None = None) -> ScoreResult:
    """Score the run's trajectories (or the given ones) with every configured scorer; rows are
    written to the store as each batch finishes."""
    trajs = list(trajectories) if trajectories is not None else trajectories_of(store, config.run)
    if config.executor == "ray":
        return _score_on_ray(store, config, trajs, on_progress)
    scorers = build_scorers(config)
    context = context or default_context(store, config.device)
    rows = score_trajectories(trajs, scorers, store=store, batch_size=config.batch_size,
                              on_progress=on_progress, context=context)
    return ScoreResult(trajs, rows)


def _score_on_ray(store: Any, config: ScoreConfig, trajs: list[Trajectory],
                  on_progress: Callable[[int, int | None], None] | None) -> ScoreResult:
    """Scorer actors on a Ray cluster; they read and write the shared store themselves."""
    from agentrm.distributed import score_on_ray
    from agentrm.errors import InfrastructureError

    url = store.engine.url.render_as_string(hide_password=False)
    if url.startswith("sqlite") and ":memory:" in url:
        raise InputError("--executor ray needs a shared --db: Ray workers read and write the store")
    ids, done = [t.id for t in trajs], [0]

    def on_batch(n: int) -> None:
        done[0] += n
        if on_progress is not None:
            on_progress(done[0], len(ids))

    report = score_on_ray(ids, url, config.scorer_specs(), actors=config.actors,
                          batch_size=config.batch_size, ray_address=config.ray_address,
                          on_batch=on_batch)
    if report["failed"]:
        lost = sum(len(f["trajectory_ids"]) for f in report["failed"])
        raise InfrastructureError(f"{lost} trajectories could not be scored on Ray: "
                                  f"{report['failed'][0]['error']} (rerun the same command to finish them)")
    names = set(config.scorers)
    return ScoreResult(trajs, [s for s in store.get_scores(trajectory_ids=ids) if s.scorer in names])


def default_context(store: Any, device: str | None = None) -> ScoringContext:
    """Docker sandboxes and local threads: what scorers use unless a caller says otherwise."""
    from agentrm.sandboxes import DockerSandbox

    return ScoringContext(store=store, sandbox_factory=DockerSandbox, executor=None, device=device)


# ------------------------------------------------------------------------------ rewards

def combine(store: Any, config: CombineConfig, trajectories: Sequence[Trajectory] | None = None):
    """Per-turn rewards from stored scores by a combine SPEC; with `config.write` they are
    stored as `combined` rows (config hash = the spec's hash) for the advantages stage."""
    trajs = list(trajectories) if trajectories is not None else trajectories_of(store, config.run)
    return combine_stored(store, config, trajs)


# ------------------------------------------------------------------------------ advantages

TURN_REWARD_ESTIMATORS = ("igpo", "minform")


@dataclass
class AdvantagesConfig:
    """Which rewards, which run or file, and the estimator's conventions."""

    run: str | None = option(None, "Read this stored run and write advantages back to the store.")
    input: Path | None = option(None, "Step-row file instead of a run (.jsonl, .parquet).",
                                argument=True)
    output: Path | None = option(None, "Also write the rows with their advantages here.", "-o", "--output")
    reward: str | None = option(
        None, "Reward per step: a scorer name, 'outcome' (the rollout's own verifier; the default) "
        "or a combine SPEC such as 'outcome + 0.5*prm|clip:0.8'.", "--reward", "--reward-from")
    turn_reward: str | None = option(
        None, "IGPO / min-form turn reward: a scorer name or a combine SPEC (for those two "
        "estimators --reward alone names it).", "--turn-reward",
        "--turn-reward-from")
    conventions: AdvantageConfig = option(factory=AdvantageConfig, cli=False)


@dataclass
class AdvantagesResult:
    result: Any  # agentrm.advantages.AdvantageResult
    metadata: dict[str, Any]
    written: int = 0


def _reward_source(store: Any, spec: str | None, run: str | None, trajs: list[Trajectory],
                   write: bool = True) -> tuple[str | None, list[Score], dict[str, Any]]:
    """(scorer name for rows_from_trajectories, the scores it reads, provenance); a combine
    SPEC's rows are stored when `write` (advantages record which rows they were made from)."""
    if spec is None or spec.strip() == OUTCOME:
        return None, [], {"reward": OUTCOME}
    if is_plain_scorer(spec):
        name = spec.strip()
        scores = store.get_scores(trajectory_ids=[t.id for t in trajs], scorer=name)
        if not scores:
            raise InputError(f"--reward {name}: no stored scores from {name!r} "
                             f"(run `agentrm score -s {name} --run {run}` first)")
        hashes = sorted({s.config_hash for s in scores})
        return name, scores, {"reward": name, "reward_config_hashes": hashes}
    table, rows = combine_stored(store, CombineConfig(spec=spec, run=run, write=write), trajs)
    return "combined", rows, {"reward": spec, "reward_hash": rows[0].config_hash if rows else None}


def advantages(store: Any, config: AdvantagesConfig) -> AdvantagesResult:
    """Advantages from a step-row file, or from a stored run whose rewards come from scores
    (one scorer, or a combine SPEC whose per-turn rewards are stored first as `combined` rows)."""
    from agentrm.advantages import compute
    from agentrm.advantages.trajectories import advantage_records, rows_from_trajectories

    conventions = config.conventions.resolve()
    if (config.input is None) == (config.run is None):
        raise InputError("give either a step-row file (IN.jsonl -o OUT.jsonl) or --run ID")
    if config.input is not None:
        return _file_advantages(config, conventions)
    trajs = trajectories_of(store, config.run)
    reward, turn_reward = config.reward, config.turn_reward
    if conventions.estimator in TURN_REWARD_ESTIMATORS and turn_reward is None:
        reward, turn_reward = None, reward  # IGPO / min-form: one reward given is the turn reward
    reward_from, reward_scores, provenance = _reward_source(store, reward, config.run, trajs)
    turn_from, turn_scores, turn_prov = (None, [], {})
    if turn_reward is not None:
        turn_from, turn_scores, turn_prov = _reward_source(store, turn_reward, config.run, trajs)
        if turn_from == "combined" and reward_from == "combined":
            raise InputError("--reward and --turn-reward cannot both be combine SPECs")
    rows, keys = rows_from_trajectories(trajs, reward_scores + turn_scores, reward_from, turn_from)
    result = compute(rows, conventions)
    provenance |= {f"turn_{k}": v for k, v in turn_prov.items()}
    config_hash = stable_hash({"conventions": asdict(conventions), **provenance})
    records = advantage_records(result, keys, conventions)
    for rec in records:
        rec.config_hash = config_hash
        rec.details["reward"] = provenance
    meta = {**result.metadata, **provenance, "config_hash": config_hash}
    written = store.write_advantages(records)
    if config.output is not None:
        _write_rows(config.output, _row_records(rows, result))
    return AdvantagesResult(result, meta, written)


def _file_advantages(config: AdvantagesConfig, conventions: AdvantageConfig) -> AdvantagesResult:
    from agentrm.advantages.io import advantages_file

    assert config.input is not None
    result = advantages_file(config.input, config.output, conventions)
    return AdvantagesResult(result, dict(result.metadata))


def _row_records(rows: Any, result: Any) -> list[dict[str, Any]]:
    cols = {k: v.tolist() for k, v in result.columns.items()}
    return [{"uid": str(rows.uid[i]), "traj_uid": str(rows.traj_uid[i]), "step": int(rows.step[i]),
             "anchor": rows.anchor[i], "reward": _finite(float(rows.reward[i])),
             "valid": bool(rows.valid[i]), "turn_reward": _finite(float(rows.turn_reward[i])),
             **{k: _finite(cols[k][i]) for k in cols}} for i in range(len(rows))]


def _write_rows(path: Path, records: list[dict[str, Any]]) -> None:
    from agentrm.advantages.io import write_records

    write_records(path, records)


def _finite(value: Any) -> Any:
    return None if isinstance(value, float) and not math.isfinite(value) else value


# ------------------------------------------------------------------------------ filter, export


@dataclass
class FilterStageConfig:
    """Which rows to filter (a file or a stored run) and how (agentrm.advantages.filters)."""

    run: str | None = option(None, "Filter this stored run's trajectories.")
    input: Path | None = option(None, "Step-row file instead of a run.", argument=True)
    output: Path | None = option(None, "File mode: write the kept rows here.", "-o", "--output")
    ids_out: Path | None = option(None, "Store mode: write the kept trajectory ids here.")
    verifier: str | None = option(None, "Store mode: the scorer behind --require-verified.")
    verified_at: float = option(1.0, "A trajectory is verified when its verifier score is ≥ this.")
    reward: str | None = option(
        None, "Store mode: the reward the outcome filters see, as `agentrm advantages --reward` "
        "takes it (a scorer name, 'outcome' or a combine SPEC).")
    rules: Any = option(None, cli=False)  # agentrm.advantages.filters.FilterConfig
    conventions: AdvantageConfig = option(factory=AdvantageConfig, cli=False)


@dataclass
class FilterResult:
    keep: Any  # boolean mask over rows
    before: dict[str, Any]
    after: dict[str, Any]
    removed: dict[str, int]
    kept_trajectories: list[str]


def filter(store: Any, config: FilterStageConfig) -> FilterResult:  # noqa: A001 - the stage's name
    """Keep-mask over step rows and batch statistics before and after."""
    import numpy as np

    from agentrm.advantages.filters import FilterConfig, apply_filters, batch_statistics
    from agentrm.advantages.io import read_rows, write_rows
    from agentrm.advantages.trajectories import rows_from_trajectories

    rules = config.rules or FilterConfig()
    rules.validate()
    if (config.input is None) == (config.run is None):
        raise InputError("give either a step-row file (IN.jsonl, .parquet) or --run ID")
    source = None
    if config.input is not None:
        if config.reward is not None:
            raise InputError("--reward reads a stored run; a step-row file carries its own reward column")
        source = read_rows(config.input)
        rows = source.rows
        verified, text = _column(source.extra("verified", bool), bool), _column(source.extra("text", str), str)
    else:
        trajs = trajectories_of(store, config.run)
        reward_from, reward_scores, _ = _reward_source(store, config.reward, config.run, trajs, write=False)
        rows, keys = rows_from_trajectories(trajs, reward_scores, reward_from)
        verified, text = _store_extras(store, trajs, keys, config, rules.require_verified)
    keep, removed = apply_filters(rows, rules, config.conventions, verified, text)
    before = batch_statistics(rows, config.conventions)
    after = batch_statistics(rows.take(np.flatnonzero(keep)), config.conventions)
    kept: list[str] = sorted({str(rows.traj_uid[i]) for i in np.flatnonzero(keep).tolist()})
    if source is not None and config.output is not None:
        write_rows(config.output, source, keep=keep)
    if config.input is None and config.ids_out is not None:
        from agentrm.files import atomic_write

        atomic_write(config.ids_out, "".join(f"{t}\n" for t in kept))
    return FilterResult(keep, before, after, removed, kept)


def _column(values: list | None, kind: type):
    """An optional per-row column as the filters take it (missing `verified` counts as true)."""
    import numpy as np

    if values is None:
        return None
    if kind is bool:
        return np.array([True if v is None else bool(v) for v in values])
    out = np.empty(len(values), object)
    out[:] = [None if v is None else str(v) for v in values]
    return out


def _store_extras(store, trajs, keys, config: FilterStageConfig, require_verified: bool):
    import json

    import numpy as np

    text = np.empty(len(keys), object)
    by_id = {t.id: {turn.index: turn for turn in t.turns} for t in trajs}
    text[:] = [json.dumps([by_id[t][i].assistant.get("content"), by_id[t][i].assistant.get("tool_calls")],
                          sort_keys=True, default=str) for t, i in keys]
    if not require_verified:
        return None, text
    if config.verifier is None:
        raise InputError("--require-verified with --run needs --verifier SCORER")
    passed = {s.trajectory_id for s in store.get_scores(trajectory_ids=list(by_id), scorer=config.verifier)
              if s.turn_index is None and s.value is not None and s.value >= config.verified_at}
    return np.array([t in passed for t, _ in keys]), text


@dataclass
class ExportConfig:
    """A trainer batch: one row per turn with per-token advantages."""

    output: Path = option(Path("batch.parquet"), "File (.parquet/.pt) or directory (trl).", "-o", "--output")
    format: str = option("verl", "verl | torch | trl", "--format")
    run: str | None = option(None, "Export this stored run's advantages.")
    estimator: str = option("gigpo", "Which stored advantages (store mode).")
    config_hash: str | None = option(None, "Pick one stored advantage config.")
    trajectories: Path | None = option(None, "File mode: trajectory JSONL.")
    advantages: Path | None = option(None, "File mode: OUT.jsonl of `agentrm advantages`.")
    tokenizer: str = option("smollm2", "The policy's tokenizer: smollm2 | path.")
    tool_tokens: str = option("zero", "Advantage on tool/observation tokens: zero | broadcast.")


@dataclass
class ExportResult:
    path: Path
    metadata: dict[str, Any]


def export(store: Any, config: ExportConfig,
           on_progress: Callable[[int, int], None] | None = None) -> ExportResult:
    """Tokenise the trajectories and write the batch (agentrm.training.export)."""
    from agentrm.models import load_tokenizer
    from agentrm.training.export import FORMATS, build_batch, write_batch

    if config.format not in FORMATS:
        raise InputError(f"--format {config.format!r}: choose from {', '.join(FORMATS)}")
    if config.tool_tokens not in ("zero", "broadcast"):
        raise InputError(f"--tool-tokens {config.tool_tokens!r}: use zero or broadcast")
    if config.run is not None:
        trajs, adv_map, meta = _stored_advantages(store, config)
    elif config.trajectories is not None and config.advantages is not None:
        trajs, adv_map, meta = _file_advantages_map(config.trajectories, config.advantages)
    else:
        raise InputError("give --run ID or --trajectories FILE --advantages OUT.jsonl")
    tok = load_tokenizer(config.tokenizer)
    done = [0]

    def advance(n: int) -> None:
        done[0] += n
        if on_progress is not None:
            on_progress(done[0], len(trajs))

    batch = build_batch(trajs, adv_map, tok, meta, tool_tokens=config.tool_tokens, on_progress=advance)
    pad = tok.pad_token_id if tok.pad_token_id is not None else (tok.eos_token_id or 0)
    path = write_batch(batch, config.format, config.output, pad_id=pad)
    return ExportResult(path, {"format": config.format, "output": str(path), **batch.metadata})


def _stored_advantages(store: Any, config: ExportConfig):
    trajs = trajectories_of(store, config.run)
    advs = store.get_advantages(trajectory_ids=[t.id for t in trajs], estimator=config.estimator)
    hashes = sorted({a.config_hash for a in advs})
    if config.config_hash is not None:
        advs = [a for a in advs if a.config_hash == config.config_hash]
    elif len(hashes) > 1:
        made_from = {a.config_hash: (a.details or {}).get("reward", {}).get("reward") for a in advs}
        listed = ", ".join(f"{h} ({made_from[h]})" if made_from[h] else h for h in hashes)
        raise InputError(f"--run {config.run}: {config.estimator} advantages exist for several "
                         f"configs: {listed}; pick one with --config-hash")
    if not advs:
        raise InputError(f"--run {config.run}: no stored {config.estimator} advantages; run "
                         f"`agentrm advantages --estimator {config.estimator} --run {config.run}` first")
    details = advs[0].details or {}
    meta = {"estimator": config.estimator, "config_hash": advs[0].config_hash, "run": config.run,
            "conventions": details.get("config"), "reward": details.get("reward")}
    return trajs, {(a.trajectory_id, a.turn_index): a.value for a in advs}, meta


def _file_advantages_map(trajectories: Path, advantages_path: Path):
    import json

    from agentrm.advantages.rows import iter_jsonl
    from agentrm.traces.io import read_trajectories

    trajs = list(read_trajectories(trajectories))
    adv_map: dict[tuple[str, int], float] = {}
    for rec, (path, line) in iter_jsonl(advantages_path):
        if not isinstance(rec, dict) or not {"traj_uid", "step", "advantage"} <= rec.keys():
            raise InputError("need traj_uid, step and advantage (output of `agentrm advantages`)",
                             path=path, line=line)
        value = rec["advantage"]
        adv_map[(str(rec["traj_uid"]), int(rec["step"]))] = math.nan if value is None else float(value)
    meta_path = Path(f"{advantages_path}.meta.json")
    meta = json.loads(meta_path.read_text().splitlines()[0]) if meta_path.exists() else {}
    return trajs, adv_map, {"conventions": meta, "source": str(advantages_path)}
