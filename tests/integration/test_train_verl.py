"""`agentrm train --trainer verl`: the files it writes load with verl's own code on a CPU.

The parquet goes through verl's RLHFDataset with a tiny tokenizer; config.yaml's overrides
compose with verl's installed ppo_trainer Hydra config and pass verl's validate_config; reward.py
loads through verl's get_custom_reward_fn and returns agentrm's score; the agent loop is
instantiated from agent_loop.yaml as verl's AgentLoopWorker does and runs agentrm's rollout
driver in a Docker sandbox against a scripted LLM server (verl's generate() contract). What a
CPU cannot show: verl's Ray trainer, FSDP actor and vLLM/SGLang server running the loop.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import sys
import threading
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).parents[1] / "data" / "rollout"))
from tiny_model import build_tiny_model  # noqa: E402

from agentrm.rollout.loop import initial_messages  # noqa: E402
from agentrm.tasks import bundled_tasks  # noqa: E402
from agentrm.training.verl_reward import TRAJECTORY_KEY, task_of  # noqa: E402

BUILTIN = {t.id: t for t in bundled_tasks()}
SUBMIT = '<tool_call>{{"name": "submit", "arguments": {{"answer": "{}"}}}}</tool_call>'


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A tiny random-weight model directory (tokenizer with a ChatML template)."""
    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "model")


