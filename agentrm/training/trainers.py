"""The exported batches in the trainers' own containers (verl's DataProto, TRL's GRPO inputs).

Both take the stored ids as they are: prompts left-padded, responses right-padded, masks and
per-token advantages aligned with the responses. verl and TRL are imported lazily; they are
test extras, not dependencies.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from agentrm.training.export import _pad

NON_TENSOR = ("uid", "traj_uid", "step", "advantage", "is_action_valid", "token_source")


def _padded(rows: list[dict[str, Any]], pad_id: int, prompt: str, response: str) -> dict[str, Any]:
    import torch

    prompts = _pad([r[prompt] for r in rows], pad_id, True, torch.long)
    responses = _pad([r[response] for r in rows], pad_id, False, torch.long)
    p_att = _pad([[1] * len(r[prompt]) for r in rows], 0, True, torch.long)
    r_att = _pad([[1] * len(r[response]) for r in rows], 0, False, torch.long)
    return {"prompts": prompts, "responses": responses, "prompt_mask": p_att, "response_att": r_att}


def verl_dataproto(path: str | Path, pad_id: int = 0):
    """Load `agentrm export --format verl` output as a verl `DataProto` (the step-row layout:
    prompts, responses, input_ids, attention_mask, position_ids, response_mask, advantages,
    returns, rollout_log_probs when every row has them; uid, traj_uid, … as non-tensors)."""
    import json

    import numpy as np
    import pyarrow.parquet as pq
    import torch
    from verl import DataProto

    table = pq.read_table(path)
    rows = table.to_pylist()
    p = _padded(rows, pad_id, "prompts", "responses")
    attention = torch.cat([p["prompt_mask"], p["response_att"]], dim=1)
    tensors = {
        "prompts": p["prompts"], "responses": p["responses"],
        "input_ids": torch.cat([p["prompts"], p["responses"]], dim=1), "attention_mask": attention,
        "position_ids": (attention.cumsum(1) - 1).clamp(min=0) * attention,
        "response_mask": _pad([r["response_mask"] for r in rows], 0, False, torch.long),
        "advantages": _pad([r["advantages"] for r in rows], 0.0, False, torch.float32),
    }
    tensors["returns"] = tensors["advantages"].clone()
    if all(r.get("rollout_log_probs") is not None for r in rows):
        tensors["rollout_log_probs"] = _pad([r["rollout_log_probs"] for r in rows], 0.0, False,
                                            torch.float32)
    non_tensors = {k: np.array([r[k] for r in rows], dtype=object) for k in NON_TENSOR if k in rows[0]}
    meta = json.loads((table.schema.metadata or {}).get(b"agentrm", b"{}"))
    return DataProto.from_dict(tensors=tensors, non_tensors=non_tensors, meta_info=meta)


def trl_grpo_inputs(dataset, pad_id: int = 0) -> dict[str, Any]:
    """TRL GRPOTrainer's batch from `agentrm export --format trl` (a `datasets.Dataset`):
    prompt_ids/prompt_mask (left-padded), completion_ids/completion_mask (right-padded),
    tool_mask (1 = model token), per-token advantages (B, T) and, when every row has them,
    old_per_token_logps (the rollout's log-probs)."""
    import torch

    rows = dataset.to_list()
    p = _padded(rows, pad_id, "prompt_ids", "completion_ids")
    inputs = {
        "prompt_ids": p["prompts"], "prompt_mask": p["prompt_mask"],
        "completion_ids": p["responses"],
        "completion_mask": _pad([r["completion_mask"] for r in rows], 0, False, torch.long),
        "tool_mask": _pad([r["tool_mask"] for r in rows], 0, False, torch.long),
        "advantages": _pad([r["advantages"] for r in rows], 0.0, False, torch.float32),
    }
    if all(r.get("old_per_token_logps") is not None for r in rows):
        inputs["old_per_token_logps"] = _pad([r["old_per_token_logps"] for r in rows], 0.0, False,
                                             torch.float32)
    inputs["num_items_in_batch"] = (inputs["completion_mask"] * inputs["tool_mask"]).sum()
    return inputs
