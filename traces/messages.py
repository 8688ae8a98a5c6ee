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


def _bad(i: int, problem: str) -> MessageError:
    return MessageError(f"messages[{i}]{problem}")


def _check_content(content: Any, i: int) -> None:
    if content is None or isinstance(content, str):
        return
    if isinstance(content, list) and all(isinstance(p, dict) for p in content):
        return
    raise _bad(i, f": content must be a string, null or a list of parts, "
                  f"not {type(content).__name__}")


def _check_tool_calls(calls: Any, i: int) -> set[str]:
    """The call ids of a well-formed tool_calls list (MessageError otherwise)."""
    if not isinstance(calls, list):
        raise _bad(i, ": tool_calls must be a list")
    ids: set[str] = set()
    for j, call in enumerate(calls):
        if not isinstance(call, dict):
            raise _bad(i, f".tool_calls[{j}]: must be an object")
        fn = call.get("function")
        call_id = call.get("id")
        if not isinstance(call_id, str) or not call_id:
            raise _bad(i, f".tool_calls[{j}]: missing string 'id'")
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
            raise _bad(i, f".tool_calls[{j}]: missing 'function' with a string 'name'")
        if not isinstance(fn.get("arguments", ""), (str, dict)):
            raise _bad(i, f".tool_calls[{j}].function.arguments must be a JSON string or an object")
        ids.add(call_id)
    if len(ids) != len(calls):
        raise _bad(i, ": duplicate tool call ids")
    return ids


def validate_messages(messages: Any) -> None:
    """Raise MessageError naming the first bad message; return None when all are well formed."""
    _walk(messages, split=False)


def split_turns(messages: Any) -> tuple[list[Turn], list[Message]]:
    """(turns, tail) of a conversation, validated in the same pass (MessageError names the
    first bad message); anchor keys and tool results filled in."""
    return _walk(messages, split=True)


def _walk(messages: Any, split: bool) -> tuple[list[Turn], list[Message]]:
    # One pass for validation and splitting: imports spend their time here, per message.
    if not isinstance(messages, list):
        raise MessageError(f"'messages' must be a list, not {type(messages).__name__}")
    turns: list[Turn] = []
    pending: list[Message] = []
    open_calls: set[str] = set()
    for i, msg in enumerate(messages):
        if not isinstance(msg, dict):
            raise _bad(i, f": must be an object, not {type(msg).__name__}")
        role = msg.get("role")
        if role not in ROLES:
            raise _bad(i, f": unknown role {role!r} (expected one of {sorted(ROLES)})")
        content = msg.get("content")
        if content is not None and not isinstance(content, str):
            _check_content(content, i)
        if role == "assistant":
            calls = msg.get("tool_calls")
            open_calls = set() if calls is None else _check_tool_calls(calls, i)
            if split:
                valid = calls is None or all(
                    ToolCall.arguments_valid(c["function"].get("arguments", "")) for c in calls)
                turns.append(Turn(index=len(turns), observation=pending, assistant=msg,
                                  anchor_key=anchor_key(pending), valid=valid))
                pending = []
            continue
        if role == "tool":
            call_id = msg.get("tool_call_id")
            if not isinstance(call_id, str) or call_id not in open_calls:
                raise _bad(i, f": tool result for call {call_id!r} without a matching "
                              "tool call in the preceding assistant message")
            open_calls.discard(call_id)
            if split and turns:
                turns[-1].tool_results.append(ToolResult(call_id=call_id, content=_text(content)))
        elif "tool_calls" in msg or "tool_call_id" in msg:
            raise _bad(i, f": role {role!r} cannot carry tool_calls/tool_call_id")
        if split:
            pending.append(msg)
    return turns, pending


def _text(content: Any) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    return "".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
