"""One policy-gradient update from stored turns: the tokens the policy sampled, the log-probs it
sampled them with, and per-token advantages (agentrm.training.export rows).

The loss is verl's own clipped policy loss (`compute_policy_loss_vanilla`, the PPO/GRPO/GiGPO
objective) with the stored sampling log-probs as the old policy, so the importance ratio is
taken against what was really sampled; the optional KL term is verl's `kl_penalty` against the
model with its LoRA adapters disabled. What stays here is the thin part: a forward pass per row
that computes logits only for the response positions, a token mean over the whole batch, and
the optimiser step.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class UpdateConfig:
    clip_ratio: float = 0.2
    kl_coef: float = 0.0  # > 0 needs LoRA (the reference is the model with adapters disabled)
    minibatches: int = 1  # optimiser steps per epoch
    epochs: int = 1
    max_grad_norm: float = 1.0


def response_logprobs(model: Any, prompt: Sequence[int], response: Sequence[int]):
    """log p(response_t | prompt, response_<t) at temperature 1, as the policy sampled them;
    only the response positions' logits are computed (the vocabulary projection dominates)."""
    import torch

    device = next(model.parameters()).device
    ids = torch.tensor([list(prompt) + list(response)], device=device)
    keep = len(response) + 1
    logits = model(input_ids=ids, logits_to_keep=keep).logits[0, :-1].float()
    target = torch.tensor(list(response), device=device)
    return torch.log_softmax(logits, -1).gather(-1, target[:, None])[:, 0]


def _actor_config(clip_ratio: float):
    from verl.workers.config.actor import ActorConfig

    return ActorConfig(strategy="fsdp", rollout_n=1, ppo_micro_batch_size_per_gpu=1,
                       clip_ratio=clip_ratio, clip_ratio_low=clip_ratio, clip_ratio_high=clip_ratio,
                       use_torch_compile=False)


def _reference(model: Any, prompt, response):
    import torch

    with torch.no_grad(), model.disable_adapter():
        return response_logprobs(model, prompt, response)


def policy_update(model: Any, optimizer: Any, rows: Sequence[dict[str, Any]], config: UpdateConfig,
                  seed: int = 0) -> dict[str, float]:
    """Update `model` in place from export rows (prompt_ids, response_ids, response_mask,
    advantages, logprobs); returns the statistics a run records (means over the batch)."""
    import torch
    from verl.trainer.ppo.core_algos import compute_policy_loss_vanilla, kl_penalty

    rows = [r for r in rows if r["response_ids"] and r.get("logprobs") and any(r["response_mask"])]
    if not rows:
        return {"rows": 0}
    if config.kl_coef > 0 and not hasattr(model, "disable_adapter"):
        from agentrm.errors import InputError

        raise InputError("--kl-coef needs --lora-rank > 0 (the reference is the model without adapters)")
    actor = _actor_config(config.clip_ratio)
    params = [p for p in model.parameters() if p.requires_grad]
    rng = np.random.default_rng(seed)
    stats: dict[str, list[float]] = {"loss": [], "pg_clipfrac": [], "ppo_kl": [], "kl_ref": [],
                                     "grad_norm": [], "ratio_max": []}
    for _ in range(config.epochs):
        order = rng.permutation(len(rows))
        for part in np.array_split(order, max(1, min(config.minibatches, len(rows)))):
            batch = [rows[i] for i in part.tolist()]
            tokens = sum(int(sum(r["response_mask"])) for r in batch)
            optimizer.zero_grad(set_to_none=True)
            for r in batch:
                new = response_logprobs(model, r["prompt_ids"], r["response_ids"])
                old = torch.tensor(r["logprobs"], dtype=torch.float32, device=new.device)
                adv = torch.tensor(r["advantages"], dtype=torch.float32, device=new.device)
                mask = torch.tensor(r["response_mask"], dtype=torch.float32, device=new.device)
                loss, metrics = compute_policy_loss_vanilla(old[None], new[None], adv[None], mask[None],
                                                            "token-mean", actor)
                if config.kl_coef > 0:
                    ref = _reference(model, r["prompt_ids"], r["response_ids"])
                    kl = (kl_penalty(new, ref, "low_var_kl") * mask).sum() / mask.sum()
                    loss = loss + config.kl_coef * kl
                    stats["kl_ref"].append(float(kl))
                weight = float(mask.sum()) / tokens  # the batch's token mean, row by row
                (loss * weight).backward()
                stats["loss"].append(float(loss.detach()))
                stats["pg_clipfrac"].append(metrics["actor/pg_clipfrac"])
                stats["ppo_kl"].append(metrics["actor/ppo_kl"])
                stats["ratio_max"].append(float(torch.exp(new.detach() - old).max()))
            norm = torch.nn.utils.clip_grad_norm_(params, config.max_grad_norm)
            stats["grad_norm"].append(float(norm))
            optimizer.step()
    out = {k: float(np.mean(v)) for k, v in stats.items() if v}
    out["ratio_max"] = float(np.max(stats["ratio_max"]))
    out["rows"] = len(rows)
    out["tokens"] = sum(int(sum(r["response_mask"])) for r in rows)
    return out
