"""Agent trajectory → PRM input token ids, with the position of every step's read-out.

A step is one assistant turn (its text and tool calls) plus the observation it received (the
messages up to the next assistant turn, or the trajectory's tail). The first turn's
observation (system prompt, task) is the context every step is judged against.

Inputs are tokenised piecewise — prefix, then each step followed by the separator id — so the
read-out positions are known exactly and the separator is always one token (the Skywork input
builder does the same). Separator ids that appear inside step text (e.g. a tool output that
contains `<extra_0>`) are removed, so a trajectory cannot forge extra steps; the count is kept.
Too-long inputs lose tokens from the left (the latest context is kept); steps whose read-out
fell off are reported as None.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from agentrm.errors import InputError
from agentrm.types import Message, Trajectory

PLACEHOLDER = "\ue000STEPS\ue000"
TEMPLATES = ("chat", "plain")
JUDGE_INTRO = ("You review the work of an AI agent that uses tools. Read the task and the steps "
               "so far, then say whether the last step is correct and useful.\n\n")
JUDGE_QUESTION = "\nIs step {k} correct and useful for the task? Answer Yes or No."


def message_text(message: Message) -> str:
    """Message content as text: string content, text parts of a list, then tool calls."""
    content = message.get("content")
    if isinstance(content, list):
        content = "\n".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    parts = [content] if isinstance(content, str) and content else []
    for call in message.get("tool_calls") or []:
        fn = call.get("function") or {}
        args = fn.get("arguments", "")
        args = args if isinstance(args, str) else json.dumps(args, sort_keys=True)
        parts.append(f"[call {fn.get('name', '?')}] {args}")
    return "\n".join(parts)


def _observation_text(messages: list[Message]) -> str:
    return "\n".join(f"[{m.get('role', '?')}] {message_text(m)}" for m in messages)


def context_text(traj: Trajectory) -> str:
    """What the steps are judged against: the first turn's observation (system prompt, task)."""
    observation = traj.turns[0].observation if traj.turns else traj.tail
    return "\n".join(f"{m.get('role', '?')}: {message_text(m)}" for m in observation)


def step_texts(traj: Trajectory) -> list[str]:
    """One text per turn: the action, then what the environment answered."""
    out = []
    for k, turn in enumerate(traj.turns):
        received = traj.turns[k + 1].observation if k + 1 < len(traj.turns) else traj.tail
        text = message_text(turn.assistant)
        if received:
            text = f"{text}\n{_observation_text(received)}"
        out.append(text)
    return out


@dataclass
class Template:
    """How steps are laid out for one model family.

    kind "chat": the tokenizer's chat template, the context as the user message and the steps as
    the assistant message (Qwen2.5-Math-PRM); kind "plain": context, newline, steps.
    `step_format` may use {k} (1-based step number) and {text}.
    """

    kind: str = "chat"
    system: str | None = None
    step_format: str = "{text}"

    def __post_init__(self) -> None:
        if self.kind not in TEMPLATES:
            raise InputError(f"unknown template {self.kind!r} (--template): choose chat or plain")


@dataclass
class Encoded:
    """One trajectory's input: ids, and per step the position to read (None = truncated away)."""

    trajectory_id: str
    ids: list[int]
    read_at: list[int | None]
    truncated_tokens: int = 0
    scrubbed: int = 0  # separator ids removed from step text


@dataclass
class JudgeEncoded:
    """Judge input: a shared stream (prefix + steps) and one question per step.

    Prompt k = stream[:step_end[k]] + questions[k]; the verdict is read after its last token.
    """

    trajectory_id: str
    stream: list[int]
    step_end: list[int | None]
    questions: list[list[int]] = field(default_factory=list)
    truncated_tokens: int = 0


def _split_chat(tokenizer: Any, messages: list[Message], generation_prompt: bool) -> tuple[str, str]:
    if not getattr(tokenizer, "chat_template", None):
        raise InputError("--template chat: the tokenizer has no chat template (use --template plain)")
    text = tokenizer.apply_chat_template(messages, tokenize=False,
                                         add_generation_prompt=generation_prompt)
    if text.count(PLACEHOLDER) != 1:
        raise InputError("--template chat: the chat template does not render message content verbatim")
    prefix, suffix = text.split(PLACEHOLDER)
    return prefix, suffix


