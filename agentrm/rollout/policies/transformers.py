"""Local generation with transformers (CPU, or CUDA when present). The default policy runs the
embedded SmolLM2 (`transformers:smollm2`), so a rollout needs no endpoint at all."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from agentrm.protocols import PolicyOutput
from agentrm.rollout.policies.base import ContextLimitExceeded, ModelError
from agentrm.rollout.policies.chat import prompt_ids, render_prompt
from agentrm.rollout.policies.grammar import ACTION_FORMATS, TOOL_CALL, HFConstraint, action_grammar
from agentrm.rollout.policies.parsing import assistant_message
from agentrm.rollout.policies.tokens import PromptChain, common_prefix, tokenizer_identity
from agentrm.types import Message

log = logging.getLogger("agentrm.rollout.policies.transformers")

BATCH_LINGER_S = 0.05  # a batch waits this long for more callers while they keep arriving
BATCH_LINGER_MAX_S = 0.25  # …but never longer than this in all
MAX_PADDING = 1.25  # a batch's padded tokens (rows × longest prompt) per real prompt token
MIN_SHARED_PREFIX = 32  # shorter common prefixes are prefilled with each row


@dataclass(eq=False)
class _Request:
    """One `act` call waiting for its completion; `done` is set by whichever thread ran it."""

    ids: list[int]
    tools: Sequence[dict[str, Any]]
    budget: int
    done: threading.Event = field(default_factory=threading.Event)
    new_ids: list[int] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)
    error: BaseException | None = None


class TransformersPolicy:
    """Sampling from a causal LM; log-probs are those of the unmodified model distribution
    (temperature 1, before top-p and any grammar mask), which is what importance ratios in RL
    need. `constrain=True` decodes under the action grammar (grammar.py); `action_format`
    is tool_call (default) or bash_block (mini-swe-agent's one fenced block per reply).

    Calls from concurrent rollouts (`--concurrency`) are decoded together, up to `max_batch`
    rows per `generate`, their common prefix (system prompt and tools) prefilled once: on a
    CPU one decoding step of 8 rows costs about twice one row's, so a group's rollouts share
    the model instead of queueing for it. `checkpoint` applies an `agentrm train` iteration."""

    def __init__(self, model: str | None = None, *, device: str | None = None,
                 max_new_tokens: int = 256, temperature: float = 0.7, top_p: float = 1.0,
                 max_context: int | None = None, seed: int | None = None, tools_mode: str = "auto",
                 constrain: bool = False, action_format: str = TOOL_CALL, max_batch: int = 16,
                 checkpoint: str | None = None, name: str | None = None):
        if action_format not in ACTION_FORMATS:
            raise ValueError(f"action_format={action_format!r}: choose {' or '.join(ACTION_FORMATS)}")
        self.model_ref = model or "smollm2"
        self.name = name or f"transformers:{self.model_ref}"
        self.device, self.max_new_tokens = device, max_new_tokens
        self.temperature, self.top_p, self.seed = temperature, top_p, seed
        self.max_context, self.tools_mode = max_context, tools_mode
        self.constrain, self.action_format = constrain, action_format
        if int(max_batch) < 1:
            raise ValueError(f"max_batch={max_batch}: must be at least 1")
        self.max_batch = int(max_batch)
        self.checkpoint = str(checkpoint) if checkpoint else None  # an `agentrm train` iteration
        if self.checkpoint:
            from agentrm.models import checkpoint_files

            checkpoint_files(self.checkpoint)  # a wrong path fails now, not at the first turn
        self._model: Any = None
        self._tokenizer: Any = None
        self._constraint: HFConstraint | None = None
        self._chain = PromptChain()
        self._lock = threading.Lock()  # one forward pass at a time: the model is shared by threads
        self._pending: list[_Request] = []  # guarded by _queue
        self._queue = threading.Condition()

    def _load(self) -> None:
        if self._model is None:
            from agentrm.models import load_causal_lm

            model, self._tokenizer = load_causal_lm(self.model_ref, device=self.device)
            if self.checkpoint:
                from agentrm.models import apply_checkpoint

                model = apply_checkpoint(model, self.checkpoint)
            self._model = model.eval()
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

    def sync(self) -> None:
        """Nothing to do: `act` samples from the very model the trainer updates in place."""

    def act(self, messages: Sequence[Message], tools: Sequence[dict[str, Any]]) -> PolicyOutput:
        if self._model is None:
            with self._lock:
                self._load()
        prompt = render_prompt(self._tokenizer, messages, tools, self.tools_mode, self.action_format)
        ids = prompt_ids(self._tokenizer, prompt)
        if len(ids) + 1 > int(self.max_context or 0):
            raise ContextLimitExceeded(f"prompt of {len(ids)} tokens exceeds the context "
                                       f"of {self.max_context}")
        request = _Request(ids, tools, min(self.max_new_tokens, int(self.max_context or 0) - len(ids)))
        self._decode(request)
        if request.error is not None:
            exc = request.error
            raise ModelError(f"{self.name}: generation failed: {type(exc).__name__}: {exc}") from exc
        new_ids, logprobs = request.new_ids, request.logprobs
        text = self._tokenizer.decode(new_ids, skip_special_tokens=True)
        tokens = self._chain.trace(messages, ids, new_ids,
                                   *tokenizer_identity(self._tokenizer, str(self.model_ref)))
        return PolicyOutput(assistant_message(text, self.action_format), prompt_tokens=len(ids),
                            completion_tokens=len(new_ids), logprobs=logprobs,
                            raw={"text": text, "token_ids": new_ids}, tokens=tokens)

    def _decode(self, request: _Request) -> None:
        """Queue the request; whichever waiting thread holds the model decodes a batch of the
        queue (its own request among them, oldest first) until this request is done."""
        with self._queue:
            self._pending.append(request)
            self._queue.notify_all()
        while not request.done.is_set():
            with self._lock:
                if request.done.is_set():
                    break
                batch = self._take_batch()
                if batch:
                    self._run_batch(batch)

    def _take_batch(self) -> list[_Request]:
        """Up to max_batch queued requests of one token budget, after a short linger while more
        callers keep arriving (the group's other rollouts are usually a tool call away)."""
        with self._queue:
            deadline = time.monotonic() + BATCH_LINGER_MAX_S
            while 1 < self.max_batch and len(self._pending) < self.max_batch:
                before = len(self._pending)
                left = deadline - time.monotonic()
                if left <= 0 or not self._queue.wait(min(BATCH_LINGER_S, left)) \
                        or len(self._pending) == before:
                    break
            batch = pick_batch(self._pending, self.max_batch)
            taken = set(map(id, batch))
            self._pending = [r for r in self._pending if id(r) not in taken]
            return batch

    def _run_batch(self, batch: list[_Request]) -> None:
        try:
            results = self._generate_batch([r.ids for r in batch], [r.tools for r in batch],
                                           batch[0].budget)
        except Exception as exc:  # noqa: BLE001 - any engine failure is each caller's model error
            for request in batch:
                request.error = exc
                request.done.set()
            return
        for request, (new_ids, logprobs) in zip(batch, results, strict=True):
            request.new_ids, request.logprobs = new_ids, logprobs
            request.done.set()

    def _processors(self, tools_per_row: Sequence[Sequence[dict[str, Any]]]) -> list:
        if not self.constrain:
            return []
        if self._constraint is None:
            vocab = int(getattr(self._model.config, "vocab_size", 0) or len(self._tokenizer))
            self._constraint = HFConstraint(self._tokenizer, vocab)
        grammars = [action_grammar(self.action_format, tools) for tools in tools_per_row]
        return [self._constraint.processor(grammars)]

    def _generate_batch(self, prompts: Sequence[list[int]], tools: Sequence[Sequence[dict[str, Any]]],
                        budget: int) -> list[tuple[list[int], list[float]]]:
        """Sample each prompt's completion in one `generate`; per row, the new ids up to and
        including the first stop token, and each one's log-prob. The rows' common prefix (the
        system prompt and tool list, most of a first turn) is prefilled once and shared."""
        import torch

        model, tok = self._model, self._tokenizer
        pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
        shared = min(common_prefix_of(prompts), min(len(p) for p in prompts) - 1)
        kwargs: dict[str, Any] = {}
        if len(prompts) > 1 and shared >= MIN_SHARED_PREFIX:
            # [prefix][padding][row's own tokens]: the padding is masked, and `generate` numbers
            # positions by the mask, so each row sees exactly its unpadded sequence.
            width = max(len(p) for p in prompts) - shared
            rows = [(p[:shared], [pad] * (width - len(p) + shared), p[shared:]) for p in prompts]
            input_ids = torch.tensor([a + b + c for a, b, c in rows], device=model.device)
            attention = torch.tensor([[1] * len(a) + [0] * len(b) + [1] * len(c) for a, b, c in rows],
                                     device=model.device)
            with torch.inference_mode():
                cache = model(input_ids=input_ids[:1, :shared], use_cache=True).past_key_values
            cache.batch_repeat_interleave(len(prompts))
            kwargs["past_key_values"] = cache
        else:
            width = max(len(p) for p in prompts)
            input_ids = torch.tensor([[pad] * (width - len(p)) + p for p in prompts], device=model.device)
            attention = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts],
                                     device=model.device)
        if self.temperature > 0:
            kwargs.update(temperature=self.temperature, top_p=self.top_p)
        processors = self._processors(tools)
        if processors:
            kwargs["logits_processor"] = processors
        start = input_ids.shape[1]
        with torch.inference_mode():
            out = model.generate(input_ids, attention_mask=attention, max_new_tokens=budget,
                                 do_sample=self.temperature > 0, output_logits=True,
                                 return_dict_in_generate=True, pad_token_id=pad, **kwargs)
        stops = _stop_ids(model, tok)
        results = []
        for row, new in enumerate(out.sequences[:, start:].tolist()):
            end = next((i + 1 for i, t in enumerate(new) if t in stops), len(new))
            new = new[:end]  # past its stop token a finished row holds padding
            steps = torch.stack([out.logits[i][row] for i in range(len(new))]) if new else None
            logprobs = ([] if steps is None else
                        torch.log_softmax(steps.float(), -1)[torch.arange(len(new)), new].tolist())
            # The stop token stays in ids and log-probs: a policy gradient must learn to stop too.
            results.append((new, [float(x) for x in logprobs]))
        return results


