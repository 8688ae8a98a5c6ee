"""`agentrm train`: the GiGPO loop. Each iteration runs group rollouts through the one rollout
driver, scores them as the reward spec says, computes advantages, drops zero-variance groups
(dynamic sampling) and updates the policy in this process from the stored token ids, sampling
log-probs and masks (agentrm.training.update: verl's policy loss, LoRA through peft).

Everything lands in the store: the training run (kind `train`, its resolved config), one
rollout run per iteration (`TRAIN.it003`, kind `train-rollout`, annotated with the update's
statistics) and the held-out evaluations (`TRAIN.eval003`, kind `train-eval`). Checkpoints go
to `--out` (default runs/train/TRAIN/it003). A rerun of the same `--run-id` resumes after the
last finished iteration from its checkpoint; an iteration cut off half-way resumes its
rollouts by the driver's rule and redoes its update from the previous checkpoint.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from agentrm.config import option
from agentrm.errors import InputError, NotFoundError
from agentrm.protocols import TrainablePolicy
from agentrm.types import Trajectory

log = logging.getLogger("agentrm.training.loop")

DEFAULT_POLICY = "transformers:smollm2?constrain=true&max_new_tokens=128"
SUCCESS_AT = 1.0  # a trajectory succeeded when its verified reward reaches this
# what must match for a rerun to continue a training run (the rest may change, e.g. --iterations)
FIXED = ("tasks", "task_ids", "policy", "group_size", "reward", "estimator", "lora_rank", "max_turns")


@dataclass
class TrainConfig:
    """What one training run does; stored with the run, so a rerun resumes the same loop."""

    tasks: str = option("builtin", "Training tasks: a task file (.jsonl/.yaml), `builtin`, or "
                        "`swe-bench[:ID,ID]` (the bundled SWE-bench instances in agent mode, "
                        "rewarded by their tests).", metavar="FILE")
    task_ids: list[str] = option(None, "Only these training task ids (repeatable).", "--task",
                                 factory=list, metavar="ID")
    eval_tasks: str | None = option(None, "Held-out tasks, evaluated before training and every "
                                    "--eval-every iterations (a task file, `builtin` or "
                                    "`swe-bench[:ID,ID]`).", metavar="FILE")
    eval_task_ids: list[str] = option(None, "Only these held-out task ids (repeatable).", "--eval-task",
                                      factory=list, metavar="ID")
    eval_every: int = option(1, "Evaluate the held-out tasks after every N iterations.")
    eval_group_size: int = option(4, "Rollouts per held-out task.")
    policy: str = option(DEFAULT_POLICY, "transformers:PATH_OR_ID or vllm:PATH_OR_ID policy (options "
                         "after ?k=v&…); its weights are updated in this process (vLLM: a "
                         "transformers copy is trained and loaded into the engine after each update).",
                         metavar="SPEC")
    iterations: int = option(3, "Training iterations (a rerun with more continues).")
    group_size: int = option(4, "Rollouts per task per iteration (one GiGPO group).")
    max_turns: int = option(4, "Turns per rollout before `turn_limit`.")
    reward: str = option("outcome", "The reward: 'outcome' (the task's verifier), a scorer name "
                         "or a combine SPEC such as 'outcome + 0.5*prm|clip:0.8'.", metavar="SPEC")
    estimator: str = option("gigpo", "Advantage estimator: gigpo | grpo | rloo | …")
    zero_variance: str = option("auto", "Dynamic sampling: drop | keep | keep-step (auto: keep-step "
                                "for gigpo, whose step term can still fire, else drop).")
    lr: float = option(5e-5, "Learning rate (AdamW).")
    lora_rank: int = option(16, "LoRA rank (peft); 0 updates every weight.")
    clip_ratio: float = option(0.2, "PPO clip ε of the policy loss.")
    kl_coef: float = option(0.0, "KL penalty to the model without adapters (needs LoRA).")
    epochs: int = option(1, "Passes over each iteration's batch.")
    minibatches: int = option(1, "Optimiser steps per pass.")
    seed: int = option(0, "Seed of sampling and of the update's row order.")
    concurrency: int = option(1, "Trajectories at a time.")
    command_timeout: float = option(30.0, "Seconds per tool command.")
    run_id: str | None = option(None, "Name the training run; rerunning it resumes.", metavar="ID")
    out: Path | None = option(None, "Checkpoint directory (default runs/train/RUN_ID).", metavar="DIR")
    device: str | None = option(None, "cpu | cuda | cuda:N (default: CUDA when present).")

    def validate(self) -> None:
        for name in ("iterations", "group_size", "max_turns", "eval_every", "eval_group_size",
                     "epochs", "minibatches", "concurrency"):
            if getattr(self, name) < 1:
                raise InputError(f"--{name.replace('_', '-')} {getattr(self, name)}: must be at least 1")
        if self.group_size < 2:
            raise InputError("--group-size must be at least 2: advantages compare rollouts of a task")
        if not self.lr > 0 or self.lora_rank < 0 or self.kl_coef < 0 or not self.clip_ratio > 0:
            raise InputError("--lr and --clip-ratio must be > 0; --lora-rank and --kl-coef ≥ 0")
        if self.kl_coef > 0 and self.lora_rank == 0:
            raise InputError("--kl-coef needs --lora-rank > 0 (the reference is the model without adapters)")
        if self.zero_variance not in ("auto", "drop", "keep", "keep-step"):
            raise InputError(f"--zero-variance {self.zero_variance!r}: use auto, drop, keep or keep-step")
        if not self.policy.startswith(("transformers:", "vllm:")):
            raise InputError(f"--policy {self.policy}: agentrm train samples with transformers:PATH_OR_ID "
                             "or vllm:PATH_OR_ID and updates the weights in this process")
        from agentrm.advantages import AdvantageConfig
        from agentrm.rewards.combine import parse_spec

        AdvantageConfig(estimator=self.estimator).resolve()  # names the flag when unknown

        parse_spec(self.reward)  # a bad SPEC fails before anything runs
        self.selected()  # so does a missing task file or an unknown task id

    def selected(self) -> tuple[list[Any], list[Any]]:
        """(training tasks, held-out tasks), loaded and checked."""
        held_out = _select(self.eval_tasks, self.eval_task_ids, "--eval-task") if self.eval_tasks else []
        return _select(self.tasks, self.task_ids, "--task"), held_out


@dataclass(frozen=True)
class TrainEvent:
    """Progress for a display: a stage of an iteration started or ended (`seconds` set)."""

    iteration: int
    stage: str  # rollout | score | advantages | update | eval
    seconds: float | None = None
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass
class TrainResult:
    run_id: str
    out: Path
    iterations: list[dict[str, Any]]  # per finished iteration: its statistics
    evaluations: list[dict[str, Any]]  # per held-out evaluation, in order
    resumed_from: int  # iterations already finished when this call started


def iteration_run(train_id: str, k: int) -> str:
    return f"{train_id}.it{k:03d}"


def eval_run(train_id: str, after: int) -> str:
    """The held-out evaluation after `after` iterations (0 = the policy before training)."""
    return f"{train_id}.eval{after:03d}"


def rollout_stats(trajs: list[Trajectory], seconds: float | None = None) -> dict[str, Any]:
    """Reward mean/std, success rate and valid-tool-call rate of a batch of rollouts; rewards
    of infrastructure failures (None) are left out of the means, never counted as 0."""
    import numpy as np

    rewards = np.array([t.reward for t in trajs if t.reward is not None], float)
    turns = [turn for t in trajs for turn in t.turns]
    tokens = sum(int(turn.completion_tokens or 0) for turn in turns)
    out = {"trajectories": len(trajs), "rewarded": int(len(rewards)),
           "reward_mean": float(rewards.mean()) if len(rewards) else None,
           "reward_std": float(rewards.std()) if len(rewards) else None,
           "success_rate": float((rewards >= SUCCESS_AT - 1e-9).mean()) if len(rewards) else None,
           "valid_tool_call_rate": (sum(t.valid for t in turns) / len(turns)) if turns else None,
           "turns": len(turns), "completion_tokens": tokens}
    if seconds:
        out["tokens_per_s"] = tokens / seconds
    return out


class Trainer:
    """One training run's state: the store, the policy being trained and its optimiser."""

    def __init__(self, store: Any, config: TrainConfig, sandbox_factory: Any = None,
                 on_event: Callable[[Any], None] | None = None):
        config.validate()
        self.store, self.config, self.sandbox_factory = store, config, sandbox_factory
        self.emit = on_event or (lambda event: None)
        self.train_id = config.run_id or f"train-{time.strftime('%Y%m%d-%H%M%S')}"
        self.out = Path(config.out) if config.out else Path("runs") / "train" / self.train_id
        self.tasks, self.eval_tasks = config.selected()
        self.policy: TrainablePolicy | Any = None
        self.model: Any = None
        self.tokenizer: Any = None
        self.optimizer: Any = None

    # -- state -------------------------------------------------------------------------------
    def finished(self) -> int:
        """How many iterations finished (update stored and checkpoint on disk), in order."""
        done = 0
        while True:
            try:
                run = self.store.get_run(iteration_run(self.train_id, done))
            except NotFoundError:  # not started
                return done
            if "update" not in (run.get("config") or {}) or not (self._checkpoint(done) / "DONE").exists():
                return done
            done += 1

    def _checkpoint(self, k: int) -> Path:
        return self.out / f"it{k:03d}"

    def _begin(self) -> None:
        resolved = {**asdict(self.config), "out": str(self.out), "run_id": self.train_id}
        try:
            stored = self.store.get_run(self.train_id)["config"] or {}
        except NotFoundError:  # a new training run
            stored = None
        if stored is not None:
            changed = [k for k in FIXED if k in stored and stored[k] != resolved[k]]
            if changed and not self._rolled_out():
                # nothing ran under the old settings (e.g. a typo in --policy's path failed at
                # load): the run id is taken over by these settings rather than lost
                self.store.annotate_run(self.train_id, **{k: v for k, v in resolved.items()
                                                          if k != "run_id"})  # run_id: unchanged
                changed = []
            if changed:
                raise InputError(f"--run-id {self.train_id} was started with other settings "
                                 f"({', '.join('--' + k.replace('_', '-') for k in changed)}): "
                                 "resume with the same ones or pick another --run-id")
        self.store.begin_run(resolved, run_id=self.train_id, kind="train")

    def _rolled_out(self) -> bool:
        """Whether any rollout (held-out or training) of this run was started."""
        for run_id in (eval_run(self.train_id, 0), iteration_run(self.train_id, 0)):
            try:
                self.store.get_run(run_id)
                return True
            except NotFoundError:
                pass
        return False

    def _load_policy(self, resume_from: int) -> None:
        import torch

        from agentrm.rollout.policies import make_policy

        spec, device = self.config.policy, self.config.device
        self.policy = make_policy(spec, **({"device": device} if device and "device=" not in spec else {}))
        if not isinstance(self.policy, TrainablePolicy):
            raise InputError(f"--policy {spec}: this policy cannot be trained in this process")
        checkpoint = self._checkpoint(resume_from - 1) if resume_from else None
        wrap = _lora(self.config.lora_rank, checkpoint) if self.config.lora_rank else None
        self.model, self.tokenizer = self.policy.trainable(wrap)
        if checkpoint is not None and not self.config.lora_rank:
            self.model.load_state_dict(torch.load(checkpoint / "model.pt", map_location="cpu"))
        if checkpoint is not None:
            self.policy.sync()
        for name, p in self.model.named_parameters():  # LoRA: the adapters only
            p.requires_grad_(not self.config.lora_rank or "lora_" in name)
        params = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(params, lr=self.config.lr, weight_decay=0.0)
        if checkpoint is not None and (checkpoint / "optimizer.pt").exists():
            self.optimizer.load_state_dict(torch.load(checkpoint / "optimizer.pt", map_location="cpu"))

    def _save(self, k: int, stats: dict[str, Any]) -> None:
        import json

        import torch

        from agentrm.files import atomic_path

        target = self._checkpoint(k)
        with atomic_path(target, directory=True) as tmp:
            if self.config.lora_rank:
                self.model.save_pretrained(tmp / "adapter")
            else:
                torch.save(self.model.state_dict(), tmp / "model.pt")
            torch.save(self.optimizer.state_dict(), tmp / "optimizer.pt")
            (tmp / "stats.json").write_text(json.dumps(stats, indent=2, default=str))
            (tmp / "DONE").write_text("")

    # -- stages ------------------------------------------------------------------------------
    def _rollouts(self, run_id: str, tasks: list[Any], group_size: int, k: int, kind: str,
                  on_rollout: Callable[[Any], None] | None) -> tuple[list[Trajectory], float]:
        import torch

        from agentrm.rollout.loop import Limits
        from agentrm.rollout.run import RunOptions, run

        torch.manual_seed(self.config.seed * 100_003 + k * 2 + (kind == "train-eval"))
        started = time.monotonic()
        if tasks and all(is_swe_task(t) for t in tasks):
            self._swe_rollouts(run_id, tasks, group_size)
            return list(self.store.iter_trajectories(run_id=run_id)), time.monotonic() - started
        options = RunOptions(limits=Limits(max_turns=self.config.max_turns,
                                           command_timeout=self.config.command_timeout),
                             concurrency=self.config.concurrency, kind=kind, lease=False)
        run(tasks, self.policy, self.store, group_size=group_size, run_id=run_id, options=options,
            sandbox_factory=self.sandbox_factory, on_event=on_rollout)
        return list(self.store.iter_trajectories(run_id=run_id)), time.monotonic() - started

    def _swe_rollouts(self, run_id: str, tasks: list[Any], group_size: int) -> None:
        """SWE-bench instances go through the SWE-bench harness in agent mode: the policy
        being trained solves each instance `group_size` times in its image (one group), and
        every member's patch is graded by the instance's tests in a fresh container; the
        trajectory's reward is that verdict (None when the infrastructure failed)."""
        from agentrm.evals.swebench.harness import EvalConfig, evaluate

        config = EvalConfig(dataset=SWE_DATASET, predictions=None, agent=True,
                            policy=self.config.policy, instance_ids=[t.id for t in tasks],
                            group_size=group_size, max_turns=self.config.max_turns,
                            max_workers=self.config.concurrency, run_id=run_id,
                            run_dir=str(self.out / "swe-bench"),
                            cache_level="instance")  # every iteration needs the same images again
        evaluate(config, policy=self.policy, store=self.store)

    def _score(self, run_id: str) -> None:
        from agentrm.rewards.combine import parse_spec
        from agentrm.rewards.stored import OUTCOME

        spec = parse_spec(self.config.reward)
        needed = sorted(({t.scorer for t in spec.terms} | ({spec.gate[0]} if spec.gate else set()))
                        - {OUTCOME})
        if not needed:
            return
        from agentrm import pipeline
        from agentrm.scoring import ScoreConfig

        pipeline.score(self.store, ScoreConfig(run=run_id, scorers=needed, device=self.config.device))

    def _advantages(self, run_id: str) -> tuple[dict[tuple[str, int], float], list[str], dict[str, Any]]:
        from agentrm import pipeline
        from agentrm.advantages import AdvantageConfig
        from agentrm.advantages.filters import FilterConfig

        conventions = AdvantageConfig(estimator=self.config.estimator)
        out = pipeline.advantages(self.store, pipeline.AdvantagesConfig(
            run=run_id, reward=self.config.reward, conventions=conventions))
        zero_variance = self.config.zero_variance
        if zero_variance == "auto":
            zero_variance = "keep-step" if self.config.estimator == "gigpo" else "drop"
        kept = pipeline.filter(self.store, pipeline.FilterStageConfig(
            run=run_id, reward=self.config.reward, rules=FilterConfig(zero_variance=zero_variance),
            conventions=conventions))
        config_hash = out.metadata["config_hash"]
        returns = _returns(self.store, self.config.reward, run_id)
        advs = self.store.get_advantages(estimator=self.config.estimator,
                                         trajectory_ids=kept.kept_trajectories)
        values = {(a.trajectory_id, a.turn_index): a.value for a in advs if a.config_hash == config_hash}
        meta = {"config_hash": config_hash, "kept_trajectories": len(kept.kept_trajectories),
                "zero_variance_groups": kept.before.get("zero_variance_groups"),
                "groups": kept.before.get("groups"), "mean_abs_advantage": _mean_abs(values),
                "train_reward_mean": sum(returns) / len(returns) if returns else None}
        return values, kept.kept_trajectories, meta

    def _update(self, trajs: list[Trajectory], values: dict[tuple[str, int], float], k: int) -> dict[str, Any]:
        from agentrm.training.export import build_batch
        from agentrm.training.update import UpdateConfig, policy_update

        batch = build_batch(trajs, values, self.tokenizer)
        if batch.metadata.get("retokenized_rows"):
            log.warning("%d rows had no stored token ids and were re-tokenised",
                        batch.metadata["retokenized_rows"])
        config = UpdateConfig(clip_ratio=self.config.clip_ratio, kl_coef=self.config.kl_coef,
                              minibatches=self.config.minibatches, epochs=self.config.epochs)
        stats = policy_update(self.model, self.optimizer, batch.rows, config, seed=self.config.seed + k)
        if stats.get("rows"):
            started = time.monotonic()
            self.policy.sync()  # vLLM: load the new weights into the engine
            stats["sync_s"] = time.monotonic() - started
        return stats

    def _evaluate(self, after: int, on_rollout: Callable[[Any], None] | None = None) -> dict[str, Any]:
        run_id = eval_run(self.train_id, after)
        try:
            stored = (self.store.get_run(run_id).get("config") or {}).get("evaluation")
        except NotFoundError:  # not run yet
            stored = None
        if stored is not None:
            return stored
        self.emit(TrainEvent(after, "eval"))
        trajs, seconds = self._rollouts(run_id, self.eval_tasks, self.config.eval_group_size, after,
                                        "train-eval", on_rollout)
        self._score(run_id)
        returns = _returns(self.store, self.config.reward, run_id)
        stats = {"after_iterations": after, **rollout_stats(trajs, seconds), "seconds": seconds,
                 "train_reward_mean": sum(returns) / len(returns) if returns else None}
        self.store.annotate_run(run_id, evaluation=stats)
        self.emit(TrainEvent(after, "eval", seconds, stats))
        return stats

    # -- the loop ----------------------------------------------------------------------------
    def run(self, on_rollout: Callable[[Any], None] | None = None) -> TrainResult:
        from agentrm.rollout.lease import hold_run

        self._begin()
        with hold_run(self.store, self.train_id):  # one live process per training run
            start = self.finished()
            self._load_policy(start)
            if self.eval_tasks:
                self._evaluate(0, on_rollout)
                if start and self._eval_due(start):  # cut off between the update and its eval
                    self._evaluate(start, on_rollout)
            for k in range(start, self.config.iterations):
                stats = self._iteration(k, on_rollout)
                if self.eval_tasks and self._eval_due(k + 1):
                    stats["eval"] = self._evaluate(k + 1, on_rollout)
                    self.store.annotate_run(iteration_run(self.train_id, k), eval=stats["eval"])
            self.store.end_run(self.train_id, "finished")
        return TrainResult(self.train_id, self.out, iterations(self.store, self.train_id),
                           evaluations(self.store, self.train_id), start)

    def _eval_due(self, after: int) -> bool:
        return after % self.config.eval_every == 0 or after == self.config.iterations

    def _iteration(self, k: int, on_rollout: Callable[[Any], None] | None) -> dict[str, Any]:
        run_id = iteration_run(self.train_id, k)
        timings: dict[str, float] = {}

        def stage(name: str, fn: Callable[[], Any]) -> Any:
            self.emit(TrainEvent(k, name))
            started = time.monotonic()
            value = fn()
            timings[name] = time.monotonic() - started
            self.emit(TrainEvent(k, name, timings[name]))
            return value

        trajs, _ = stage("rollout", lambda: self._rollouts(
            run_id, self.tasks, self.config.group_size, k, "train-rollout", on_rollout))
        stage("score", lambda: self._score(run_id))
        values, kept, adv_meta = stage("advantages", lambda: self._advantages(run_id))
        kept_set = set(kept)
        update = stage("update", lambda: self._update([t for t in trajs if t.id in kept_set], values, k))
        stats = {"iteration": k, "run": run_id, **rollout_stats(trajs, timings["rollout"]),
                 "train_reward_mean": adv_meta["train_reward_mean"],
                 "advantages": adv_meta, "update": update, "seconds": timings}
        self._save(k, stats)
        self.store.annotate_run(run_id, update=update, stats={k2: v for k2, v in stats.items()
                                                               if k2 not in ("update",)})
        return stats


