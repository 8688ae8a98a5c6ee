"""Training batches: one row per turn with per-token advantages, written as verl-style parquet,
torch tensors (.pt, a DataProto-like dict) or a TRL-ready `datasets` directory (FORMATS.md §3.3, §4).

Per-token advantages (ALGORITHMS.md §0 "Broadcast"): the turn's scalar on every model token;
tool/observation tokens get 0 by default ("zero"), or the scalar too ("broadcast", IGPO's
choice) — either way they are masked out of the loss by response_mask. returns = advantages.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agentrm.errors import InputError
from agentrm.files import atomic_path
from agentrm.training.tokenize import ChatRenderer, TurnTokens, tokenize_trajectory
from agentrm.types import Trajectory

log = logging.getLogger("agentrm.training")

FORMATS = ("verl", "torch", "trl")


@dataclass
class TrainingBatch:
    rows: list[dict[str, Any]]
    metadata: dict[str, Any] = field(default_factory=dict)


def token_advantages(tokens: TurnTokens, advantage: float, tool_tokens: str = "zero") -> list[float]:
    if tool_tokens == "broadcast":
        return [float(advantage)] * len(tokens.response_ids)
    return [float(advantage) * m for m in tokens.response_mask]


def build_batch(trajectories: Sequence[Trajectory], advantages: Mapping[tuple[str, int], float],
                tokenizer: Any, metadata: dict[str, Any] | None = None,
                tools: Sequence[dict] | None = None, tool_tokens: str = "zero",
                on_progress=None) -> TrainingBatch:
    """Rows for every turn that has a finite advantage in `advantages[(traj_id, turn_index)]`.
    Stored token ids are taken verbatim; `tokenizer` re-tokenises turns without ids (and must
    be the one the stored ids came from)."""
    if tool_tokens not in ("zero", "broadcast"):
        raise InputError(f"--tool-tokens {tool_tokens!r}: use zero or broadcast")
    check_tokenizer(trajectories, tokenizer)
    renderer = ChatRenderer(tokenizer) if tokenizer is not None else None
    rows, skipped = [], 0
    for traj in trajectories:
        for tok in tokenize_trajectory(traj, renderer, tools):
            adv = advantages.get((tok.trajectory_id, tok.turn_index))
            if adv is None or not math.isfinite(adv):
                skipped += 1
                continue
            per_token = token_advantages(tok, adv, tool_tokens)
            rows.append({"uid": tok.group_id, "traj_uid": tok.trajectory_id, "step": tok.turn_index,
                         "prompt_ids": tok.prompt_ids, "response_ids": tok.response_ids,
                         "response_mask": tok.response_mask, "advantages": per_token,
                         "advantage": float(adv), "is_action_valid": tok.valid,
                         "token_source": tok.source, "logprobs": tok.logprobs})
        if on_progress:
            on_progress(1)
    meta = dict(metadata or {})
    meta.update(rows=len(rows), turns_without_advantage=skipped, tool_tokens=tool_tokens,
                tokenizer=getattr(tokenizer, "name_or_path", type(tokenizer).__name__),
                retokenized_rows=sum(r["token_source"] == "retokenized" for r in rows))
    return TrainingBatch(rows, meta)


def check_tokenizer(trajectories: Sequence[Trajectory], tokenizer: Any) -> None:
    """Stored ids and the export tokenizer must share one vocabulary (identity = name@vocab
    hash; endpoints that do not say which vocabulary they used are not checked)."""
    stored = {t.tokens.tokenizer for traj in trajectories for t in traj.turns
              if t.tokens is not None and "@" in t.tokens.tokenizer}
    if not stored or tokenizer is None:
        return
    from agentrm.rollout.policies.tokens import tokenizer_identity

    mine = tokenizer_identity(tokenizer)[0].rpartition("@")[2]
    other = sorted(s for s in stored if s.rpartition("@")[2] != mine)
    if other:
        raise InputError(f"the stored token ids come from tokenizer {other[0]}, not from "
                         f"--tokenizer {getattr(tokenizer, 'name_or_path', '')!s}: export with that one")


def write_verl_parquet(batch: TrainingBatch, out: Path) -> None:
    """verl step-row columns (unpadded lists): prompts, responses, input_ids, attention_mask,
    response_mask, advantages, returns, plus uid / traj_uid / step; conventions in the schema
    metadata under b"agentrm"."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    r = batch.rows
    cols = {
        "uid": [x["uid"] for x in r], "traj_uid": [x["traj_uid"] for x in r],
        "step": pa.array([x["step"] for x in r], pa.int64()),
        "prompts": pa.array([x["prompt_ids"] for x in r], pa.list_(pa.int64())),
        "responses": pa.array([x["response_ids"] for x in r], pa.list_(pa.int64())),
        "input_ids": pa.array([x["prompt_ids"] + x["response_ids"] for x in r], pa.list_(pa.int64())),
        "attention_mask": pa.array([[1] * (len(x["prompt_ids"]) + len(x["response_ids"])) for x in r],
                                   pa.list_(pa.int8())),
        "response_mask": pa.array([x["response_mask"] for x in r], pa.list_(pa.int8())),
        "advantages": pa.array([x["advantages"] for x in r], pa.list_(pa.float32())),
        "returns": pa.array([x["advantages"] for x in r], pa.list_(pa.float32())),
        "advantage": pa.array([x["advantage"] for x in r], pa.float64()),
        "is_action_valid": pa.array([x["is_action_valid"] for x in r], pa.bool_()),
        "rollout_log_probs": pa.array([x["logprobs"] for x in r], pa.list_(pa.float32())),
        "token_source": pa.array([x["token_source"] for x in r], pa.string()),
    }
    table = pa.table(cols).replace_schema_metadata({b"agentrm": json.dumps(batch.metadata).encode()})
    pq.write_table(table, out)


