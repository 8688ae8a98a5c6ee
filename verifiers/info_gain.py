"""Information-gain turn rewards (IGPO, ALGORITHMS.md §4).

belief v_k = the policy's mean log-prob (or its exp) of the ground-truth answer tokens,
teacher-forced after the conversation up to turn k plus a fixed answer prompt; v_0 comes from
the prompt alone. Turn t (0-based, T turns) gets IG_t = v_{t+1} − v_t for t < T−1; the last
turn gets the outcome reward. Beliefs come from `info_gain_backends` (transformers with a
shared-prefix KV cache, or vLLM prompt log-probs with prefix caching).

The §4.7 choices are `InfoGainConfig` fields; defaults follow the reference train.sh.
"""

from __future__ import annotations

import math
import string
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from agentrm.errors import InputError, PrerequisiteError
from agentrm.hashing import normalise_observation_text
from agentrm.protocols import ScoringContext
from agentrm.types import ExitStatus, Message, Score, Trajectory
from agentrm.verifiers.answer import alternatives, extract_answer
from agentrm.verifiers.base import ScorerBase

_TRUNCATED = {ExitStatus.TURN_LIMIT, ExitStatus.TOKEN_LIMIT, ExitStatus.TIME_LIMIT}


@dataclass
class InfoGainConfig:
    """Every choice that changes the values (hashed into Score.config_hash)."""

    form: str = "log_prob"  # "log_prob" (train.sh) | "prob" (exp of the mean log-prob; code default)
    normalise: str = "none"  # "none" raw IG (the igpo advantage estimator normalises) | "separate" | "joint"
    zero_epsilon: float = 1e-10  # an IG of exactly 0 is stored as this, so "≠ 0" tests keep it
    truncated: str = "outcome_only"  # turn/token/time-limited rollouts: "outcome_only" | "keep" (IG as usual)
    outcome: str = "reward"  # "reward" (trajectory.reward, else f1) | "f1" (word-set F1) | "em"
    format_penalty: float = -2.0  # outcome when no answer can be extracted
    answer_prompt: str = "I now have enough information to answer.\n<answer>"
    answer_suffix: str = "</answer>"
    denoise: bool = False  # normalise timestamps/ids in tool output before measuring beliefs
    std_eps: float = 1e-6  # z = (R − μ)/(σ + eps), σ = sqrt(mean((S−μ)²) + 1e-8)

    def validate(self) -> InfoGainConfig:
        checks = [("form", ("log_prob", "prob")), ("normalise", ("none", "separate", "joint")),
                  ("truncated", ("outcome_only", "keep")), ("outcome", ("reward", "f1", "em"))]
        for key, allowed in checks:
            if getattr(self, key) not in allowed:
                raise InputError(f"info-gain --{key} {getattr(self, key)!r}: choose from {', '.join(allowed)}")
        return self


# ---------------------------------------------------------------- contexts and probes

@dataclass
class Probe:
    """Token ids of one teacher-forced context and the positions of the ground-truth tokens.

    `ids` stops at the last ground-truth token: later tokens cannot change a causal model's
    log-probs of earlier ones, so they are never computed."""

    ids: list[int]
    gt: list[int]


def _plain(message: Message, denoise: bool) -> dict[str, str]:
    """A message any chat template renders: tool calls written into the text."""
    content = message.get("content") or ""
    if isinstance(content, list):
        content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
    for call in message.get("tool_calls") or []:
        fn = call.get("function") or {}
        args = fn.get("arguments", "")
        args = args if isinstance(args, str) else str(args)
        content += f"\n<tool_call>{{\"name\": \"{fn.get('name', '')}\", \"arguments\": {args}}}</tool_call>"
    if denoise and message.get("role") == "tool":
        content = normalise_observation_text(content)
    return {"role": message.get("role", "user"), "content": content}


def contexts(trajectory: Trajectory, denoise: bool = False) -> list[list[dict[str, str]]]:
    """context_k for k = 0..T−1: the conversation before turn k's action (k = 0: the prompt)."""
    out, history = [], []
    for turn in trajectory.turns:
        history = history + [_plain(m, denoise) for m in turn.observation]
        out.append(history)
        history = history + [_plain(turn.assistant, denoise)]
    return out


def render(tokenizer: Any, messages: list[dict[str, str]]) -> str:
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    # no template: ChatML, the format most small instruct models use
    return "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in messages) + "<|im_start|>assistant\n"


