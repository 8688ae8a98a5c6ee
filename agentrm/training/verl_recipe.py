"""`agentrm train --trainer verl --out DIR`: the files verl needs to run agentrm's training loop
on GPUs with Ray, instead of running it in this process.

DIR gets the tasks as verl's RLHFDataset reads them (`train.parquet`, `val.parquet`), a reward
module verl loads through `reward.custom_reward_function` (`reward.py`, which calls
agentrm.training.verl_reward), the agent-loop registration (`agent_loop.yaml`: each rollout is a
verl AgentLoop that drives agentrm's own rollout driver in a Docker sandbox), `config.yaml`
(the Hydra overrides, one per line, over verl's `ppo_trainer` config) and `run.sh` (the
`python -m verl.trainer.main_ppo` command). Pure: a TrainConfig and options in, files out;
verl itself is not imported here.
"""

from __future__ import annotations

import json
import shlex
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from agentrm.config import option
from agentrm.errors import InputError

DATA_SOURCE = "agentrm"
AGENT_LOOP = "agentrm_agent"
AGENT_LOOP_TARGET = "agentrm.training.verl_agent_loop.AgentrmAgentLoop"
SMOLLM2_HF = "HuggingFaceTB/SmolLM2-135M-Instruct"  # the embedded GGUF's original weights
ENGINES = ("vllm", "sglang")
# agentrm estimator -> (verl adv_estimator, algorithm.norm_adv_by_std_in_grpo). verl computes
# advantages on one row per trajectory, so GiGPO keeps its episode term (mean-normalised, as
# agentrm's gigpo default) and loses the step term, which needs one row per turn (verl-agent).
ESTIMATORS = {"gigpo": ("grpo", False), "grpo": ("grpo", True), "rloo": ("rloo", False)}
FILES = ("train.parquet", "val.parquet", "reward.py", "agent_loop.yaml", "config.yaml", "run.sh")


@dataclass
class VerlOptions:
    """What only a verl run needs (the rest comes from the training flags)."""

    reward_server: str | None = option(None, "--trainer verl: score through a running `agentrm serve` "
                                       "at this URL instead of loading the scorers in verl's reward "
                                       "workers.", metavar="URL")
    gpus: int = option(8, "--trainer verl: GPUs per node (trainer.n_gpus_per_node).")
    nodes: int = option(1, "--trainer verl: nodes (trainer.nnodes).")
    engine: str = option("vllm", "--trainer verl: rollout engine, vllm | sglang.")
    prompt_tokens: int = option(2048, "--trainer verl: data.max_prompt_length (system prompt, "
                                "tool list and instruction).")
    response_tokens: int = option(4096, "--trainer verl: data.max_response_length (all turns of a "
                                  "rollout, tool output included).")

    def validate(self) -> None:
        if self.engine not in ENGINES:
            raise InputError(f"--engine {self.engine!r}: use {' or '.join(ENGINES)}")
        for name in ("gpus", "nodes", "prompt_tokens", "response_tokens"):
            if getattr(self, name) < 1:
                raise InputError(f"--{name.replace('_', '-')} {getattr(self, name)}: must be at least 1")
        if self.reward_server and not self.reward_server.startswith(("http://", "https://")):
            raise InputError(f"--reward-server {self.reward_server!r}: give http(s)://HOST:PORT")


@dataclass
class Recipe:
    """What was written, for the CLI to show."""

    out: Path
    files: dict[str, Path]
    overrides: list[str]
    command: str
    train_rows: int
    val_rows: int
    notes: list[str] = field(default_factory=list)  # where the verl run differs from agentrm's loop


def model_path(policy: str) -> str:
    """The HF id or directory verl loads from a `transformers:PATH_OR_ID?…` policy spec."""
    from agentrm.rollout.policies import parse_spec

    _, target, _ = parse_spec(policy)
    return SMOLLM2_HF if target in ("", "default", "smollm2", "smollm2-135m-instruct") else target


def task_row(task: Any, index: int, split: str) -> dict[str, Any]:
    """One RLHFDataset row: the chat messages agentrm's own rollout starts from, and the whole
    task (JSON, so rows with different verifier specs share one parquet schema) for the agent
    loop and the reward function."""
    from agentrm.rollout.loop import initial_messages

    return {"data_source": DATA_SOURCE, "prompt": initial_messages(task), "ability": "agent",
            "reward_model": {"style": "rule", "ground_truth": task.answer or ""},
            "extra_info": {"index": index, "split": split, "task_id": task.id,
                           "task": json.dumps(asdict(task), sort_keys=True)}}


def _write_parquet(rows: list[dict[str, Any]], path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist(rows), path)


