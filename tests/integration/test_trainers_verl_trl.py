"""Real trainers consume the export: rollouts of a tiny random model (token ids and log-probs
recorded by the policy) → GRPO advantages → `verl` parquet loaded into verl's DataProto and
fed to verl's own policy-loss function; `trl` dataset turned into GRPOTrainer inputs and one
optimisation step through TRL's own loss. Both trainers recompute the log-probs of the exported
ids with the same model: they must equal the log-probs recorded at sampling time."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "data" / "rollout"))
from tiny_model import build_tiny_model  # noqa: E402

from agentrm.advantages import AdvantageConfig, compute  # noqa: E402
from agentrm.advantages.trajectories import rows_from_trajectories  # noqa: E402
from agentrm.rollout.loop import initial_messages  # noqa: E402
from agentrm.rollout.policies.transformers import TransformersPolicy  # noqa: E402
from agentrm.rollout.tools import TOOL_SCHEMAS  # noqa: E402
from agentrm.training.export import build_batch, write_batch  # noqa: E402
from agentrm.types import ExitStatus, Task, Trajectory, Turn  # noqa: E402

pytestmark = pytest.mark.model


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    import torch

    torch.set_num_threads(1)
    tmp = tmp_path_factory.mktemp("trainers")
    model_dir = build_tiny_model(tmp / "model")
    policy = TransformersPolicy(str(model_dir), max_new_tokens=10, temperature=1.0, seed=0)
    task = Task("t", "How many lines does data.txt have?")
    trajs = []
    for i, reward in enumerate([1.0, 0.0, 0.5]):
        messages, turns = initial_messages(task), []
        for k in range(2):
            out = policy.act(messages, TOOL_SCHEMAS)
            obs = messages if k == 0 else messages[-1:]
            turns.append(Turn(k, obs, out.message, anchor_key=f"s{k}", logprobs=out.logprobs,
                              tokens=out.tokens))
            messages = [*messages, out.message, {"role": "user", "content": f"output {i}.{k}"}]
        trajs.append(Trajectory(f"r{i}", "t", "g", turns, exit_status=ExitStatus.SUBMITTED, reward=reward))
    rows, keys = rows_from_trajectories(trajs)
    result = compute(rows, AdvantageConfig(estimator="grpo"))
    batch = build_batch(trajs, dict(zip(keys, result.advantage.tolist(), strict=True)), policy._tokenizer,
                        metadata=result.metadata)
    assert {r["token_source"] for r in batch.rows} == {"sampled"}
    pad = policy._tokenizer.pad_token_id
    write_batch(batch, "verl", tmp / "batch.parquet", pad_id=pad)
    write_batch(batch, "trl", tmp / "trl", pad_id=pad)
    return {"dir": tmp, "model": model_dir, "batch": batch, "pad": pad, "trajs": trajs}


def _model(path):
    import torch
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()


def test_verl_dataproto_and_policy_loss(exported):
    import torch
    from omegaconf import OmegaConf
    from verl import DataProto
    from verl.trainer.ppo.core_algos import compute_policy_loss, get_policy_loss_fn
    from verl.utils.torch_functional import logprobs_from_logits

    from agentrm.training.trainers import verl_dataproto

    data = verl_dataproto(exported["dir"] / "batch.parquet", pad_id=exported["pad"])
    assert isinstance(data, DataProto) and len(data) == 6
    b = data.batch
    assert b["responses"].dtype == torch.long and b["advantages"].dtype == torch.float32
    assert data.meta_info["estimator"] == "grpo"
    # DataProto's own operations accept it
    halves = data.chunk(2)
    assert len(DataProto.concat(halves)) == 6 and len(data.select(batch_keys=["responses"])) == 6
    # the response ids are the sampled ones
    rows = {(r["traj_uid"], r["step"]): r for r in exported["batch"].rows}
    for i in range(len(data)):
        key = (data.non_tensor_batch["traj_uid"][i], data.non_tensor_batch["step"][i])
        n = int(b["response_mask"][i].sum())
        assert b["responses"][i, :n].tolist() == rows[key]["response_ids"]
        assert n == len(rows[key]["response_ids"])  # the mask covers exactly the model's tokens
    # the current policy's log-probs of the exported ids, as verl computes them
    R = b["responses"].shape[1]
    with torch.no_grad():
        logits = _model(exported["model"])(input_ids=b["input_ids"], attention_mask=b["attention_mask"],
                                           position_ids=b["position_ids"]).logits
    log_prob = logprobs_from_logits(logits[:, -R - 1:-1], b["responses"])
    mask = b["response_mask"].float()
    old = b["rollout_log_probs"]
    assert (log_prob * mask).flatten().tolist() == pytest.approx((old * mask).flatten().tolist(), abs=2e-4)
    # verl's loss with our advantages: same number as the plain PPO-clip formula
    config = OmegaConf.create({"clip_ratio": 0.2, "clip_ratio_low": None, "clip_ratio_high": None,
                               "clip_ratio_c": 3.0, "global_batch_info": {}})
    shifted = old - 0.3 * torch.sign(b["advantages"])  # ratios away from 1, so clipping matters
    loss, metrics = get_policy_loss_fn("vanilla")(shifted, log_prob, b["advantages"], b["response_mask"],
                                                   loss_agg_mode="token-mean", config=config)
    legacy = compute_policy_loss(shifted, log_prob, b["advantages"], b["response_mask"], cliprange=0.2)[0]
    ratio = torch.exp(log_prob - shifted)
    adv = b["advantages"]
    per_token = torch.maximum(-adv * ratio, -adv * ratio.clamp(0.8, 1.2))
    per_token = torch.where(adv < 0, torch.minimum(per_token, -adv * 3.0), per_token)
    expected = (per_token * mask).sum() / mask.sum()
    assert float(loss) == pytest.approx(float(expected), abs=1e-5)
    assert float(legacy) == pytest.approx(float(expected), abs=1e-5)
    assert float(expected) != 0.0


def test_trl_grpo_one_optimisation_step(exported):
    import torch
    from datasets import Dataset, load_from_disk
    from trl import GRPOConfig, GRPOTrainer

    from agentrm.training.trainers import trl_grpo_inputs

    ds = load_from_disk(str(exported["dir"] / "trl"))
    inputs = trl_grpo_inputs(ds, pad_id=exported["pad"])
    assert inputs["completion_ids"].shape == inputs["advantages"].shape
    model = _model(exported["model"]).train()
    args = GRPOConfig(output_dir=str(exported["dir"] / "out"), per_device_train_batch_size=6,
                      num_generations=3, max_completion_length=16, beta=0.0, temperature=1.0,
                      learning_rate=1e-2, report_to=[], use_cpu=True, loss_type="grpo",
                      logging_steps=1, save_strategy="no", bf16=False)
    prompts = Dataset.from_dict({"prompt": ["unused"] * 6})  # the trainer wants a dataset; we bring the batch
    trainer = GRPOTrainer(model=model, reward_funcs=lambda completions, **kw: [0.0] * len(completions),
                          args=args, train_dataset=prompts, processing_class=_tok(exported))
    # TRL's per-token log-probs of the exported ids equal the rollout's, where prompts are unpadded
    with torch.no_grad():
        ids = torch.cat([inputs["prompt_ids"], inputs["completion_ids"]], 1)
        att = torch.cat([inputs["prompt_mask"], inputs["completion_mask"]], 1)
        logps, _, _ = trainer._get_per_token_logps_and_entropies(model, ids, att, inputs["completion_ids"].shape[1])
    full = inputs["prompt_mask"].all(dim=1)
    m = inputs["completion_mask"].bool()
    assert full.any()
    assert logps[full][m[full]].tolist() == pytest.approx(inputs["old_per_token_logps"][full][m[full]].tolist(), abs=2e-4)
    # one optimisation step through TRL's loss
    trainer.create_optimizer()
    trainer.current_gradient_accumulation_steps = 1  # set per step by its training loop
    before = [p.detach().clone() for p in model.parameters()]
    inputs["old_per_token_logps"] = logps.detach()  # on-policy: ratio 1, loss = -mean_i mean_t A
    loss = trainer.compute_loss(model, inputs)
    mask = (inputs["completion_mask"] * inputs["tool_mask"]).float()
    expected = -((inputs["advantages"] * mask).sum(1) / mask.sum(1).clamp(min=1)).mean()
    assert float(loss) == pytest.approx(float(expected), abs=1e-5)
    trainer.accelerator.backward(loss)
    trainer.optimizer.step()
    changed = sum(not torch.equal(a, p.detach()) for a, p in zip(before, model.parameters(), strict=True))
    assert changed > 0
    assert np.isfinite([float(p.detach().abs().sum()) for p in model.parameters()]).all()


def _tok(exported):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(exported["model"])
