"""vLLM backend (pinned to vllm 0.32's pooling API; REWARD_MODELS.md §2, §5.1).

token-cls   the native `Qwen2ForProcessRewardModel` on the pooling runner with STEP token
            pooling at the separator id: vLLM returns softmax(2 classes) per separator.
tag, value, judge
            a causal LM on the pooling runner (`convert="embed"`, ALL token pooling, no
            activation/normalisation) returns the final hidden states; the same small head as the
            transformers backend (two LM-head rows, or the v_head) is applied here. This avoids
            `returned_token_ids` (which indexes hidden dimensions for converted causal LMs, vLLM
            #13559/#16545) and gives exact read-outs where prompt log-probs give only top-k.
The judge sends one prompt per step (vLLM takes no custom attention mask).
vLLM starts an engine process: callers that spawn must sit behind `if __name__ == "__main__"`.
"""

from __future__ import annotations

import gc
import logging
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from agentrm.errors import InfrastructureError, PrerequisiteError
from agentrm.verifiers.prm_format import Encoded, JudgeEncoded
from agentrm.verifiers.prm_hf import Readout, _checkpoint_tensors, pair_head, readouts, value_head

log = logging.getLogger("agentrm.verifiers.prm")
CPU_KV_CACHE_BYTES = 1 << 30  # 1 GiB unless VLLM_CPU_KVCACHE_SPACE says otherwise


def _import_vllm() -> Any:
    try:
        import vllm
        from vllm.config import PoolerConfig
    except Exception as exc:  # noqa: BLE001 - a broken install fails in many ways
        raise PrerequisiteError(f"--backend vllm: cannot import vllm ({str(exc).splitlines()[0]})") from exc
    return vllm, PoolerConfig


def _lm_head_weight(location: Any) -> Any:
    tensors = _checkpoint_tensors(location, ("lm_head.weight", "model.embed_tokens.weight"))
    weight = tensors.get("lm_head.weight", tensors.get("model.embed_tokens.weight"))
    if weight is None:
        raise PrerequisiteError(f"--model {location}: no lm_head.weight in the checkpoint")
    return weight