def _ids(tokenizer: Any, text: str, special: bool = False) -> list[int]:
    return list(tokenizer(text, add_special_tokens=special)["input_ids"]) if text else []


class StepFormatter:
    """Builds Encoded / JudgeEncoded inputs for one tokenizer, template and separator."""

    def __init__(self, tokenizer: Any, template: Template, separator_id: int | None,
                 max_length: int | None = None, scrub: bool = True):
        self.tokenizer = tokenizer
        self.scrub = scrub and separator_id is not None
        self.template = template
        self.separator_id = separator_id
        self.max_length = max_length

    def _steps(self, traj: Trajectory) -> list[list[int]]:
        fmt = self.template.step_format
        return [_ids(self.tokenizer, fmt.format(k=k + 1, text=text))
                for k, text in enumerate(step_texts(traj))]

    def _head_tail(self, context: str, generation_prompt: bool) -> tuple[list[int], list[int]]:
        if self.template.kind == "plain":
            return _ids(self.tokenizer, context + "\n", special=True), []
        messages = [{"role": "system", "content": self.template.system}] if self.template.system else []
        if generation_prompt:  # judge: everything goes in the user turn
            messages.append({"role": "user", "content": PLACEHOLDER})
            prefix, suffix = _split_chat(self.tokenizer, messages, True)
            return _ids(self.tokenizer, prefix + context), _ids(self.tokenizer, suffix)
        messages += [{"role": "user", "content": context}, {"role": "assistant", "content": PLACEHOLDER}]
        prefix, suffix = _split_chat(self.tokenizer, messages, False)
        return _ids(self.tokenizer, prefix), _ids(self.tokenizer, suffix)

    def encode(self, traj: Trajectory) -> Encoded:
        """ids = prefix + Σ_k (step_k + [sep]); read at each separator. The template's suffix
        (e.g. `<|im_end|>`) is not sent: in a causal model it cannot change any read-out."""
        ids, _ = self._head_tail(context_text(traj), generation_prompt=False)
        read_at: list[int | None] = []
        scrubbed = 0
        for step in self._steps(traj):
            clean = [t for t in step if t != self.separator_id] if self.scrub else step
            scrubbed += len(step) - len(clean)
            ids.extend(clean)
            read_at.append(len(ids))
            ids.append(self.separator_id)
        enc = Encoded(traj.id, ids, read_at, 0, scrubbed)
        return self._truncate(enc)

    def _truncate(self, enc: Encoded) -> Encoded:
        cut = len(enc.ids) - self.max_length if self.max_length else 0
        if cut <= 0:
            return enc
        enc.ids = enc.ids[cut:]
        enc.read_at = [p - cut if p is not None and p >= cut else None for p in enc.read_at]
        enc.truncated_tokens = cut
        return enc

    def encode_judge(self, traj: Trajectory) -> JudgeEncoded:
        """Stream = prefix(with task) + steps; question k = "is step k right?" + chat suffix."""
        head, tail = self._head_tail(JUDGE_INTRO + context_text(traj) + "\n\nSteps so far:\n",
                                     generation_prompt=True)
        stream = list(head)
        ends: list[int | None] = []
        questions = []
        for k, text in enumerate(step_texts(traj)):
            stream.extend(_ids(self.tokenizer, f"\nStep {k + 1}:\n{text}\n"))
            ends.append(len(stream))
            question = _ids(self.tokenizer, JUDGE_QUESTION.format(k=k + 1))
            questions.append(question + (tail if self.template.kind == "chat" else
                                         _ids(self.tokenizer, "\nAnswer:")))
        enc = JudgeEncoded(traj.id, stream, ends, questions)
        longest = max((len(q) for q in questions), default=0)
        cut = len(stream) + longest - self.max_length if self.max_length else 0
        if cut > 0:  # every prompt must fit: drop the oldest stream tokens
            enc.stream = stream[cut:]
            enc.step_end = [e - cut if e is not None and e > cut else None for e in ends]
            enc.truncated_tokens = cut
        return enc
