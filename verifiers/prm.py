"""Process reward models as a Scorer: one score per turn, one forward pass per trajectory.

    scorer = make_scorer(model="path/to/prm", style="token-cls")   # or "tag", "value", "judge"
    rows = scorer.score(trajectories)   # per-turn Score rows + one aggregated trajectory row

Four read-out conventions (REWARD_MODELS.md §1): token-classification heads (Qwen2.5-Math-PRM),
LM tag tokens (Math-Shepherd), value heads (Skywork-o1-PRM) and generative judges (any causal LM
asked "is step k right?", p(Yes)/(p(Yes)+p(No)); works with the embedded SmolLM2). Formatting
is in prm_format, the transformers backend in prm_hf, the vLLM backend in prm_vllm.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from agentrm.errors import InputError
from agentrm.protocols import ScoringContext
from agentrm.rewards.aggregate import AGGREGATIONS, aggregate
from agentrm.types import FailureKind, Score, Trajectory
from agentrm.verifiers.base import ScorerBase
from agentrm.verifiers.prm_format import StepFormatter, Template

log = logging.getLogger("agentrm.verifiers.prm")

STYLES = ("token-cls", "tag", "value", "judge")
BACKENDS = ("transformers", "vllm")
KIND = {"token-cls": "class-prob", "tag": "token-logit-prob", "value": "sigmoid-value",
        "judge": "generative"}
AGENT_SYSTEM = "Judge each step of this agent's work on the task."
DEFAULTS: dict[str, dict[str, Any]] = {
    "token-cls": {"separator": "<extra_0>", "template": "chat", "system": AGENT_SYSTEM},
    "tag": {"separator": "ки", "good": "+", "bad": "-", "template": "plain",
            "step_format": "Step {k}: {text} "},
    "value": {"separator": "\n", "template": "plain"},
    "judge": {"good": "Yes", "bad": "No", "template": "chat"},
}


@dataclass
class PRMConfig:
    """Everything that changes a PRM's scores (hashed into Score.config_hash)."""

    model: str = "smollm2"
    style: str = "judge"
    template: str | None = None      # chat | plain; None = the style's default
    system: str | None = None        # chat system prompt
    step_format: str | None = None   # e.g. "Step {k}: {text} "
    separator: str | None = None     # step separator / tag token (one token)
    good: str | None = None          # tag/judge: the "correct" token
    bad: str | None = None           # tag/judge: the "wrong" token
    max_length: int | None = None    # None = the model's context size
    aggregate: str = "min"
    temperature: float = 0.1         # minform soft-min temperature

    def resolved(self) -> PRMConfig:
        if self.style not in STYLES:
            raise InputError(f"unknown PRM style {self.style!r} (--style): choose from {', '.join(STYLES)}")
        if self.aggregate not in AGGREGATIONS:
            raise InputError(f"unknown aggregation {self.aggregate!r} (--aggregate): "
                             f"choose from {', '.join(AGGREGATIONS)}")
        if self.max_length is not None and self.max_length < 8:
            raise InputError(f"--max-length {self.max_length}: must be at least 8")
        values = dict(DEFAULTS[self.style])
        values.update({k: v for k, v in vars(self).items() if v is not None})
        values.setdefault("step_format", "{text}")
        if self.style == "judge" and values.get("template") == "plain":  # "Answer: Yes"
            values["good"] = self.good or " Yes"
            values["bad"] = self.bad or " No"
        return PRMConfig(**{k: values.get(k) for k in vars(self)})


def token_id(tokenizer: Any, text: str, flag: str, model: str) -> int:
    """The single token id of `text`; a clear error when it is several tokens (REWARD_MODELS §1.6)."""
    direct = tokenizer.convert_tokens_to_ids(text)
    if isinstance(direct, int) and direct != tokenizer.unk_token_id and direct >= 0:
        return direct
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    if len(ids) != 1:
        raise InputError(f"{flag} {text!r} is {len(ids)} tokens in the tokenizer of {model}: it must be "
                         "one token (add it as a special token or choose another)")
    return ids[0]


