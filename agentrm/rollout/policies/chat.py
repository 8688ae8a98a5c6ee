"""Prompt rendering shared by the local backends (transformers, in-process vLLM)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from agentrm.rollout.policies.parsing import to_template_messages, to_text_messages
from agentrm.types import Message


def native_tools(tokenizer: Any) -> bool:
    """Does the tokenizer's chat template render a tool list itself (Qwen, Llama 3.1, Hermes)?"""
    template = getattr(tokenizer, "chat_template", None) or ""
    if isinstance(template, dict):
        template = " ".join(template.values())
    return "tools" in template


def render_prompt(tokenizer: Any, messages: Sequence[Message], tools: Sequence[dict[str, Any]],
                  tools_mode: str = "auto", action_format: str = "tool_call") -> str:
    """The prompt text up to the assistant's turn. tools_mode: auto | native | text;
    action_format bash_block (mini-swe-agent's) always renders as text."""
    native = native_tools(tokenizer) if tools_mode == "auto" else tools_mode == "native"
    if native and action_format == "tool_call":
        return tokenizer.apply_chat_template(to_template_messages(list(messages)), tools=list(tools),
                                             add_generation_prompt=True, tokenize=False)
    return tokenizer.apply_chat_template(to_text_messages(list(messages), list(tools), action_format),
                                         add_generation_prompt=True, tokenize=False)


def prompt_ids(tokenizer: Any, prompt: str) -> list[int]:
    # The template already wrote BOS and role markers; adding special tokens would double them.
    return list(tokenizer(prompt, add_special_tokens=False)["input_ids"])
