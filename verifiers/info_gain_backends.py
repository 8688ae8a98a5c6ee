"""Belief backends for information gain: mean log-prob of the answer tokens of many probes.

The T probes of one trajectory share their conversation prefix (probe k+1 extends probe k's
context by one turn), so re-encoding each from scratch costs O(T²) tokens. The fast paths
encode every conversation token once:

- transformers: one KV cache per trajectory, walked along the turns. For probe k the cache is
  cropped back to the longest prefix it shares with probe k (the conversation so far), only
  the new turn plus the answer probe are run, and only the answer rows of the LM head are
  computed (`logits_to_keep`).
- vLLM: prompt log-probs with automatic prefix caching. vLLM skips reading the prefix cache for
  prompt-logprob requests by default (cached positions have no logits); the answer tokens are
  at the end and are never cache hits unless the whole probe was seen before, so we read the
  cache and take the log-probs of the last positions, which are always computed.

Identical probes (belief v_0 is the same for every rollout of a task) are computed once.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, Protocol

from agentrm.errors import InfrastructureError, InputError, PrerequisiteError

log = logging.getLogger("agentrm.verifiers.info_gain")


class BeliefBackend(Protocol):
    tokenizer: Any

    def mean_logprobs(self, probes: Sequence[Sequence[Any]]) -> list[list[float]]:
        """Per trajectory, per probe: mean log π(answer token | everything before it)."""
        ...


def _common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


class TransformersBeliefs:
    """Beliefs from a causal LM; `fast=False` is the naive baseline (one full pass per probe)."""

    def __init__(self, model: Any, tokenizer: Any, fast: bool = True, full_logits: bool = False):
        self.model, self.tokenizer, self.fast = model, tokenizer, fast
        self.full_logits = full_logits  # naive only: a plain forward (LM head on every position)
        self.tokens_run = 0  # conversation + probe tokens fed to the model (for the benchmark)

    @classmethod
    def load(cls, name_or_path: str | None = None, device: str | None = None, fast: bool = True):
        from agentrm.models import load_causal_lm

        model, tokenizer = load_causal_lm(name_or_path, device)
        return cls(model, tokenizer, fast)

    def mean_logprobs(self, probes: Sequence[Sequence[Any]]) -> list[list[float]]:
        import torch

        seen: dict[tuple[int, ...], float] = {}
        with torch.inference_mode():
            out = []
            for traj_probes in probes:
                run = self._walk if self.fast else self._naive
                out.append(run(traj_probes, seen))
        return out

    def _answer_mean(self, logits: Any, targets: Sequence[int]) -> float:
        import torch

        logp = torch.log_softmax(logits.float(), dim=-1)
        index = torch.tensor(targets, device=logp.device).unsqueeze(-1)
        return float(logp.gather(-1, index).mean())

    def _naive(self, probes: Sequence[Any], seen: dict) -> list[float]:
        import torch

        out = []
        for p in probes:
            first, stop = p.gt[0] - 1, p.gt[-1]
            ids = torch.tensor([p.ids[:stop]], device=self.model.device)
            keep = 0 if self.full_logits else stop - first  # 0 = every position
            logits = self.model(input_ids=ids, use_cache=False, logits_to_keep=keep).logits[0]
            self.tokens_run += stop
            out.append(self._answer_mean(logits[-(stop - first):], p.ids[first + 1: stop + 1]))
        return out

    def _walk(self, probes: Sequence[Any], seen: dict) -> list[float]:
        """One KV cache along the turns; crop back to the shared prefix before each probe."""
        import torch
        from transformers import DynamicCache

        cache, cached = DynamicCache(), []
        out = []
        for p in probes:
            key = tuple(p.ids)
            if key in seen:
                out.append(seen[key])
                continue
            first, stop = p.gt[0] - 1, p.gt[-1]  # logits at first..stop-1 predict the answer
            keep = min(_common_prefix(cached, p.ids), first)
            if len(cached) > keep:
                cache.crop(-(len(cached) - keep))  # negative = drop that many (transformers 4.x and 5.x)
            chunk = torch.tensor([p.ids[keep:stop]], device=self.model.device)
            result = self.model(input_ids=chunk, past_key_values=cache, use_cache=True,
                                logits_to_keep=stop - first)
            cache, cached = result.past_key_values, list(p.ids[:stop])
            self.tokens_run += stop - keep
            seen[key] = self._answer_mean(result.logits[0], p.ids[first + 1: stop + 1])
            out.append(seen[key])
        return out


class VLLMBeliefs:
    """Beliefs from vLLM prompt log-probs, with prefix caching across the probes of a batch."""

    def __init__(self, llm: Any, tokenizer: Any | None = None):
        self.llm = llm
        self.tokenizer = tokenizer or llm.get_tokenizer()
        self.cached_tokens = 0  # prompt tokens vLLM served from its prefix cache

    @classmethod
    def load(cls, name_or_path: str | None = None, gpu_memory_utilization: float = 0.2, **engine: Any):
        try:
            from vllm import LLM
        except Exception as exc:  # noqa: BLE001 - vllm import fails in many ways
            raise PrerequisiteError(f"info-gain --backend vllm: vLLM is not usable here ({exc})") from exc
        from agentrm.models import load_tokenizer, resolve_model

        path = str(resolve_model(name_or_path))
        engine.setdefault("enforce_eager", True)
        llm = LLM(model=path, enable_prefix_caching=True, gpu_memory_utilization=gpu_memory_utilization, **engine)
        return cls(llm, load_tokenizer(name_or_path))

    def mean_logprobs(self, probes: Sequence[Sequence[Any]]) -> list[list[float]]:
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        unique: dict[tuple[int, ...], Any] = {}
        for traj in probes:
            for p in traj:
                unique.setdefault(tuple(p.ids), p)
        # Reading the prefix cache is safe here: only the answer positions at the end are read,
        # and vLLM always computes the tail of a prompt.
        params = SamplingParams(max_tokens=1, temperature=0.0, prompt_logprobs=0, detokenize=False,
                                skip_reading_prefix_cache=False)
        prompts = [TokensPrompt(prompt_token_ids=list(ids)) for ids in unique]
        outputs = self.llm.generate(prompts, params, use_tqdm=False) if prompts else []
        self.cached_tokens += sum(int(getattr(o, "num_cached_tokens", 0) or 0) for o in outputs)
        by_key = {key: self._answer_mean(o, p) for (key, p), o in zip(unique.items(), outputs, strict=True)}
        return [[by_key[tuple(p.ids)] for p in traj] for traj in probes]

    @staticmethod
    def _answer_mean(output: Any, probe: Any) -> float:
        """Mean log-prob of the answer tokens from vLLM's per-position prompt log-prob dicts."""
        entries = output.prompt_logprobs or []
        offset = len(probe.ids) - len(entries)  # entries cover the last len(entries) positions
        values = []
        for pos in probe.gt:
            entry = entries[pos - offset] if pos - offset >= 0 else None
            if not entry or probe.ids[pos] not in entry:
                raise InfrastructureError(f"vLLM returned no prompt log-prob for answer position {pos}")
            values.append(float(entry[probe.ids[pos]].logprob))
        return sum(values) / len(values)


def make_backend(name: str, model: str | None = None, device: str | None = None, fast: bool = True,
                 **engine: Any) -> BeliefBackend:
    if name == "transformers":
        return TransformersBeliefs.load(model, device, fast)
    if name == "vllm":
        return VLLMBeliefs.load(model, **engine)
    raise InputError(f"info-gain --backend {name!r}: choose transformers or vllm")
