"""Local generation with transformers (CPU, or CUDA when present). The default policy runs the
embedded SmolLM2 (`transformers:smollm2`), so a rollout needs no endpoint at all."""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from typing import Any

from agentrm.protocols import PolicyOutput
from agentrm.rollout.policies.base import ContextLimitExceeded, ModelError
from agentrm.rollout.policies.chat import prompt_ids, render_prompt
from agentrm.rollout.policies.grammar import ACTION_FORMATS, TOOL_CALL, HFConstraint, action_grammar
from agentrm.rollout.policies.parsing import assistant_message
from agentrm.rollout.policies.tokens import PromptChain, tokenizer_identity
from agentrm.types import Message

log = logging.getLogger("agentrm.rollout.policies.transformers")


class TransformersPolicy:
    """Sampling from a causal LM; log-probs are those of the unmodified model distribution
    (temperature 1, before top-p and any grammar mask), which is what importance ratios in RL
    need. `constrain=True` decodes under the action grammar (grammar.py); `action_format`
    is tool_call (default) or bash_block (mini-swe-agent's one fenced block per reply)."""

    def __init__(self, model: str | None = None, *, device: str | None = None,
                 max_new_tokens: int = 256, temperature: float = 0.7, top_p: float = 1.0,
                 max_context: int | None = None, seed: int | None = None, tools_mode: str = "auto",
                 constrain: bool = False, action_format: str = TOOL_CALL, name: str | None = None):
        if action_format not in ACTION_FORMATS:
            raise ValueError(f"action_format={action_format!r}: choose {' or '.join(ACTION_FORMATS)}")
        self.model_ref = model or "smollm2"
        self.name = name or f"transformers:{self.model_ref}"
        self.device, self.max_new_tokens = device, max_new_tokens
        self.temperature, self.top_p, self.seed = temperature, top_p, seed
        self.max_context, self.tools_mode = max_context, tools_mode
        self.constrain, self.action_format = constrain, action_format
        self._model: Any = None
        self._tokenizer: Any = None
        self._constraint: HFConstraint | None = None
        self._chain = PromptChain()
        self._lock = threading.Lock()  # one forward pass at a time: the model is shared by threads

    def _load(self) -> None:
        if self._model is None:
            from agentrm.models import load_causal_lm

            self._model, self._tokenizer = load_causal_lm(self.model_ref, device=self.device)
            self._model.eval()
            if self.seed is not None:  # once, not per call: a group's identical prompts must differ
                import torch

                torch.manual_seed(self.seed)
            if self.max_context is None:
                self.max_context = int(getattr(self._model.config, "max_position_embeddings", 2048))

    def trainable(self, wrap: Any = None) -> tuple[Any, Any]:
        """(model, tokenizer) that `act` samples from, for a trainer to update in place; `wrap`
        (e.g. adding LoRA adapters) is applied once, and `act` then samples from its result."""
        with self._lock:
            self._load()
            if wrap is not None:
                self._model = wrap(self._model)
                self._constraint = None
            return self._model, self._tokenizer

    def act(self, messages: Sequence[Message], tools: Sequence[dict[str, Any]]) -> PolicyOutput:
        with self._lock:
            self._load()
            prompt = render_prompt(self._tokenizer, messages, tools, self.tools_mode,
                                   self.action_format)
            ids = prompt_ids(self._tokenizer, prompt)
            if len(ids) + 1 > int(self.max_context or 0):
                raise ContextLimitExceeded(f"prompt of {len(ids)} tokens exceeds the context "
                                           f"of {self.max_context}")
            try:
                new_ids, logprobs = self._generate(ids, tools)
            except Exception as exc:  # noqa: BLE001 - any engine failure is a model error
                raise ModelError(f"{self.name}: generation failed: {type(exc).__name__}: {exc}") from exc
        text = self._tokenizer.decode(new_ids, skip_special_tokens=True)
        tokens = self._chain.trace(messages, ids, new_ids,
                                   *tokenizer_identity(self._tokenizer, str(self.model_ref)))
        return PolicyOutput(assistant_message(text, self.action_format), prompt_tokens=len(ids),
                            completion_tokens=len(new_ids), logprobs=logprobs,
                            raw={"text": text, "token_ids": new_ids}, tokens=tokens)

    def _processors(self, tools: Sequence[dict[str, Any]]) -> list:
        if not self.constrain:
            return []
        if self._constraint is None:
            vocab = int(getattr(self._model.config, "vocab_size", 0) or len(self._tokenizer))
            self._constraint = HFConstraint(self._tokenizer, vocab)
        return [self._constraint.processor(action_grammar(self.action_format, tools))]

    def _generate(self, ids: list[int], tools: Sequence[dict[str, Any]] = ()) -> tuple[list[int], list[float]]:
        import torch

        model, tok = self._model, self._tokenizer
        input_ids = torch.tensor([ids], device=model.device)
        budget = min(self.max_new_tokens, int(self.max_context or 0) - len(ids))
        sampling = self.temperature > 0
        kwargs: dict[str, Any] = {"temperature": self.temperature, "top_p": self.top_p} if sampling else {}
        processors = self._processors(tools)
        if processors:
            kwargs["logits_processor"] = processors
        pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
        with torch.inference_mode():
            out = model.generate(input_ids, attention_mask=torch.ones_like(input_ids),
                                 max_new_tokens=budget, do_sample=sampling, output_logits=True,
                                 return_dict_in_generate=True, pad_token_id=pad, **kwargs)
        new = out.sequences[0, len(ids):].tolist()
        logprobs = []
        for step, token in enumerate(new):
            logprobs.append(float(torch.log_softmax(out.logits[step][0].float(), -1)[token]))
        # The stop token stays in ids and log-probs: a policy gradient must learn to stop too.
        return new, logprobs
