"""OpenAI chat messages ↔ turns, with the validation the interchange format promises.

Each assistant message is one turn; its observation is the messages since the previous assistant
message; messages after the last assistant message are the trajectory's tail. A tool result must
answer a call of the most recent assistant message, once.
"""

from __future__ import annotations

from typing import Any

from agentrm.hashing import anchor_key
from agentrm.types import Message, ToolCall, ToolResult, Turn

ROLES = {"system", "developer", "user", "assistant", "tool"}


class MessageError(ValueError):
    """A bad message; the caller adds file and line."""


def _check_content(msg: dict[str, Any], where: str) -> None:
    content = msg.get("content")
    if content is None or isinstance(content, str):
        return
    if isinstance(content, list) and all(isinstance(p, dict) for p in content):
        return
    raise MessageError(f"{where}: content must be a string, null or a list of parts, "
                       f"not {type(content).__name__}")


def _check_tool_calls(msg: dict[str, Any], where: str) -> list[str]:
    calls = msg.get("tool_calls")
    if calls is None:
        return []
    if not isinstance(calls, list):
        raise MessageError(f"{where}: tool_calls must be a list")
    ids = []
    for j, call in enumerate(calls):
        at = f"{where}.tool_calls[{j}]"
        if not isinstance(call, dict):
            raise MessageError(f"{at}: must be an object")
        fn = call.get("function")
        if not isinstance(call.get("id"), str) or not call["id"]:
            raise MessageError(f"{at}: missing string 'id'")
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
            raise MessageError(f"{at}: missing 'function' with a string 'name'")
        if not isinstance(fn.get("arguments", ""), (str, dict)):
            raise MessageError(f"{at}.function.arguments must be a JSON string or an object")
        ids.append(call["id"])
    if len(set(ids)) != len(ids):
        raise MessageError(f"{where}: duplicate tool call ids")
    return ids


def validate_messages(messages: Any) -> None:
    """Raise MessageError naming the first bad message; return None when all are well formed."""
    if not isinstance(messages, list):
        raise MessageError(f"'messages' must be a list, not {type(messages).__name__}")
    open_calls: set[str] = set()
    for i, msg in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(msg, dict):
            raise MessageError(f"{where}: must be an object, not {type(msg).__name__}")
        role = msg.get("role")
        if role not in ROLES:
            raise MessageError(f"{where}: unknown role {role!r} (expected one of {sorted(ROLES)})")
        _check_content(msg, where)
        if role == "assistant":
            open_calls = set(_check_tool_calls(msg, where))
        elif role == "tool":
            call_id = msg.get("tool_call_id")
            if not isinstance(call_id, str) or call_id not in open_calls:
                raise MessageError(f"{where}: tool result for call {call_id!r} without a matching "
                                   "tool call in the preceding assistant message")
            open_calls.discard(call_id)
        elif "tool_calls" in msg or "tool_call_id" in msg:
            raise MessageError(f"{where}: role {role!r} cannot carry tool_calls/tool_call_id")


def split_turns(messages: list[Message]) -> tuple[list[Turn], list[Message]]:
    """(turns, tail) of a validated conversation; anchor keys and tool results filled in."""
    turns: list[Turn] = []
    pending: list[Message] = []
    for msg in messages:
        if msg["role"] != "assistant":
            pending.append(msg)
            if msg["role"] == "tool" and turns:
                turns[-1].tool_results.append(
                    ToolResult(call_id=msg["tool_call_id"], content=_text(msg.get("content"))))
            continue
        calls = [ToolCall.from_message(c) for c in msg.get("tool_calls") or []]
        turns.append(Turn(index=len(turns), observation=pending, assistant=msg,
                          anchor_key=anchor_key(pending), valid=all(c.valid for c in calls)))
        pending = []
    return turns, pending


def _text(content: Any) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    return "".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
