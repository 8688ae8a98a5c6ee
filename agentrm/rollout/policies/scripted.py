"""A policy that plays a file of actions: drives the tests, and re-runs recorded trajectories.

The action to play is chosen by how many assistant messages the conversation already holds, so
one ScriptedPolicy serves any number of concurrent trajectories and a resumed one continues
where its record stops.

Action file: JSONL, JSON list or YAML list; each action is one of
  {"tool": "bash", "args": {"command": "ls"}}         a single tool call
  {"content": "...", "tool_calls": [...]}             a full assistant message (OpenAI shape)
  "some text"                                         raw model text, parsed like a local model's
                                                      reply (tests malformed calls)
A trajectory record ({"messages": [...]}, the JSONL interchange format) replays its assistant
messages in order.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from agentrm.errors import InputError
from agentrm.protocols import PolicyOutput
from agentrm.rollout.policies.base import ModelError
from agentrm.rollout.policies.parsing import _call, assistant_message
from agentrm.types import Message, Trajectory


def _action_message(action: Any, where: str) -> Message:
    if isinstance(action, str):
        return assistant_message(action)
    if not isinstance(action, dict):
        raise InputError(f"an action must be an object or a string, got {type(action).__name__}",
                         path=where)
    if "tool" in action:
        return {"role": "assistant", "content": action.get("content", ""),
                "tool_calls": [_call(action["tool"], action.get("args", {}))]}
    if "tool_calls" in action or "content" in action:
        return {"role": "assistant", "content": action.get("content") or "",
                **({"tool_calls": action["tool_calls"]} if action.get("tool_calls") else {})}
    raise InputError("an action needs `tool`, `tool_calls` or `content`", path=where)


def _read(path: Path) -> list[Any]:
    text = path.read_text()
    if path.suffix in {".yaml", ".yml"}:
        import yaml

        data = yaml.safe_load(text)
        return data if isinstance(data, list) else [data]
    stripped = text.lstrip()
    if stripped.startswith("["):
        return json.loads(stripped)
    rows = []
    for lineno, line in enumerate(text.splitlines(), 1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise InputError(f"not JSON: {exc.msg}", path=str(path), line=lineno) from exc
    return rows


class ScriptedPolicy:
    def __init__(self, actions: Sequence[Message], name: str = "scripted"):
        self.actions = list(actions)
        self.name = name

    @classmethod
    def from_file(cls, path: str | Path) -> ScriptedPolicy:
        path = Path(path)
        if not path.is_file():
            raise InputError("no such action file (give scripted:FILE)", path=str(path))
        rows = _read(path)
        if len(rows) == 1 and isinstance(rows[0], dict) and "messages" in rows[0]:
            return cls.from_messages(rows[0]["messages"], name=f"scripted:{path}")
        return cls([_action_message(a, f"{path} action {i + 1}") for i, a in enumerate(rows)],
                   name=f"scripted:{path}")

    @classmethod
    def from_messages(cls, messages: Sequence[Message], name: str = "replay") -> ScriptedPolicy:
        return cls([dict(m) for m in messages if m.get("role") == "assistant"], name=name)

    @classmethod
    def from_trajectory(cls, trajectory: Trajectory) -> ScriptedPolicy:
        return cls([t.assistant for t in trajectory.turns], name=f"replay:{trajectory.id}")

    def act(self, messages: Sequence[Message], tools: Sequence[dict[str, Any]]) -> PolicyOutput:
        step = sum(1 for m in messages if m.get("role") == "assistant")
        if step >= len(self.actions):
            raise ModelError(f"{self.name}: script exhausted after {len(self.actions)} actions")
        message = json.loads(json.dumps(self.actions[step]))  # a copy the loop may keep
        return PolicyOutput(message, completion_tokens=None, raw={"step": step})