def _pad(seqs: list[list], value, left: bool, dtype):
    import torch

    width = max((len(s) for s in seqs), default=0)
    t = torch.full((len(seqs), width), value, dtype=dtype)
    for i, s in enumerate(seqs):
        if not s:
            continue
        values = torch.tensor(s, dtype=dtype)
        if left:
            t[i, width - len(s):] = values
        else:
            t[i, : len(s)] = values
    return t


def write_torch(batch: TrainingBatch, out: Path, pad_id: int) -> None:
    """A DataProto-like dict: `batch` (tensors, prompts left-padded, responses right-padded),
    `non_tensor_batch` (lists) and `meta_info` (conventions)."""
    import torch

    r = batch.rows
    prompts = _pad([x["prompt_ids"] for x in r], pad_id, True, torch.long)
    responses = _pad([x["response_ids"] for x in r], pad_id, False, torch.long)
    p_att = _pad([[1] * len(x["prompt_ids"]) for x in r], 0, True, torch.long)
    r_att = _pad([[1] * len(x["response_ids"]) for x in r], 0, False, torch.long)
    attention = torch.cat([p_att, r_att], dim=1)
    advantages = _pad([x["advantages"] for x in r], 0.0, False, torch.float32)
    tensors = {
        "prompts": prompts, "responses": responses, "input_ids": torch.cat([prompts, responses], 1),
        "attention_mask": attention,
        "position_ids": (attention.cumsum(1) - 1).clamp(min=0) * attention,
        "response_mask": _pad([x["response_mask"] for x in r], 0, False, torch.long),
        "advantages": advantages, "returns": advantages.clone(),
    }
    if all(x["logprobs"] is not None for x in r):
        tensors["rollout_log_probs"] = _pad([x["logprobs"] for x in r], 0.0, False, torch.float32)
    non_tensor = {k: [x[k] for x in r]
                  for k in ("uid", "traj_uid", "step", "advantage", "is_action_valid", "token_source")}
    torch.save({"batch": tensors, "non_tensor_batch": non_tensor, "meta_info": batch.metadata}, out)


def write_trl(batch: TrainingBatch, out: Path) -> None:
    """A `datasets` directory (load_from_disk) with TRL GRPO batch names: prompt_ids,
    completion_ids, completion_mask, tool_mask (1 = model token), per-token advantages."""
    from datasets import Dataset

    r = batch.rows
    data = {
        "prompt_ids": [x["prompt_ids"] for x in r], "completion_ids": [x["response_ids"] for x in r],
        "completion_mask": [[1] * len(x["response_ids"]) for x in r],
        "tool_mask": [x["response_mask"] for x in r], "advantages": [x["advantages"] for x in r],
        "advantage": [x["advantage"] for x in r], "uid": [x["uid"] for x in r],
        "traj_uid": [x["traj_uid"] for x in r], "step": [x["step"] for x in r],
        "old_per_token_logps": [x["logprobs"] for x in r],
        "token_source": [x["token_source"] for x in r],
    }
    ds = Dataset.from_dict(data)
    ds.info.description = json.dumps(batch.metadata)
    ds.save_to_disk(str(out))
    (out / "agentrm_meta.json").write_text(json.dumps(batch.metadata, indent=2))


def write_batch(batch: TrainingBatch, fmt: str, out: str | os.PathLike, pad_id: int = 0) -> Path:
    """Write `batch` in `fmt` to `out` atomically (nothing half-written on failure)."""
    if fmt not in FORMATS:
        raise InputError(f"--format {fmt!r}: choose from {', '.join(FORMATS)}")
    if not batch.rows:
        raise InputError("nothing to export: no turn has an advantage (run `agentrm advantages` first)")
    target = Path(out)
    with atomic_path(target, directory=fmt == "trl") as tmp:
        if fmt == "verl":
            write_verl_parquet(batch, tmp)
        elif fmt == "torch":
            write_torch(batch, tmp, pad_id)
        else:
            shutil.rmtree(tmp)
            write_trl(batch, tmp)
    log.info("wrote %d rows as %s to %s", len(batch.rows), fmt, target)
    return target