def backbone_view(location: Any) -> Path:
    """A checkpoint directory vLLM can load as a plain decoder: the value head's `v_head.*`
    tensors (which vLLM's loader rejects) are left out; other files are symlinked. Built once
    per checkpoint in the agentrm cache (keyed by path and modification time)."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    from agentrm.files import atomic_path
    from agentrm.hashing import stable_hash
    from agentrm.models import cache_dir

    source = Path(str(location))
    files = sorted(source.glob("*.safetensors"))
    key = stable_hash([str(source.resolve())] + [[f.name, f.stat().st_mtime_ns] for f in files])
    target = cache_dir() / "prm-vllm" / key
    if (target / "config.json").exists():
        return target
    with atomic_path(target, directory=True) as tmp:
        for item in source.iterdir():
            if item.suffix != ".safetensors" and item.name != "model.safetensors.index.json":
                (tmp / item.name).symlink_to(item.resolve())
        tensors = {}
        for file in files:
            with safe_open(str(file), framework="pt") as handle:
                tensors.update({k: handle.get_tensor(k) for k in handle.keys()
                                if not k.startswith(("v_head.", "value_head."))})
        save_file(tensors, str(tmp / "model.safetensors"), metadata={"format": "pt"})
    return target


class VLLMBackend:
    """One vLLM engine for one PRM; `read_steps` / `read_judge` like the transformers backend."""

    def __init__(self, model: str, style: str, sep_id: int | None, pair: tuple[int, int] | None,
                 gpu_memory_utilization: float = 0.2, **engine_args: Any):
        import torch

        from agentrm.models import resolve_model

        vllm, PoolerConfig = _import_vllm()
        location = resolve_model(model)
        self.style = style
        served = backbone_view(location) if style == "value" else location
        args = dict(model=str(served), runner="pooling", enforce_eager=True,
                    dtype="auto" if torch.cuda.is_available() else "float32",
                    gpu_memory_utilization=gpu_memory_utilization, **engine_args)
        if not torch.cuda.is_available() and "VLLM_CPU_KVCACHE_SPACE" not in os.environ:
            # vLLM's automatic CPU KV size subtracts this process's RSS from a share of RAM and
            # fails on a busy machine or after an earlier engine; scoring needs little KV space.
            args.setdefault("kv_cache_memory_bytes", CPU_KV_CACHE_BYTES)
        if style == "token-cls":
            args["pooler_config"] = PoolerConfig(task="token_classify", tok_pooling_type="STEP",
                                                   step_tag_id=sep_id)
            self.task, self.head = "token_classify", None
        else:
            args.update(convert="embed",
                        pooler_config=PoolerConfig(task="token_embed", tok_pooling_type="ALL",
                                                      use_activation=False))
            self.task = "token_embed"
            self.head = (value_head(location) if style == "value"
                         else pair_head(_lm_head_weight(location), *pair))
        try:
            self.llm = vllm.LLM(**args)
        except Exception as exc:  # noqa: BLE001 - engine start-up errors come in many types
            raise PrerequisiteError(f"vLLM could not load {location}: {str(exc).splitlines()[0]}") from exc
        config = self.llm.llm_engine.model_config
        self.context_size = int(getattr(config, "max_model_len", 0) or 4096)

    def _encode(self, prompts: list[list[int]]) -> list[Any]:
        outs = self.llm.encode([{"prompt_token_ids": p} for p in prompts],
                               pooling_task=self.task, use_tqdm=False)
        return [o.outputs.data for o in outs]

    def read_steps(self, items: Sequence[Encoded], batch_size: int) -> list[list[Readout | None]]:
        """vLLM batches internally; `batch_size` only bounds how many requests are queued at once."""
        results: list[list[Readout | None]] = []
        for start in range(0, len(items), max(batch_size, 32)):
            chunk = items[start:start + max(batch_size, 32)]
            for enc, data in zip(chunk, self._encode([e.ids for e in chunk]), strict=False):
                live = [k for k, p in enumerate(enc.read_at) if p is not None]
                if self.task == "token_classify":
                    values = self._step_probs(enc, data, len(live))
                else:
                    values = readouts(self.head(data[[enc.read_at[k] for k in live]].float()), self.style)
                row: list[Readout | None] = [None] * len(enc.read_at)
                for k, value in zip(live, values, strict=False):
                    row[k] = value
                results.append(row)
        return results

    @staticmethod
    def _step_probs(enc: Encoded, data: Any, expected: int) -> list[Readout]:
        if data.shape[0] != expected:  # REWARD_MODELS §1.6: one output per separator, always
            raise InfrastructureError(f"vLLM returned {data.shape[0]} step outputs for {expected} "
                                      f"separators in trajectory {enc.trajectory_id}")
        probs = data.float().tolist()
        return [(p1, math.log(max(p1, 1e-45)) - math.log(max(p0, 1e-45))) for p0, p1 in probs]

    def read_judge(self, items: Sequence[JudgeEncoded], batch_size: int) -> list[list[Readout | None]]:
        prompts, owners = [], []
        for i, enc in enumerate(items):
            for k, (end, question) in enumerate(zip(enc.step_end, enc.questions, strict=False)):
                if end is not None:
                    prompts.append(enc.stream[:end] + question)
                    owners.append((i, k))
        results: list[list[Readout | None]] = [[None] * len(e.questions) for e in items]
        for start in range(0, len(prompts), max(batch_size, 32)):
            datas = self._encode(prompts[start:start + max(batch_size, 32)])
            import torch

            last = torch.stack([d[-1] for d in datas]).float()
            for (i, k), value in zip(owners[start:], readouts(self.head(last), "judge"), strict=False):
                results[i][k] = value
        return results

    def close(self) -> None:
        """Stop the engine process now rather than at interpreter exit."""
        engine = getattr(self.llm, "llm_engine", None)
        shutdown = getattr(getattr(engine, "engine_core", None), "shutdown", None)
        if callable(shutdown):
            shutdown()
        del self.llm
        gc.collect()