# A Qwen-style template that renders the tool list itself (agentrm then passes `tools=`).
NATIVE = (
    "{% if tools %}<|im_start|>system\n{{ messages[0]['content'] }}\n<tools>"
    "{% for tool in tools %}\n{{ tool | tojson }}{% endfor %}\n</tools><|im_end|>\n{% endif %}"
    "{% for m in messages %}"
    "{% if m['role'] == 'system' %}{% if not tools %}<|im_start|>system\n{{ m['content'] }}<|im_end|>\n{% endif %}"
    "{% elif m['role'] == 'assistant' %}<|im_start|>assistant\n{{ m['content'] }}"
    "{% for c in m['tool_calls'] or [] %}<tool_call>{{ {'name': c['function']['name'], "
    "'arguments': c['function']['arguments']} | tojson }}</tool_call>{% endfor %}<|im_end|>\n"
    "{% elif m['role'] == 'tool' %}<|im_start|>user\n<tool_response>\n{{ m['content'] }}\n</tool_response><|im_end|>\n"
    "{% else %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endif %}"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


@pytest.fixture(scope="module", params=["text tools", "native tools",
                                        pytest.param("smollm2", marks=pytest.mark.model)])
def chat_model(request, tiny, tmp_path_factory):
    """The tiny model with its ChatML template (no tool list: agentrm writes the tools as text),
    with NATIVE (the template renders the tools), or the embedded SmolLM2's real tokenizer."""
    if request.param == "text tools":
        return tiny
    if request.param == "smollm2":
        from agentrm.models import resolve_model

        return resolve_model("smollm2")
    from transformers import AutoTokenizer

    path = tmp_path_factory.mktemp("native") / "model"
    shutil.copytree(tiny, path)
    tokenizer = AutoTokenizer.from_pretrained(path)
    tokenizer.chat_template = NATIVE
    tokenizer.save_pretrained(path)
    return path


def _recipe(cli, out: Path, *flags: str) -> dict:
    got = cli("train", "--trainer", "verl", "--out", str(out), "--json", *flags)
    assert got.returncode == 0, got.stderr
    return json.loads(got.stdout)


def _compose(recipe: dict, model: Path, *extra: str):
    """verl's own ppo_trainer config (the installed package's) with the recipe's overrides."""
    import verl
    from hydra import compose, initialize_config_dir

    lines = yaml.safe_load(Path(recipe["files"]["config.yaml"]).read_text())["overrides"]
    lines = [f"actor_rollout_ref.model.path={model}" if line.startswith("actor_rollout_ref.model.path=")
             else line for line in lines]
    config_dir = Path(verl.__file__).parent / "trainer" / "config"
    with initialize_config_dir(config_dir=str(config_dir), version_base=None):
        return compose("ppo_trainer", overrides=[*lines, *extra])


@pytest.fixture(scope="module")
def recipe(tmp_path_factory):
    """The default recipe (GiGPO, LoRA 16) for two builtin tasks and one held-out task."""
    from agentrm.training.loop import TrainConfig
    from agentrm.training.verl_recipe import VerlOptions, write_recipe

    out = tmp_path_factory.mktemp("recipe")
    config = TrainConfig(task_ids=["count-lines", "json-value"], eval_tasks="builtin",
                         eval_task_ids=["sum-numbers"], reward="outcome + 0.2*submitted",
                         group_size=4, out=out, run_id="r1")
    written = write_recipe(config, VerlOptions(gpus=8))
    return {"files": {k: str(v) for k, v in written.files.items()}, "overrides": written.overrides,
            "notes": written.notes}


def test_parquet_loads_with_verls_rlhf_dataset(recipe, tiny, tmp_path):
    from omegaconf import OmegaConf
    from transformers import AutoTokenizer
    from verl.utils.dataset.rl_dataset import RLHFDataset

    tokenizer = AutoTokenizer.from_pretrained(tiny)
    data_config = OmegaConf.create({"prompt_key": "prompt", "max_prompt_length": 1024,
                                    "filter_overlong_prompts": True, "cache_dir": str(tmp_path)})
    train = RLHFDataset(recipe["files"]["train.parquet"], tokenizer, data_config)
    val = RLHFDataset(recipe["files"]["val.parquet"], tokenizer, data_config)
    assert (len(train), len(val)) == (2, 1)  # nothing filtered as too long
    rows = [train[i] for i in range(len(train))]
    for i, (row, task_id) in enumerate(zip(rows, ["count-lines", "json-value"], strict=True)):
        task = BUILTIN[task_id]
        assert row["raw_prompt"] == initial_messages(task)  # what agentrm's own rollout starts from
        assert row["data_source"] == "agentrm" and row["index"] == i
        assert row["reward_model"]["ground_truth"] == task.answer
        assert row["extra_info"]["task_id"] == task_id and task_of(row["extra_info"]) == task
    assert task_of(val[0]["extra_info"]) == BUILTIN["sum-numbers"]


def test_config_composes_with_verls_hydra_config(recipe, tiny):
    cfg = _compose(recipe, tiny)
    out = Path(recipe["files"]["run.sh"]).parent
    assert cfg.algorithm.adv_estimator == "grpo" and cfg.algorithm.norm_adv_by_std_in_grpo is False
    assert any("episode term" in note for note in recipe["notes"])  # gigpo's step term: said, not hidden
    assert cfg.actor_rollout_ref.rollout.n == 4  # --group-size
    assert cfg.data.train_batch_size == 2 and cfg.trainer.n_gpus_per_node == 8
    assert (cfg.data.train_files, cfg.data.val_files) == (str(out / "train.parquet"), str(out / "val.parquet"))
    assert cfg.reward.custom_reward_function.path == str(out / "reward.py")
    assert cfg.reward.custom_reward_function.name == "compute_score"
    assert (cfg.actor_rollout_ref.model.lora_rank, cfg.actor_rollout_ref.model.lora_alpha) == (16, 32)
    assert cfg.actor_rollout_ref.actor.optim.lr == 5e-5 and cfg.actor_rollout_ref.actor.clip_ratio == 0.2
    assert cfg.actor_rollout_ref.rollout.multi_turn.max_assistant_turns == 4
    assert cfg.actor_rollout_ref.rollout.agent.default_agent_loop == "agentrm_agent"
    assert cfg.trainer.total_training_steps == 3 and cfg.trainer.experiment_name == "r1"
    run_sh = Path(recipe["files"]["run.sh"]).read_text()
    assert "python3 -m verl.trainer.main_ppo" in run_sh
    assert all(line in run_sh for line in recipe["overrides"])  # run.sh passes exactly config.yaml's


def test_config_passes_verls_validate_config(cli, tmp_path, tiny):
    """verl's own start-up check (batch sizes against GPUs, micro batches, sampling). Without
    LoRA: with it, validate_config asks a GPU build of vLLM for its LoRA ranks."""
    from verl.trainer.ppo.utils import need_critic, need_reference_policy
    from verl.utils.config import validate_config

    recipe = _recipe(cli, tmp_path / "r", "--task", "count-lines", "--task", "json-value",
                     "--task", "sum-numbers", "--estimator", "grpo", "--lora-rank", "0",
                     "--kl-coef", "0", "--group-size", "8", "--gpus", "4", "--minibatches", "3")
    cfg = _compose(recipe, tiny)
    assert cfg.algorithm.norm_adv_by_std_in_grpo is True and cfg.algorithm.filter_groups.enable is False
    assert any("re-sample" in note for note in recipe["notes"])  # --zero-variance drop: said how
    assert cfg.data.train_batch_size == 3 and cfg.actor_rollout_ref.actor.ppo_mini_batch_size == 1
    validate_config(cfg, use_reference_policy=need_reference_policy(cfg), use_critic=need_critic(cfg))


def _reward_fn(recipe, tiny, *extra):
    from verl.trainer.ppo.reward import get_custom_reward_fn

    return get_custom_reward_fn(_compose(recipe, tiny, *extra))


def _row(recipe, split="train", index=0):
    import pyarrow.parquet as pq

    return pq.read_table(recipe["files"][f"{split}.parquet"]).to_pylist()[index]


def test_reward_function_loads_through_verls_loader(recipe, tiny):
    fn = _reward_fn(recipe, tiny)
    row = _row(recipe)  # count-lines: 137
    right = fn(data_source="agentrm", solution_str="It has 137 lines. " + SUBMIT.format("137"),
               ground_truth="137", extra_info=row["extra_info"])
    wrong = fn(data_source="agentrm", solution_str=SUBMIT.format("136"), ground_truth="137",
               extra_info=row["extra_info"])
    silent = fn(data_source="agentrm", solution_str="137", ground_truth="137", extra_info=row["extra_info"])
    # 'outcome + 0.2*submitted', as agentrm's own loop would score these rollouts
    assert right["score"] == pytest.approx(1.2) and right["agentrm_abstained"] == 0.0
    assert wrong["score"] == pytest.approx(0.2) and wrong["agentrm_submitted"] == 1.0
    assert silent["score"] == 0.0 and silent["agentrm_submitted"] == 0.0


def test_reward_needing_the_sandbox_abstains_without_the_agent_loop(cli, tmp_path, tiny):
    """A command verifier cannot be judged from text: the score is 0 and flagged, not a verdict."""
    recipe = _recipe(cli, tmp_path / "r", "--task", "fix-total", "--group-size", "8")
    fn = _reward_fn(recipe, tiny)
    got = fn(data_source="agentrm", solution_str='<tool_call>{"name": "submit", "arguments": {}}</tool_call>',
             ground_truth="", extra_info=_row(recipe)["extra_info"])
    assert got["agentrm_abstained"] == 1.0 and got["score"] == 0.0


def test_reward_through_the_reward_server(cli, tmp_path, tiny):
    """With --reward-server, terms other than the outcome come from `agentrm serve`."""
    from agentrm.serve import RewardService, ServerLimits, make_server

    server = make_server(RewardService([{"name": "submitted"}]), port=0,
                         limits=ServerLimits(large_body=0))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        recipe = _recipe(cli, tmp_path / "r", "--task", "count-lines", "--group-size", "8",
                         "--reward", "outcome + 0.5*submitted", "--reward-server", url)
        assert f"REWARD_SERVER = {url!r}" in Path(recipe["files"]["reward.py"]).read_text()
        fn = _reward_fn(recipe, tiny)
        got = fn(data_source="agentrm", solution_str=SUBMIT.format("137"), ground_truth="137",
                 extra_info=_row(recipe)["extra_info"])
        assert got["score"] == pytest.approx(1.5)
    finally:
        server.drain()


@pytest.mark.parametrize("flags, says", [
    (["--trainer", "verl"], "--out"),
    (["--trainer", "deepspeed", "--out", "{out}"], "--trainer"),
    (["--trainer", "verl", "--out", "{out}", "--estimator", "igpo"], "--estimator igpo"),
    (["--trainer", "verl", "--out", "{out}", "--engine", "tgi"], "--engine"),
    (["--trainer", "verl", "--out", "{out}", "--task", "count-lines", "--gpus", "3"], "--gpus"),
    (["--trainer", "verl", "--out", "{out}", "--reward-server", "localhost:8000"], "--reward-server"),
    (["--trainer", "verl", "--out", "{out}", "--reward", "outcome +"], "outcome +"),
    (["--trainer", "verl", "--out", "{out}", "--task", "no-such-task"], "no-such-task"),
])
def test_bad_flags_exit_nonzero_with_one_line(cli, tmp_path, flags, says):
    out = tmp_path / "recipe"
    got = cli("train", *[f.format(out=out) for f in flags])
    assert got.returncode != 0 and got.stdout == ""
    assert len(got.stderr.strip().splitlines()) == 1 and says in got.stderr, got.stderr
    assert not out.exists()  # nothing half-written


class ScriptedServer:
    """verl's LLM-server contract (`generate` → TokenOutput) answering from a script, as
    agentrm's ScriptedPolicy stands in for a model: the stand-in for vLLM on a CPU."""

    def __init__(self, tokenizer, replies: list[str]):
        self.tokenizer, self.replies, self.prompts = tokenizer, list(replies), []
        self.calls: dict[str, int] = {}  # per rollout (verl's request id)

    async def generate(self, request_id, *, prompt_ids, sampling_params, **kwargs):
        from verl.workers.rollout.replica import TokenOutput

        self.prompts.append(list(prompt_ids))
        self.calls[request_id] = self.calls.get(request_id, 0) + 1
        reply = self.replies[min(self.calls[request_id], len(self.replies)) - 1]
        ids = self.tokenizer.encode(reply, add_special_tokens=False) + [self.tokenizer.eos_token_id]
        return TokenOutput(token_ids=ids, log_probs=[-0.25] * len(ids), stop_reason="completed")


def _rollout(recipe, tiny, tmp_path, index: int, replies: list[str]):
    """One rollout as verl's AgentLoopWorker runs it: the dataset row, the agent loop built by
    hydra from agent_loop.yaml, `run`; then verl's reward function on the result."""
    import hydra
    from omegaconf import OmegaConf
    from transformers import AutoTokenizer
    from verl.experimental.agent_loop.agent_loop import DictConfigWrap, ToolListWrap
    from verl.utils.dataset.rl_dataset import RLHFDataset

    cfg = _compose(recipe, tiny)
    tokenizer = AutoTokenizer.from_pretrained(tiny)
    data = OmegaConf.create(OmegaConf.to_container(cfg.data, resolve=True))
    data.cache_dir = str(tmp_path)
    row = RLHFDataset(recipe["files"]["train.parquet"], tokenizer, data)[index]
    entry = OmegaConf.load(recipe["files"]["agent_loop.yaml"])[0]
    assert entry.name == cfg.actor_rollout_ref.rollout.agent.default_agent_loop
    server = ScriptedServer(tokenizer, replies)

    async def run():
        loop = hydra.utils.instantiate(
            config=entry, trainer_config=DictConfigWrap(cfg), server_manager=server,
            tokenizer=tokenizer, processor=None, hf_model_type=None, dataset_cls=RLHFDataset,
            data_config=DictConfigWrap(cfg.data), tools=ToolListWrap([]))
        return await loop.run({"temperature": 1.0, "logprobs": True}, **row)

    output = asyncio.run(run())
    extra_info = {**row["extra_info"], **output.extra_fields}  # as verl's naive reward manager merges them
    reward = _reward_fn(recipe, tiny)(data_source=row["data_source"], solution_str="",
                                      ground_truth=row["reward_model"]["ground_truth"],
                                      extra_info=extra_info)
    return output, server, json.loads(output.extra_fields[TRAJECTORY_KEY]), reward, tokenizer


BASH = '<tool_call>{{"name": "bash", "arguments": {{"command": "{}"}}}}</tool_call>'


@pytest.fixture(scope="module")
def sandbox_recipe(tmp_path_factory):
    from agentrm.training.loop import TrainConfig
    from agentrm.training.verl_recipe import VerlOptions, write_recipe

    out = tmp_path_factory.mktemp("sandbox-recipe")
    written = write_recipe(TrainConfig(task_ids=["count-lines", "fix-total"], out=out, max_turns=4,
                                       reward="outcome + 0.2*submitted", group_size=2),
                           VerlOptions(gpus=4, prompt_tokens=4096))
    return {"files": {k: str(v) for k, v in written.files.items()}}


@pytest.mark.docker
def test_agent_loop_runs_agentrm_rollouts_in_a_sandbox(docker_client, sandbox_recipe, chat_model, tmp_path):
    replies = [BASH.format("wc -l < /workspace/data.txt"), SUBMIT.format("137")]
    output, server, record, reward, tokenizer = _rollout(sandbox_recipe, chat_model, tmp_path, 0, replies)
    assert record["exit_status"] == "submitted" and record["reward"] == 1.0  # verified in the sandbox
    assert reward["score"] == pytest.approx(1.2) and reward["agentrm_turns"] == 2.0
    # one continuous stream: the second call's prompt is the first prompt plus the response so far
    prompt, response, mask = output.prompt_ids, output.response_ids, output.response_mask
    assert server.prompts[0] == prompt and server.prompts[1][: len(prompt)] == prompt
    assert server.prompts[1][len(prompt):] == response[: len(server.prompts[1]) - len(prompt)]
    sampled = [t for t, m in zip(response, mask, strict=True) if m]
    observed = [t for t, m in zip(response, mask, strict=True) if not m]
    assert tokenizer.decode(sampled, skip_special_tokens=True) == "".join(replies)
    assert "137" in tokenizer.decode(observed)  # wc's output, in the stream with mask 0
    assert output.response_logprobs == [-0.25 if m else 0.0 for m in mask]
    first = tokenizer.decode(prompt)  # whole (not left-truncated), with the tools listed
    assert first.startswith("<|im_start|>system\nYou are an agent") and '"name": "submit"' in first
    assert first.endswith("<|im_start|>assistant\n")


@pytest.mark.docker
def test_agent_loop_runs_the_command_verifier_in_the_sandbox(docker_client, sandbox_recipe, tiny, tmp_path):
    """fix-total's verifier runs the tests in the sandbox after submit: only the loop can judge."""
    edit = ('<tool_call>{"name": "edit_file", "arguments": {"path": "/workspace/calc/calc.py", '
            '"old_str": "sum(xs[1:])", "new_str": "sum(xs)"}}</tool_call>')
    submit = '<tool_call>{"name": "submit", "arguments": {}}</tool_call>'
    _, _, fixed, reward, _ = _rollout(sandbox_recipe, tiny, tmp_path, 1, [edit, submit])
    assert fixed["reward"] == 1.0 and reward["score"] == pytest.approx(1.2)
    _, _, unfixed, reward, _ = _rollout(sandbox_recipe, tiny, tmp_path, 1, [submit])
    assert unfixed["reward"] == 0.0 and reward["score"] == pytest.approx(0.2)


@pytest.fixture
def own_ray(monkeypatch):
    """A Ray instance of this test's own, in this process (ray.shutdown stops it and nothing
    else); no auth token, so no ~/.ray state is left for other clusters."""
    from conftest import missing

    try:
        import ray
    except ImportError as exc:
        missing("ray", f"python package: {exc}")
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    monkeypatch.setenv("RAY_USAGE_STATS_ENABLED", "0")
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    temp = f"/tmp/agentrm-ray-verl-{os.getpid()}"
    if ray.is_initialized():  # an earlier test of this session connected to the shared cluster;
        ray.shutdown()  # only this process disconnects (later users reconnect via connect_ray)
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, _temp_dir=temp)
    yield ray
    ray.shutdown()
    shutil.rmtree(temp, ignore_errors=True)