def train(store: Any, config: TrainConfig, *, sandbox_factory: Any = None,
          on_event: Callable[[Any], None] | None = None,
          on_rollout: Callable[[Any], None] | None = None) -> TrainResult:
    """Run (or resume) a training run; see the module docstring."""
    return Trainer(store, config, sandbox_factory, on_event).run(on_rollout)


def iterations(store: Any, train_id: str) -> list[dict[str, Any]]:
    """Every finished iteration's statistics, in order (from the store)."""
    out, k = [], 0
    while True:
        try:
            config = store.get_run(iteration_run(train_id, k)).get("config") or {}
        except NotFoundError:  # no more iterations
            return out
        if "update" not in config:
            return out
        out.append({**config.get("stats", {}), "update": config["update"],
                    **({"eval": config["eval"]} if "eval" in config else {})})
        k += 1


def evaluations(store: Any, train_id: str) -> list[dict[str, Any]]:
    """Every held-out evaluation's statistics, by the number of iterations before it."""
    prefix = f"{train_id}.eval"
    runs = [r for r in store.list_runs() if str(r["id"]).startswith(prefix)]
    found = [(r.get("config") or {}).get("evaluation") for r in runs]
    return sorted((e for e in found if e is not None), key=lambda e: e["after_iterations"])


SWE_TASKS = "swe-bench"
SWE_DATASET = "bundled"


