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
# The call's shape has placeholders, not a worked example: a small model copies an example
# verbatim (SmolLM2-135M answered 3 of 4 tasks with the example's `bash ls` and almost never
# called `submit`), which leaves an RL loop nothing to learn from.
TOOL_CALL_INSTRUCTIONS = (
    "You can call these tools:\n<tools>\n{tools}\n</tools>\n"
    "To call a tool, reply with exactly one block\n"
    '<tool_call>{{"name": <tool name>, "arguments": <its arguments as a JSON object>}}</tool_call>\n'
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
    return [c for c in calls if c] if all(calls) else None


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


# mini-swe-agent's action format: one ```bash block per reply; this first line submits.
SUBMIT_MARKER = "COMPLETE_TASK_AND_SUBMIT_FINAL_OUTPUT"
_BASH_BLOCK = re.compile(r"```(?:bash|sh|shell)[ \t]*\n(.*?)\n?```", re.DOTALL)
BASH_BLOCK_INSTRUCTIONS = (
    "Reply with your reasoning, if any, and exactly one bash code block, like\n"
    "```bash\nls -la\n```\n"
    "The command runs in a persistent shell and you will see its output. When you are done, "
    f"reply with the block\n```bash\necho {SUBMIT_MARKER} ANSWER\n```\n"
    "giving your answer after the marker, or nothing after it to submit your changes."
)


def parse_bash_block(text: str) -> tuple[str, list[dict[str, Any]]]:
    """mini-swe-agent's format: exactly one ```bash block is the action (none or several: no
    action). `echo COMPLETE_TASK_AND_SUBMIT_FINAL_OUTPUT [ANSWER]` becomes a `submit` call."""
    blocks = _BASH_BLOCK.findall(text)
    if len(blocks) != 1:
        return text.strip(), []
    command = blocks[0].strip("\n")
    content = _BASH_BLOCK.sub("", text, count=1).strip()
    first, _, _ = command.partition("\n")
    words = first.strip().split(None, 2)
    if len(words) >= 2 and words[0] == "echo" and words[1].strip("'\"") == SUBMIT_MARKER:
        answer = words[2].strip().strip("'\"") if len(words) == 3 else ""
        return content, [_call("submit", {"answer": answer} if answer else {})]
    return content, [_call("bash", {"command": command})]


def render_bash_block(call: dict[str, Any]) -> str:
    fn = call.get("function") or {}
    try:
        args = json.loads(fn.get("arguments") or "{}")
    except (json.JSONDecodeError, TypeError):
        args = {}
    if not isinstance(args, dict):
        args = {}
    if fn.get("name") == "submit":
        command = f"echo {SUBMIT_MARKER} {args.get('answer', '')}".rstrip()
    elif fn.get("name") == "bash":
        command = str(args.get("command", ""))
    else:  # other tools have no bash spelling; show the call as a comment
        command = "# " + json.dumps({"name": fn.get("name", ""), "arguments": args})
    return f"```bash\n{command}\n```"


def assistant_message(text: str, action_format: str = "tool_call") -> Message:
    parse = parse_bash_block if action_format == "bash_block" else parse_tool_calls
    content, calls = parse(text)
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


def to_text_messages(messages: list[Message], tools: list[dict[str, Any]],
                     action_format: str = "tool_call") -> list[Message]:
    """Plain role/content messages for a chat template that knows nothing of tools.

    The tool list goes into the system prompt, calls are written back in the format the model
    is asked to use, and tool results become user turns (every template accepts those).
    `action_format="bash_block"`: mini-swe-agent's one-bash-block format instead of tools.
    """
    bash = action_format == "bash_block"
    schemas = "\n".join(json.dumps(t["function"]) for t in tools)
    instructions = BASH_BLOCK_INSTRUCTIONS if bash else TOOL_CALL_INSTRUCTIONS.format(tools=schemas)
    render = render_bash_block if bash else render_call
    out: list[Message] = []
    if not messages or messages[0].get("role") != "system":
        out.append({"role": "system", "content": instructions})
    for m in messages:
        role, content = m.get("role"), m.get("content") or ""
        if role == "system":
            out.append({"role": "system", "content": f"{content}\n\n{instructions}".strip()})
        elif role == "assistant":
            calls = "".join(render(c) for c in m.get("tool_calls") or [])
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
