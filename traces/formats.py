"""Readers for other agents' trajectory files, mapped onto OpenAI messages and then turns.

ATIF (Harbor RFC 0001, FORMATS.md §6): one `agent` step = one assistant message (= one turn);
its `observation.results` become tool messages answering `source_call_id` (results without a
call id become a user message); `metrics` fill the turn's token counts and log-probs.
SWE-agent `.traj` (§8): `history` is the conversation; when it is missing the conversation is
rebuilt from `trajectory` steps (response → assistant, observation → user).
mini-swe-agent `.traj.json` (§8): `messages` with the `exit` role dropped into the tail as metadata.
Each file is one trajectory; errors name the file and the JSON path (or the line, for bad JSON).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from agentrm.errors import InputError
from agentrm.traces.messages import MessageError, split_turns, validate_messages
from agentrm.types import ExitStatus, Message, Trajectory

_OPENAI_KEYS = ("role", "content", "tool_calls", "tool_call_id", "name", "reasoning_content")


def _load(path: Path) -> Any:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise InputError("no such file", path=str(path)) from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise InputError(f"not UTF-8 (byte {exc.start})", path=str(path), line=line) from None
    if not text.strip():
        raise InputError("empty file: no trajectory", path=str(path), line=1)
    try:
        return json.loads(text.removeprefix("\ufeff"))
    except RecursionError:
        raise InputError("JSON nested too deeply", path=str(path), line=1) from None
    except json.JSONDecodeError as exc:
        raise InputError(f"malformed JSON: {exc.msg} (column {exc.colno})", path=str(path),
                         line=exc.lineno) from None


def sniff_json(path: Path) -> str:
    if path.name.lower().endswith(".traj.json"):
        return "mini-swe-agent"
    head = path.open("rb").read(4096) if path.is_file() else b""
    if b'"schema_version"' in head and b"ATIF" in head:
        return "atif"
    if b'"trajectory_format"' in head or b'"mini_version"' in head:
        return "mini-swe-agent"
    if b'"trajectory"' in head or b'"history"' in head:
        return "swe-agent"
    if b'"steps"' in head:
        return "atif"
    raise InputError("cannot tell the format (expected .jsonl, ATIF .json or SWE-agent .traj); "
                     "pass --format", path=str(path))


def _finish(path: Path, messages: list[Message], **fields: Any) -> Trajectory:
    try:
        validate_messages(messages)
    except MessageError as exc:
        raise InputError(f"after conversion: {exc}", path=str(path)) from None
    turns, tail = split_turns(messages)
    fields.setdefault("group_id", fields["task_id"])
    return Trajectory(turns=turns, tail=tail, **fields)


def _text(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, list):  # content parts
        return "".join(str(p.get("text", "")) if isinstance(p, dict) else str(p) for p in value)
    return json.dumps(value)


# -- ATIF --------------------------------------------------------------------------------------
def _atif_step(step: dict[str, Any], where: str) -> list[Message]:
    source = step.get("source")
    if source in ("system", "user"):
        return [{"role": source, "content": _text(step.get("message"))}]
    if source != "agent":
        raise MessageError(f"{where}.source must be system, user or agent, not {source!r}")
    msg: Message = {"role": "assistant", "content": _text(step.get("message"))}
    if step.get("reasoning_content"):
        msg["reasoning_content"] = _text(step["reasoning_content"])
    calls = []
    for j, call in enumerate(step.get("tool_calls") or []):
        if not isinstance(call, dict) or not isinstance(call.get("function_name"), str):
            raise MessageError(f"{where}.tool_calls[{j}] needs a string function_name")
        args = call.get("arguments", {})
        calls.append({"id": str(call.get("tool_call_id") or f"call_{j}"), "type": "function",
                      "function": {"name": call["function_name"],
                                   "arguments": args if isinstance(args, str) else json.dumps(args)}})
    if calls:
        msg["tool_calls"] = calls
    out = [msg]
    for result in ((step.get("observation") or {}).get("results") or []):
        content = _text(result.get("content")) if isinstance(result, dict) else _text(result)
        call_id = result.get("source_call_id") if isinstance(result, dict) else None
        out.append({"role": "tool", "tool_call_id": call_id, "content": content} if call_id
                   else {"role": "user", "content": content})
    return out


def read_atif(path: Path) -> Iterator[Trajectory]:
    doc = _load(path)
    steps = doc.get("steps") if isinstance(doc, dict) else None
    if not isinstance(steps, list):
        raise InputError("ATIF root must be an object with a 'steps' list", path=str(path))
    messages: list[Message] = []
    metrics: list[dict[str, Any]] = []
    for i, step in enumerate(steps):
        where = f"steps[{i}]"
        try:
            if not isinstance(step, dict):
                raise MessageError(f"{where} must be an object")
            if step.get("step_id") != i + 1:
                raise MessageError(f"{where}.step_id must be {i + 1} (1-based, sequential)")
            messages += _atif_step(step, where)
        except MessageError as exc:
            raise InputError(str(exc), path=str(path)) from None
        if step.get("source") == "agent":
            metrics.append(step.get("metrics") or {})
    extra = doc.get("extra") or {}
    traj_id = str(doc.get("trajectory_id") or doc.get("session_id") or path.stem)
    task_id = str(extra.get("task_id") or doc.get("session_id") or path.stem)
    reward = extra.get("reward")
    meta = {"format": doc.get("schema_version"), "agent": doc.get("agent"),
            "final_metrics": doc.get("final_metrics"), "notes": doc.get("notes")}
    traj = _finish(path, messages, id=traj_id, task_id=task_id, exit_status=ExitStatus.IMPORTED,
                   reward=float(reward) if isinstance(reward, (int, float)) else None,
                   policy=(doc.get("agent") or {}).get("model_name"),
                   metadata={k: v for k, v in meta.items() if v is not None})
    for turn, m in zip(traj.turns, metrics, strict=True):
        turn.prompt_tokens, turn.completion_tokens = m.get("prompt_tokens"), m.get("completion_tokens")
        turn.logprobs = m.get("logprobs")
    yield traj


# -- SWE-agent and mini-swe-agent ----------------------------------------------------------------
def _openai(msg: dict[str, Any]) -> Message:
    out = {k: msg[k] for k in _OPENAI_KEYS if k in msg and msg[k] is not None}
    if "tool_call_ids" in msg and "tool_call_id" not in out and msg["tool_call_ids"]:
        out["tool_call_id"] = msg["tool_call_ids"][0]
    out.setdefault("content", None)
    return out


def _swe_status(status: Any) -> ExitStatus:
    return ExitStatus.SUBMITTED if isinstance(status, str) and "submitted" in status.lower() else ExitStatus.IMPORTED


def read_swe_agent(path: Path) -> Iterator[Trajectory]:
    doc = _load(path)
    if not isinstance(doc, dict) or not isinstance(doc.get("trajectory", []), list):
        raise InputError("SWE-agent .traj root must be an object with a 'trajectory' list", path=str(path))
    steps = doc.get("trajectory") or []
    history = doc.get("history") or []
    if history:
        messages = [_openai(m) for m in history if isinstance(m, dict)]
    else:
        first = steps[0].get("query") if steps and isinstance(steps[0], dict) else None
        messages = [_openai(m) for m in first or [] if isinstance(m, dict)]
        for step in steps:
            messages.append({"role": "assistant", "content": _text(step.get("response"))})
            messages.append({"role": "user", "content": _text(step.get("observation"))})
    info = doc.get("info") or {}
    name = path.name[: -len(".traj")] if path.name.endswith(".traj") else path.stem
    traj = _finish(path, messages, id=name, task_id=str(doc.get("instance_id") or name),
                   exit_status=_swe_status(info.get("exit_status")),
                   metadata={"format": "swe-agent", "exit_status": info.get("exit_status"),
                             "submission": info.get("submission"),
                             "model_stats": info.get("model_stats")})
    if len(traj.turns) == len(steps):
        for turn, step in zip(traj.turns, steps, strict=True):
            if isinstance(step.get("execution_time"), (int, float)):
                turn.duration_s = float(step["execution_time"])
            turn.metadata = {k: step[k] for k in ("thought", "action") if step.get(k)}
    yield traj


def read_mini_swe_agent(path: Path) -> Iterator[Trajectory]:
    doc = _load(path)
    if not isinstance(doc, dict) or not isinstance(doc.get("messages"), list):
        raise InputError("mini-swe-agent file must be an object with a 'messages' list", path=str(path))
    raw = [m for m in doc["messages"] if isinstance(m, dict)]
    messages = [_openai(m) for m in raw if m.get("role") != "exit"]
    info = doc.get("info") or {}
    name = str(doc.get("instance_id") or path.name.split(".")[0])
    yield _finish(path, messages, id=name, task_id=name,
                  exit_status=_swe_status(info.get("exit_status")),
                  metadata={"format": doc.get("trajectory_format", "mini-swe-agent"),
                            "exit_status": info.get("exit_status"),
                            "submission": info.get("submission")})


READERS = {"atif": read_atif, "swe-agent": read_swe_agent, "mini-swe-agent": read_mini_swe_agent}