def is_swe_task(task: Any) -> bool:
    return (task.metadata or {}).get("benchmark") == SWE_TASKS


def _swe_tasks(spec: str, ids: list[str], flag: str) -> list[Any]:
    """`swe-bench` or `swe-bench:ID,ID`: the bundled instances as agent tasks (their image is
    resolved by the harness when they run)."""
    from agentrm.evals.swebench.agent import agent_task
    from agentrm.evals.swebench.dataset import load_instances, select

    wanted = [i.strip() for i in spec.partition(":")[2].split(",") if i.strip()] + list(ids)
    instances = load_instances(SWE_DATASET)
    unknown = sorted(set(wanted) - {i.instance_id for i in instances})
    if unknown:
        raise InputError(f"{flag}: no bundled SWE-bench instance {', '.join(unknown)} (there are "
                         f"{', '.join(i.instance_id for i in instances)})")
    return [agent_task(inst, image="") for inst in select(instances, wanted or None)]


def _select(path: str, ids: list[str], flag: str) -> list[Any]:
    from agentrm.tasks import load_tasks

    if path == SWE_TASKS or path.startswith(SWE_TASKS + ":"):
        return _swe_tasks(path, ids, flag)
    tasks = load_tasks(path)
    if ids:
        unknown = sorted(set(ids) - {t.id for t in tasks})
        if unknown:
            raise InputError(f"{flag}: no task {', '.join(unknown)} in {path}")
        tasks = [t for t in tasks if t.id in set(ids)]
    if not tasks:
        raise InputError(f"{flag}: no tasks in {path}")
    return tasks