@pytest.mark.docker
@pytest.mark.ray
@pytest.mark.slow
def test_verls_workers_roll_out_and_reward_a_batch(docker_client, own_ray, sandbox_recipe, tiny, tmp_path):
    """verl's own AgentLoopWorker (agent loop registered from agent_loop.yaml, padding, batch)
    with verl's RewardLoopWorker as a Ray actor (NaiveRewardManager, reward.py): the batch the
    trainer would get, with agentrm's rewards in rm_scores."""
    from omegaconf import OmegaConf
    from transformers import AutoTokenizer
    from verl import DataProto
    from verl.experimental.agent_loop.agent_loop import AgentLoopWorker
    from verl.experimental.reward_loop.reward_loop import RewardLoopWorker
    from verl.utils.dataset.rl_dataset import RLHFDataset, collate_fn

    cfg = _compose(sandbox_recipe, tiny)
    tokenizer = AutoTokenizer.from_pretrained(tiny)
    data = OmegaConf.create(OmegaConf.to_container(cfg.data, resolve=True))
    data.cache_dir = str(tmp_path)
    dataset = RLHFDataset(cfg.data.train_files, tokenizer, data)
    batch = DataProto.from_single_dict(collate_fn([dataset[0], dataset[1]]))
    batch = batch.repeat(repeat_times=cfg.actor_rollout_ref.rollout.n, interleave=True)
    rewarder = own_ray.remote(RewardLoopWorker).remote(cfg)
    # every rollout answers 137: right for count-lines, a submission without a fix for fix-total
    server = ScriptedServer(tokenizer, [BASH.format("wc -l < /workspace/data.txt"), SUBMIT.format("137")])

    async def generate():
        worker = AgentLoopWorker(cfg, server, reward_loop_worker_handles=[rewarder])
        return await worker.generate_sequences(batch)

    out = asyncio.run(generate())
    assert len(out) == 4 and out.batch["responses"].shape[1] == cfg.data.max_response_length
    assert out.batch["rm_scores"].sum(-1).tolist() == pytest.approx([1.2, 1.2, 0.2, 0.2])
    assert list(out.non_tensor_batch["agentrm_exit_status"]) == ["submitted"] * 4
    assert out.non_tensor_batch["agentrm_abstained"].tolist() == [0.0] * 4
    sampled = out.batch["response_mask"].sum(-1).tolist()  # the same two replies everywhere
    assert sampled == [sampled[0]] * 4 and sampled[0] == sum(
        len(tokenizer.encode(r, add_special_tokens=False)) + 1 for r in server.replies)