def build_probe(tokenizer: Any, messages: list[dict[str, str]], answer: str, cfg: InfoGainConfig) -> Probe:
    """Tokenise context + answer prompt + answer + suffix once; the answer's tokens are those
    whose character offsets overlap the answer's characters (§4.1)."""
    if not answer.strip():
        raise InputError("info-gain: the ground-truth answer is empty")
    if not getattr(tokenizer, "is_fast", False):
        raise PrerequisiteError("info-gain needs a fast tokenizer (offset mappings)")
    head = render(tokenizer, messages) + cfg.answer_prompt
    start, end = len(head), len(head) + len(answer)
    enc = tokenizer(head + answer + cfg.answer_suffix, add_special_tokens=False, return_offsets_mapping=True)
    gt = [i for i, (s, e) in enumerate(enc["offset_mapping"]) if e > s and s < end and e > start]
    if not gt or gt[0] == 0:
        raise InputError(f"info-gain: the answer {answer!r} has no tokens after a context")
    if gt != list(range(gt[0], gt[-1] + 1)):
        raise InputError(f"info-gain: the answer {answer!r} tokenised into a non-contiguous span")
    return Probe(list(enc["input_ids"][: gt[-1] + 1]), gt)


# ---------------------------------------------------------------- pure math

def word_set_f1(prediction: str, truth: str) -> float:
    """IGPO's outcome: F1 of word sets after lowercasing and punctuation → space (§4.2)."""
    def words(text: str) -> set[str]:
        table = str.maketrans({c: " " for c in string.punctuation})
        return set(text.lower().translate(table).split())
    pred, gold = words(prediction), words(truth)
    common = len(pred & gold)
    if not common:
        return 0.0
    p, r = common / len(pred), common / len(gold)
    return 2 * p * r / (p + r)


def beliefs_from_logprobs(mean_logprobs: Sequence[float], form: str) -> list[float]:
    return [float(v) if form == "log_prob" else math.exp(v) for v in mean_logprobs]


def turn_rewards(beliefs: Sequence[float], outcome: float, zero_epsilon: float = 1e-10) -> list[float]:
    """[IG_0, …, IG_{T−2}, r^O] with IG_t = v_{t+1} − v_t (len(beliefs) = T). NaN/inf IG → NaN
    (the reference skips them); an IG of exactly 0 → zero_epsilon."""
    out = []
    for before, after in zip(beliefs[:-1], beliefs[1:], strict=True):
        ig = after - before
        out.append(float("nan") if not math.isfinite(ig) else (zero_epsilon if ig == 0.0 else ig))
    return out + [float(outcome)] if beliefs else []


def _stats(values: list[float]) -> tuple[float, float]:
    """μ, σ with IGPO's rules (§4.4): |S| = 0 ⇒ (0, 1); |S| ≤ 1 ⇒ σ = 1; σ population + 1e-8."""
    if not values:
        return 0.0, 1.0
    mu = sum(values) / len(values)
    if len(values) == 1:
        return mu, 1.0
    return mu, math.sqrt(sum((v - mu) ** 2 for v in values) / len(values) + 1e-8)


def group_normalise(groups: dict[str, list[list[float]]], mode: str = "separate", eps: float = 1e-6
                    ) -> dict[str, list[list[float]]]:
    """z per turn for each group (group id → list of per-trajectory turn rewards, last = outcome).

    separate: outcome values and IG values normalised with their own (μ, σ); joint: one pool.
    NaN IG values stay NaN and are left out of the statistics."""
    out: dict[str, list[list[float]]] = {}
    for gid, trajs in groups.items():
        outcomes = [t[-1] for t in trajs if t]
        igs = [v for t in trajs for v in t[:-1] if math.isfinite(v)]
        if mode == "joint":
            mu_o, sd_o = mu_i, sd_i = _stats(outcomes + igs)
        else:
            (mu_o, sd_o), (mu_i, sd_i) = _stats(outcomes), _stats(igs)
        out[gid] = [[(v - mu_i) / (sd_i + eps) if math.isfinite(v) else float("nan") for v in t[:-1]]
                    + [(t[-1] - mu_o) / (sd_o + eps)] if t else [] for t in trajs]
    return out


# ---------------------------------------------------------------- the scorer