def batch_tasks(n_tasks: int, group_size: int, gpus: int) -> int:
    """The largest number of tasks per step (≤ 32, ≤ the task count) whose rollouts split evenly
    over the GPUs, as verl requires (train_batch_size · n divisible by the GPU count)."""
    for size in range(min(n_tasks, 32), 0, -1):
        if size * group_size % gpus == 0:
            return size
    raise InputError(f"no batch of at most {min(n_tasks, 32)} tasks × --group-size {group_size} "
                     f"rollouts divides evenly over {gpus} GPUs: change --group-size, --gpus or "
                     "add tasks")


def overrides(config: Any, options: VerlOptions, out: Path, n_train: int) -> tuple[list[str], list[str]]:
    """(Hydra overrides over verl's ppo_trainer config, notes on what differs from agentrm's loop)."""
    if config.estimator not in ESTIMATORS:
        raise InputError(f"--estimator {config.estimator} has no verl counterpart; with --trainer "
                         f"verl use {', '.join(ESTIMATORS)}")
    gpus = options.gpus * options.nodes
    tasks_per_step = batch_tasks(n_train, config.group_size, gpus)
    mini = max(1, tasks_per_step // config.minibatches)
    if mini * config.group_size % gpus:
        raise InputError(f"--minibatches {config.minibatches}: each minibatch's rollouts "
                         f"({mini} tasks × {config.group_size}) must divide over {gpus} GPUs")
    estimator, by_std = ESTIMATORS[config.estimator]
    lines = [f"algorithm.adv_estimator={estimator}", f"algorithm.norm_adv_by_std_in_grpo={by_std}",
             "algorithm.filter_groups.enable=False",
             f"data.train_files={out / 'train.parquet'}", f"data.val_files={out / 'val.parquet'}",
             f"data.train_batch_size={tasks_per_step}", f"data.max_prompt_length={options.prompt_tokens}",
             f"data.max_response_length={options.response_tokens}", "data.return_raw_chat=True",
             "data.filter_overlong_prompts=False", f"data.seed={config.seed}",
             *_actor(config, mini), *_rollout(config, options, out), *_trainer(config, options, out)]
    zero_variance = config.zero_variance
    if zero_variance == "auto":
        zero_variance = "keep-step" if config.estimator == "gigpo" else "drop"
    notes = []
    if config.estimator == "gigpo":
        notes.append("gigpo: verl scores one row per trajectory, so the run uses GiGPO's episode "
                     "term only (grpo without std scaling); the step term needs verl-agent")
    if zero_variance == "drop":
        notes.append("--zero-variance drop: tied groups get zero advantage and are kept; verl's "
                     "algorithm.filter_groups (DAPO) would re-sample them instead, without a cap")
    return lines, notes


def _actor(config: Any, mini_batch: int) -> list[str]:
    """The model and its update, as agentrm train's (verl's policy loss, token mean, LoRA)."""
    a, rank = "actor_rollout_ref.actor", config.lora_rank
    lora = [f"actor_rollout_ref.model.lora_alpha={2 * rank}",
            "actor_rollout_ref.model.target_modules=all-linear"] if rank else []
    return [f"actor_rollout_ref.model.path={model_path(config.policy)}",
            f"actor_rollout_ref.model.lora_rank={rank}", *lora,
            f"{a}.optim.lr={config.lr}", f"{a}.clip_ratio={config.clip_ratio}",
            f"{a}.ppo_epochs={config.epochs}", f"{a}.ppo_mini_batch_size={mini_batch}",
            f"{a}.ppo_micro_batch_size_per_gpu=1", f"{a}.use_kl_loss={config.kl_coef > 0}",
            f"{a}.kl_loss_coef={config.kl_coef}", f"{a}.kl_loss_type=low_var_kl",
            f"{a}.loss_agg_mode=token-mean", "actor_rollout_ref.ref.log_prob_micro_batch_size_per_gpu=1"]


def _rollout(config: Any, options: VerlOptions, out: Path) -> list[str]:
    """Group rollouts through the agentrm agent loop (agent_loop.yaml)."""
    from agentrm.rollout.policies import parse_spec

    r = "actor_rollout_ref.rollout"
    temperature = parse_spec(config.policy)[2].get("temperature", 1.0)
    return [f"{r}.name={options.engine}", f"{r}.n={config.group_size}", f"{r}.temperature={temperature}",
            f"{r}.log_prob_micro_batch_size_per_gpu=1", f"{r}.tensor_model_parallel_size=1",
            f"{r}.multi_turn.enable=True", f"{r}.multi_turn.max_assistant_turns={config.max_turns}",
            f"{r}.agent.default_agent_loop={AGENT_LOOP}",
            f"{r}.agent.agent_loop_config_path={out / 'agent_loop.yaml'}",
            f"reward.custom_reward_function.path={out / 'reward.py'}",
            "reward.custom_reward_function.name=compute_score"]


def _trainer(config: Any, options: VerlOptions, out: Path) -> list[str]:
    """Steps, evaluation and checkpoints (a rerun of run.sh resumes, as a rerun of train does)."""
    return [f"trainer.total_training_steps={config.iterations}",
            f"trainer.n_gpus_per_node={options.gpus}", f"trainer.nnodes={options.nodes}",
            f"trainer.test_freq={config.eval_every}", f"trainer.save_freq={config.eval_every}",
            "trainer.resume_mode=auto", "trainer.val_before_train=True",
            "trainer.project_name=agentrm",
            f"trainer.experiment_name={config.run_id or 'agentrm-verl'}",
            "trainer.logger=[console]", f"trainer.default_local_dir={out / 'checkpoints'}"]


def reward_module(reward: str, server: str | None) -> str:
    """The text of reward.py: verl imports it from a file path in each reward worker."""
    return (
        '"""verl\'s custom reward function for this recipe (written by `agentrm train --trainer '
        'verl`).\n\nverl calls compute_score once per rollout; agentrm scores it with the reward '
        'SPEC below\n(agentrm.training.verl_reward). reward_kwargs in the config override both '
        'constants."""\n\n'
        "from agentrm.training.verl_reward import score_response\n\n"
        f"REWARD = {reward!r}\n"
        f"REWARD_SERVER = {server!r}\n\n\n"
        "def compute_score(data_source, solution_str, ground_truth, extra_info=None, **kwargs):\n"
        "    return score_response(solution_str, extra_info or {}, reward=kwargs.get('reward', REWARD),\n"
        "                          server=kwargs.get('reward_server', REWARD_SERVER))\n"
    )


def _agent_loop_yaml(config: Any) -> str:
    return (f"# verl loads this list through actor_rollout_ref.rollout.agent.agent_loop_config_path\n"
            f"- name: {AGENT_LOOP}\n  _target_: {AGENT_LOOP_TARGET}\n"
            f"  command_timeout: {config.command_timeout}\n")


def _config_yaml(lines: list[str], notes: list[str]) -> str:
    import yaml

    head = ("# Hydra overrides over verl's ppo_trainer config; run.sh passes them to "
            "verl.trainer.main_ppo.\n" + "".join(f"# note: {n}\n" for n in notes))
    return head + yaml.safe_dump({"overrides": lines}, sort_keys=False, width=1000)


def _run_sh(lines: list[str]) -> str:
    return ("#!/usr/bin/env bash\n# Written by `agentrm train --trainer verl`; run it where verl, Ray, "
            "Docker and agentrm are installed.\nset -euo pipefail\n"
            'cd "$(dirname "$0")"\n'
            "python3 -m verl.trainer.main_ppo \\\n"
            + " \\\n".join(f"    {shlex.quote(line)}" for line in lines) + ' \\\n    "$@"\n')


def write_recipe(config: Any, options: VerlOptions) -> Recipe:
    """Validate the flags, then write FILES into `config.out` (created; existing files replaced)."""
    config.validate()
    options.validate()
    if config.out is None:
        raise InputError("--trainer verl needs --out DIR (where the recipe is written)")
    out = Path(config.out).resolve()
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out}: exists and is not a directory")
    train_tasks, eval_tasks = config.selected()
    from agentrm.training.loop import is_swe_task

    if any(is_swe_task(t) for t in [*train_tasks, *eval_tasks]):
        raise InputError("--trainer verl: SWE-bench tasks are graded by the SWE-bench harness in "
                         "Docker after each rollout, which verl's reward loop does not run; use "
                         "task files or `builtin`")
    lines, notes = overrides(config, options, out, len(train_tasks))
    if not eval_tasks:
        eval_tasks = train_tasks
        notes.append("no --eval-tasks: val.parquet holds the training tasks")
    out.mkdir(parents=True, exist_ok=True)
    paths = {name: out / name for name in FILES}
    _write_parquet([task_row(t, i, "train") for i, t in enumerate(train_tasks)], paths["train.parquet"])
    _write_parquet([task_row(t, i, "val") for i, t in enumerate(eval_tasks)], paths["val.parquet"])
    paths["reward.py"].write_text(reward_module(config.reward, options.reward_server))
    paths["agent_loop.yaml"].write_text(_agent_loop_yaml(config))
    paths["config.yaml"].write_text(_config_yaml(lines, notes))
    paths["run.sh"].write_text(_run_sh(lines))
    paths["run.sh"].chmod(0o755)
    return Recipe(out, paths, lines, f"bash {paths['run.sh']}", len(train_tasks), len(eval_tasks), notes)