def pick_batch(pending: Sequence[_Request], max_batch: int) -> list[_Request]:
    """The oldest request and up to max_batch - 1 others of its token budget, closest in
    prompt length first, while the padded batch stays within MAX_PADDING of its real tokens:
    one long prompt (a big tool output) must not make every row in the batch as long."""
    if not pending:
        return []
    first = pending[0]
    others = sorted((r for r in pending[1:] if r.budget == first.budget),
                    key=lambda r: abs(len(r.ids) - len(first.ids)))
    batch, longest, total = [first], len(first.ids), len(first.ids)
    for r in others:
        if len(batch) >= max_batch:
            break
        wider = max(longest, len(r.ids))
        if wider * (len(batch) + 1) <= MAX_PADDING * (total + len(r.ids)):
            batch.append(r)
            longest, total = wider, total + len(r.ids)
    return batch


def common_prefix_of(prompts: Sequence[Sequence[int]]) -> int:
    """The length of the prefix all prompts share."""
    shared = len(prompts[0])
    for p in prompts[1:]:
        shared = min(shared, common_prefix(prompts[0][:shared], p))
    return shared


def _stop_ids(model: Any, tokenizer: Any) -> set[int]:
    """The ids `generate` stops a row at (the generation config's, else the tokenizer's EOS)."""
    eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    if eos is None:
        eos = tokenizer.eos_token_id
    return set(eos if isinstance(eos, list) else [eos]) - {None}