def _lora(rank: int, checkpoint: Path | None) -> Callable[[Any], Any]:
    def wrap(model: Any) -> Any:
        try:
            from peft import LoraConfig, PeftModel, get_peft_model
        except ImportError as exc:
            from agentrm.errors import PrerequisiteError

            raise PrerequisiteError(f"LoRA needs peft (pip install 'agentrm[train]'), or use "
                                    f"--lora-rank 0: {exc}") from None
        if checkpoint is not None:
            return PeftModel.from_pretrained(model, str(checkpoint / "adapter"), is_trainable=True)
        return get_peft_model(model, LoraConfig(r=rank, lora_alpha=2 * rank, lora_dropout=0.0,
                                                target_modules="all-linear"))
    return wrap


def _returns(store: Any, reward: str, run_id: str) -> list[float]:
    """Each trajectory's return under the training reward (its per-turn rewards summed)."""
    from agentrm.rewards.stored import CombineConfig, combine_stored

    trajs = list(store.iter_trajectories(run_id=run_id))
    table, _ = combine_stored(store, CombineConfig(spec=reward, run=run_id, write=False), trajs)
    return [sum(r.rewards) for r in table if r.rewards is not None]


def _mean_abs(values: dict[tuple[str, int], float]) -> float | None:
    finite = [abs(v) for v in values.values() if v is not None and math.isfinite(v)]
    return sum(finite) / len(finite) if finite else None
