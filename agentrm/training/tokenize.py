"""Turn rows in the policy's own tokens: prompt = everything the model saw before the turn,
response = the assistant turn followed by the environment's reply; response_mask is 1 on model
tokens and 0 on tool/observation tokens.

A turn that recorded its tokens (`Turn.tokens`, from the rollout policy) is used verbatim: the
prompt ids the policy was given, the completion ids it sampled (all mask 1) and its log-probs.
The environment's reply then appears, as the model saw it, in the next turn's prompt (the chat
template usually re-renders the assistant message with ids other than the sampled ones, so
there is no exact place to cut it from). Only turns without ids (imported text) are
re-tokenised, with the reply appended (mask 0), and their rows say so
(`token_source = "retokenized"`): re-tokenising text need not give the sampled ids.

Re-tokenisation goes through the runtime's prompt code (agentrm.rollout.policies.chat/parsing)
so the prompt is rendered as the policy rendered it, tools in the system prompt included.
Pieces are tokenised separately and concatenated: generation started right after the prompt
tokens, so joint re-tokenisation across the boundary would not be what the model produced.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from agentrm.types import Message, Trajectory, full_prompts

log = logging.getLogger("agentrm.training")


@dataclass
class TurnTokens:
    trajectory_id: str
    group_id: str
    turn_index: int
    prompt_ids: list[int]
    response_ids: list[int]
    response_mask: list[int]  # 1 = model token, 0 = tool / observation token
    valid: bool = True
    source: str = "sampled"  # "sampled" (stored ids, verbatim) | "retokenized" (text only)
    logprobs: list[float] | None = None  # per response token (0.0 on environment tokens)


def default_tools(trajectory: Trajectory) -> list[dict[str, Any]]:
    """The tool schemas the rollout offered: the trajectory's own record, else the runtime's."""
    tools = trajectory.metadata.get("tools") if isinstance(trajectory.metadata, dict) else None
    if tools:
        return list(tools)
    from agentrm.rollout.tools import TOOL_SCHEMAS

    return list(TOOL_SCHEMAS)


class ChatRenderer:
    """Renders message lists to text the way the rollout policy did (native tools or text)."""

    def __init__(self, tokenizer: Any, tools_mode: str = "auto"):
        from agentrm.rollout.policies.chat import native_tools

        self.tokenizer = tokenizer
        self.native = native_tools(tokenizer) if tools_mode == "auto" else tools_mode == "native"

    def render(self, messages: Sequence[Message], tools: Sequence[dict], generation: bool) -> str:
        from agentrm.rollout.policies.parsing import to_template_messages, to_text_messages

        msgs = list(messages)
        if self.native:
            return self.tokenizer.apply_chat_template(to_template_messages(msgs), tools=list(tools),
                                                      add_generation_prompt=generation, tokenize=False)
        return self.tokenizer.apply_chat_template(to_text_messages(msgs, list(tools)),
                                                  add_generation_prompt=generation, tokenize=False)

    def ids(self, text: str) -> list[int]:
        # The template already wrote BOS and role markers; adding special tokens would double them.
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"]) if text else []


def _after(prefix: str, full: str, what: str, where: str) -> str:
    """full minus prefix; templates that rewrite history break the prefix property, in which
    case the split falls back to the longest common prefix (logged)."""
    if full.startswith(prefix):
        return full[len(prefix):]
    cut = len(os.path.commonprefix([prefix, full]))
    log.warning("%s: chat template is not prefix-stable at the %s; splitting at char %d", where, what, cut)
    return full[cut:]


def _sampled_turns(traj: Trajectory) -> list[TurnTokens | None]:
    """Rows from stored ids (prompt as given, response = the sampled completion, all model
    tokens); None where a turn has no usable ids."""
    out: list[TurnTokens | None] = []
    for turn, prompt in zip(traj.turns, full_prompts(traj.turns), strict=True):
        if prompt is None or turn.tokens is None:
            out.append(None)
            continue
        completion = list(turn.tokens.completion_ids)
        logprobs = turn.logprobs if turn.logprobs and len(turn.logprobs) == len(completion) else None
        out.append(TurnTokens(traj.id, traj.group_id, turn.index, prompt, completion,
                              [1] * len(completion), bool(turn.valid), "sampled",
                              None if logprobs is None else [float(x) for x in logprobs]))
    return out


def tokenize_trajectory(traj: Trajectory, renderer: ChatRenderer | None,
                        tools: Sequence[dict] | None = None) -> list[TurnTokens]:
    """One TurnTokens per turn of `traj`: stored ids verbatim, re-tokenised text otherwise
    (that needs `renderer`)."""
    sampled = _sampled_turns(traj)
    if all(t is not None for t in sampled):
        return sampled  # type: ignore[return-value]
    if renderer is None:
        raise ValueError(f"trajectory {traj.id} has turns without token ids; give a tokenizer")
    text = _retokenize(traj, renderer, tools)
    return [s if s is not None else t for s, t in zip(sampled, text, strict=True)]


def _retokenize(traj: Trajectory, renderer: ChatRenderer,
                tools: Sequence[dict] | None = None) -> list[TurnTokens]:
    tools = default_tools(traj) if tools is None else tools
    history: list[Message] = []
    out = []
    for k, turn in enumerate(traj.turns):
        history.extend(turn.observation)
        env = traj.turns[k + 1].observation if k + 1 < len(traj.turns) else traj.tail
        prompt = renderer.render(history, tools, generation=True)
        with_action = renderer.render(history + [turn.assistant], tools, generation=False)
        with_env = renderer.render(history + [turn.assistant] + list(env), tools, generation=False) if env else with_action
        where = f"trajectory {traj.id} turn {turn.index}"
        action_ids = renderer.ids(_after(prompt, with_action, "assistant turn", where))
        env_ids = renderer.ids(_after(with_action, with_env, "tool reply", where))
        out.append(TurnTokens(traj.id, traj.group_id, turn.index, renderer.ids(prompt),
                              action_ids + env_ids, [1] * len(action_ids) + [0] * len(env_ids),
                              bool(turn.valid), "retokenized"))
        history.append(turn.assistant)
    return out