class PRMScorer(ScorerBase):
    """A PRM of one style on one backend. The model loads on the first `score` call."""

    name = "prm"
    version = "1"

    def __init__(self, config: PRMConfig, backend: str = "transformers", device: str | None = None,
                 batch_size: int = 8, name: str | None = None):
        if backend not in BACKENDS:
            raise InputError(f"unknown backend {backend!r} (--backend): choose transformers or vllm")
        if batch_size < 1:
            raise InputError(f"--batch-size {batch_size}: must be at least 1")
        self.cfg = config.resolved()
        self.backend_name, self.device, self.batch_size = backend, device, batch_size
        self.name = name or self.name
        self._backend: Any = None
        self._formatter: StepFormatter | None = None

    def config(self) -> dict[str, Any]:
        from agentrm.models import resolve_model

        return {**vars(self.cfg), "model": str(resolve_model(self.cfg.model))}

    def load(self) -> None:
        """Load tokenizer and model, check the separator/tag tokens, build the formatter."""
        if self._backend is not None:
            return
        from agentrm.models import load_tokenizer

        cfg = self.cfg
        tokenizer = load_tokenizer(cfg.model)
        sep = None if cfg.style == "judge" else token_id(tokenizer, cfg.separator, "--separator", cfg.model)
        pair = None
        if cfg.style in ("tag", "judge"):
            pair = (token_id(tokenizer, cfg.good, "--good", cfg.model),
                    token_id(tokenizer, cfg.bad, "--bad", cfg.model))
        if self.backend_name == "vllm":
            from agentrm.verifiers.prm_vllm import VLLMBackend
            self._backend = VLLMBackend(cfg.model, cfg.style, sep, pair)
        else:
            from agentrm.verifiers.prm_hf import HFBackend
            self._backend = HFBackend(cfg.model, cfg.style, pair, self.device)
        max_length = cfg.max_length or self._backend.context_size
        template = Template(cfg.template, cfg.system, cfg.step_format)
        # an ordinary token as separator (value style's "\n") stays in the text: positions are known
        self._formatter = StepFormatter(tokenizer, template, sep, max_length, scrub=cfg.style != "value")

    def score(self, trajectories: Sequence[Trajectory], context: ScoringContext | None = None) -> list[Score]:
        self.load()
        trajs = list(trajectories)
        if self.cfg.style == "judge":
            encs = [self._formatter.encode_judge(t) for t in trajs]
            reads = self._backend.read_judge(encs, self.batch_size)
        else:
            encs = [self._formatter.encode(t) for t in trajs]
            reads = self._backend.read_steps(encs, self.batch_size)
        out: list[Score] = []
        for traj, enc, steps in zip(trajs, encs, reads, strict=False):
            out.extend(self._rows(traj, enc, steps))
        return out

    def _rows(self, traj: Trajectory, enc: Any, steps: list) -> list[Score]:
        common: dict[str, Any] = {"kind": KIND[self.cfg.style], "backend": self.backend_name}
        if enc.truncated_tokens:
            common["truncated_tokens"] = enc.truncated_tokens
        rows = []
        for k, (turn, read) in enumerate(zip(traj.turns, steps, strict=False)):
            if read is None:
                rows.append(self.turn_score(traj.id, turn.index, None, step=k, reason="truncated", **common))
            else:
                rows.append(self.turn_score(traj.id, turn.index, read[0], step=k, raw=read[1], **common))
        values = [r.value for r in rows]
        total = aggregate(values, self.cfg.aggregate, self.cfg.temperature)
        extra: dict[str, Any] = {"aggregate": self.cfg.aggregate, "steps": len(values),
                                 "scored": sum(v is not None for v in values)}
        if getattr(enc, "scrubbed", 0):
            extra["scrubbed_separators"] = enc.scrubbed
        if not traj.turns:
            extra["reason"] = "no steps"
        if traj.failure_kind == FailureKind.INFRASTRUCTURE:  # the environment failed, not the
            total = None                                      # agent: no trajectory verdict
            extra["reason"] = f"infrastructure failure ({traj.exit_status.value})"
        rows.append(self.trajectory_score(traj.id, total, **common, **extra))
        return rows


def make_scorer(model: str = "smollm2", style: str = "judge", backend: str = "transformers",
                device: str | None = None, batch_size: int = 8, name: str | None = None,
                **options: Any) -> PRMScorer:
    """Registry factory (`agentrm score --scorer prm`); options are PRMConfig fields."""
    unknown = set(options) - set(PRMConfig.__dataclass_fields__)
    if unknown:
        raise InputError(f"unknown PRM option(s): {', '.join(sorted(unknown))}")
    return PRMScorer(PRMConfig(model=str(model), style=style, **options), backend, device,
                     batch_size, name)
