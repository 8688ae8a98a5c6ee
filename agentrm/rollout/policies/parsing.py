"""Tool calls written as text, for models without native function calling (SmolLM2, a random
tiny test model, an endpoint started without a tool parser).

Accepted shapes, the ones small instruct models actually produce:
  <tool_call>{"name": "bash", "arguments": {"command": "ls"}}</tool_call>   (Hermes/Qwen style)
  {"name": "bash", "arguments": {...}}        (the whole reply is one JSON object)
  ```json {"name": ...} ```                   (the same, fenced)
A `<tool_call>` block whose JSON does not parse still becomes a call, with the raw text as its
arguments, so the loop reports "bad JSON" to the agent and marks the turn invalid.
"""

from __future__ import annotations

import json
import re
import uuid
from typing import Any

from agentrm.types import Message

_TAGGED = re.compile(r"<tool_call>\s*(.*?)\s*(?:</tool_call>|$)", re.DOTALL)
_FENCED = re.compile(r"```(?:json)?\s*(\{.*?\})\s*```", re.DOTALL)
TOOL_CALL_INSTRUCTIONS = (
    "You can call these tools:\n<tools>\n{tools}\n</tools>\n"
    "To call a tool, reply with exactly one block like\n"
    '<tool_call>{{"name": "bash", "arguments": {{"command": "ls"}}}}</tool_call>\n'
    "and nothing after it. Call `submit` when you are done."
)


def _call(name: str, arguments: Any) -> dict[str, Any]:
    raw = arguments if isinstance(arguments, str) else json.dumps(arguments)
    return {"id": f"call_{uuid.uuid4().hex[:12]}", "type": "function",
            "function": {"name": name, "arguments": raw}}


def _from_json(text: str) -> dict[str, Any] | None:
    try:
        obj = json.loads(text)
    except json.JSONDecodeError:
        return None
    if not isinstance(obj, dict) or not isinstance(obj.get("name"), str):
        return None
    args = obj.get("arguments", obj.get("parameters", {}))
    return _call(obj["name"], args)


def _from_json_list(text: str) -> list[dict[str, Any]] | None:
    try:
        obj = json.loads(text)
    except json.JSONDecodeError:
        return None
    if not isinstance(obj, list) or not obj:
        return None
    calls = [_from_json(json.dumps(item)) for item in obj]
    return calls if all(calls) else None


def _name_hint(text: str) -> str:
    match = re.search(r'"name"\s*:\s*"([^"]*)"', text)
    return match.group(1) if match else ""


def parse_tool_calls(text: str) -> tuple[str, list[dict[str, Any]]]:
    """Split a completion into (content without the calls, OpenAI-shaped tool_calls)."""
    blocks = _TAGGED.findall(text)
    if "<tool_call>" in text:
        calls = []
        for block in blocks:
            listed = _from_json_list(block)  # SmolLM2's training format: a JSON list of calls
            calls.extend(listed if listed else [_from_json(block) or _call(_name_hint(block), block)])
        content = text[: text.index("<tool_call>")].strip()
        return content, calls
    stripped = text.strip()
    if stripped.startswith("{"):
        call = _from_json(stripped)
        if call:
            return "", [call]
    fenced = _FENCED.search(text)
    if fenced:
        call = _from_json(fenced.group(1))
        if call:
            return (text[: fenced.start()] + text[fenced.end():]).strip(), [call]
    return text.strip(), []


def assistant_message(text: str) -> Message:
    content, calls = parse_tool_calls(text)
    message: Message = {"role": "assistant", "content": content}
    if calls:
        message["tool_calls"] = calls
    return message


def render_call(call: dict[str, Any]) -> str:
    fn = call.get("function") or {}
    raw = fn.get("arguments", "")
    try:
        args = json.loads(raw) if isinstance(raw, str) else raw
    except json.JSONDecodeError:
        args = raw
    return "<tool_call>" + json.dumps({"name": fn.get("name", ""), "arguments": args}) + "</tool_call>"


def to_text_messages(messages: list[Message], tools: list[dict[str, Any]]) -> list[Message]:
    """Plain role/content messages for a chat template that knows nothing of tools.

    The tool list goes into the system prompt, calls are written back in the format the model
    is asked to use, and tool results become user turns (every template accepts those).
    """
    schemas = "\n".join(json.dumps(t["function"]) for t in tools)
    instructions = TOOL_CALL_INSTRUCTIONS.format(tools=schemas)
    out: list[Message] = []
    if not messages or messages[0].get("role") != "system":
        out.append({"role": "system", "content": instructions})
    for m in messages:
        role, content = m.get("role"), m.get("content") or ""
        if role == "system":
            out.append({"role": "system", "content": f"{content}\n\n{instructions}".strip()})
        elif role == "assistant":
            calls = "".join(render_call(c) for c in m.get("tool_calls") or [])
            out.append({"role": "assistant", "content": (content + ("\n" if content and calls else "") + calls)})
        elif role == "tool":
            out.append({"role": "user", "content": f"<tool_response>\n{content}\n</tool_response>"})
        else:
            out.append({"role": role, "content": content})
    return out


def to_template_messages(messages: list[Message]) -> list[Message]:
    """Messages for a chat template with native tool support (HF templates want dict args)."""
    out = []
    for m in messages:
        if m.get("tool_calls"):
            calls = []
            for c in m["tool_calls"]:
                fn = dict(c.get("function") or {})
                try:
                    fn["arguments"] = json.loads(fn.get("arguments") or "{}")
                except (json.JSONDecodeError, TypeError):
                    pass  # keep the raw string: the template shows what the model wrote
                calls.append({**c, "function": fn})
            m = {**m, "tool_calls": calls}
        out.append(m)
    return out