class InfoGainScorer(ScorerBase):
    """Turn-level IGPO rewards. details: kind ("ig" | "outcome"), beliefs, and z when a group
    normalisation is asked for. Trajectories without ground truth abstain (value None)."""

    name = "info-gain"
    version = "1"

    def __init__(self, model: str | None = None, backend: str = "transformers", device: str | None = None,
                 fast: bool = True, beliefs: Any = None, form: str = "log_prob", normalise: str = "none",
                 zero_epsilon: float = 1e-10, truncated: str = "outcome_only", outcome: str = "reward",
                 format_penalty: float = -2.0, answer_prompt: str | None = None, answer_suffix: str | None = None,
                 denoise: bool = False, std_eps: float = 1e-6):
        # Explicit keywords (not **options) so `agentrm score` can tell which flags apply here.
        defaults = InfoGainConfig()
        self.cfg = InfoGainConfig(form, normalise, float(zero_epsilon), truncated, outcome, float(format_penalty),
                                  defaults.answer_prompt if answer_prompt is None else answer_prompt,
                                  defaults.answer_suffix if answer_suffix is None else answer_suffix,
                                  bool(denoise), float(std_eps)).validate()
        self.model_name, self.backend_name, self.device, self.fast = model, backend, device, fast
        self._beliefs = beliefs  # a BeliefBackend (tests and benchmarks pass one in)

    def config(self) -> dict[str, Any]:
        return {**asdict(self.cfg), "model": str(self.model_name or "smollm2"), "backend": self.backend_name}

    @property
    def beliefs(self) -> Any:
        if self._beliefs is None:
            from agentrm.verifiers.info_gain_backends import make_backend
            self._beliefs = make_backend(self.backend_name, self.model_name, device=self.device, fast=self.fast)
        return self._beliefs

    def outcome(self, traj: Trajectory, truths: list[str]) -> float:
        if self.cfg.outcome == "reward" and traj.reward is not None:
            return float(traj.reward)
        answer = extract_answer(traj, strict=True)  # IGPO: tags or submit, else a format error
        if answer is None:
            return self.cfg.format_penalty
        if self.cfg.outcome == "em":
            return float(any(answer.strip().lower() == t.strip().lower() for t in truths))
        return max(word_set_f1(answer, t) for t in truths)

    def _skip(self, traj: Trajectory) -> Score | None:
        if (abstention := self.infrastructure_abstention(traj)) is not None:
            return abstention
        if traj.answer is None or not str(traj.answer).strip():
            return self.trajectory_score(traj.id, None, abstain="no ground truth (probe target)")
        if not traj.turns:
            return self.trajectory_score(traj.id, None, abstain="no turns")
        return None

    def score(self, trajectories: Sequence[Trajectory], context: ScoringContext | None = None) -> list[Score]:
        scores: list[Score] = []
        work: list[tuple[Trajectory, list[str]]] = []
        probes: list[list[Probe]] = []
        for traj in trajectories:
            skipped = self._skip(traj)
            if skipped is not None:
                scores.append(skipped)
                continue
            truths = alternatives(traj.answer)  # multi-answer data: the first alternative is the probe
            ctx = contexts(traj, self.cfg.denoise)
            outcome_only = self.cfg.truncated == "outcome_only" and traj.exit_status in _TRUNCATED
            tokenizer = self.beliefs.tokenizer
            try:
                probes.append([] if outcome_only else [build_probe(tokenizer, c, truths[0], self.cfg) for c in ctx])
            except InputError as exc:  # e.g. an empty ground truth: nothing to measure
                scores.append(self.trajectory_score(traj.id, None, abstain=str(exc)))
                continue
            work.append((traj, truths))
        try:
            mean_lps = self.beliefs.mean_logprobs(probes)
        except Exception as exc:  # noqa: BLE001 - a backend crash is infrastructure, not a 0 reward
            return scores + [self.trajectory_score(t.id, None, error=str(exc)[:300], failure="infrastructure")
                             for t, _ in work]
        rows = []
        for (traj, truths), lps in zip(work, mean_lps, strict=True):
            beliefs = beliefs_from_logprobs(lps, self.cfg.form)
            outcome = self.outcome(traj, truths)
            values = (turn_rewards(beliefs, outcome, self.cfg.zero_epsilon) if beliefs
                      else [float("nan")] * (len(traj.turns) - 1) + [outcome])
            rows.append((traj, beliefs, values))
        zs = self._normalise(rows)
        for traj, beliefs, values in rows:
            for t, value in enumerate(values):
                last = t == len(values) - 1
                details: dict[str, Any] = {"kind": "outcome" if last else "ig"}
                if beliefs:
                    details["belief_before"] = beliefs[t]
                    if not last:
                        details["belief_after"] = beliefs[t + 1]
                elif not last:
                    details["abstain"] = "truncated rollout: outcome only"
                if traj.id in zs:
                    details["z"] = zs[traj.id][t]
                scores.append(self.turn_score(traj.id, t, None if math.isnan(value) else value, **details))
        return scores

    def _normalise(self, rows: list) -> dict[str, list[float]]:
        if self.cfg.normalise == "none":
            return {}
        groups: dict[str, list[tuple[str, list[float]]]] = {}
        for traj, _, values in rows:
            groups.setdefault(traj.group_id, []).append((traj.id, values))
        out = {}
        for gid, members in groups.items():
            z = group_normalise({gid: [v for _, v in members]}, self.cfg.normalise, self.cfg.std_eps)[gid]
            out.update({tid: zt for (tid, _), zt in zip(members, z, strict=True)})
        return out


def make_scorer(**options: Any) -> InfoGainScorer:
    return InfoGainScorer(**options)
