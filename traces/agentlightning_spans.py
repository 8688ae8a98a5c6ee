"""Pieces of Agent Lightning spans (agentlightning 0.3, AgentOps' OpenAI instrumentation): LLM
calls, their prompt and reply as OpenAI messages, sampled ids, log-probs, rewards and the
FIRST_OCCURRENCE rule that gives rewards to calls. Pure functions over span dicts (the store's
JSON), read the way its own adapters (adapter/triplet.py, adapter/messages.py) read them.
"""

from __future__ import annotations

import json
import re
from typing import Any

from agentrm.types import Message

Span = dict[str, Any]
_LLM_CALL = re.compile(r"openai\.chat\.completion")  # TracerTraceToTriplet's default llm_call_match
_REWARD = "agentlightning.reward"


def llm_calls(spans: list[Span]) -> list[Span]:
    """The LLM call spans in the given order, one per `gen_ai.response.id`."""
    out, seen = [], set()
    for span in spans:
        attrs = span["attributes"]
        if not (_LLM_CALL.search(span["name"]) or "gen_ai.completion.0.role" in attrs):
            continue
        response_id = attrs.get("gen_ai.response.id")
        if response_id is not None and response_id in seen:
            continue  # one response recorded twice (nested instrumentation)
        seen.add(response_id)
        out.append(span)
    return out


def nested(attrs: dict[str, Any], prefix: str) -> dict[str, Any]:
    """OpenTelemetry's flattened `prefix.a.b = v` attributes as {"a": {"b": v}}."""
    out: dict[str, Any] = {}
    for key, value in attrs.items():
        if key.startswith(prefix + "."):
            node = out
            *parents, leaf = key[len(prefix) + 1:].split(".")
            for part in parents:
                node = node.setdefault(part, {})
                if not isinstance(node, dict):
                    break
            else:
                node[leaf] = value
    return out


def indexed(node: dict[str, Any]) -> list[Any]:
    """The values under "0", "1", … in numeric order."""
    return [node[k] for k in sorted((k for k in node if k.isdigit()), key=int)]


def message(raw: dict[str, Any]) -> Message:
    msg: Message = {"role": raw.get("role"), "content": raw.get("content")}
    calls = [{"id": str(c.get("id")), "type": "function",
              "function": {"name": c.get("name"), "arguments": c.get("arguments") or "{}"}}
             for c in indexed(raw.get("tool_calls") or {}) if isinstance(c, dict)]
    if calls:
        msg["tool_calls"] = calls
    for key in ("tool_call_id", "name"):
        if raw.get(key) is not None:
            msg[key] = raw[key]
    return msg


def prompt(call: Span) -> list[Message]:
    return [message(m) for m in indexed(nested(call["attributes"], "gen_ai.prompt"))
            if isinstance(m, dict)]


def reply(call: Span, spans: list[Span]) -> Message:
    """The call's reply; its tool calls from `gen_ai.completion.0.tool_calls.*`, else from the
    `tool_call.*` child spans AgentOps records them as (`tool.call.id`, `tool.name`,
    `tool.parameters`), in span order."""
    raw = nested(call["attributes"], "gen_ai.completion").get("0")
    msg = message(raw if isinstance(raw, dict) else {"content": raw})
    msg["role"] = "assistant"
    if "tool_calls" not in msg:
        calls = [{"id": str(s["attributes"].get("tool.call.id")), "type": "function",
                  "function": {"name": s["attributes"]["tool.name"],
                               "arguments": s["attributes"].get("tool.parameters") or "{}"}}
                 for s in spans
                 if s.get("parent_id") == call["span_id"] and "tool.name" in s["attributes"]]
        if calls:
            msg["tool_calls"] = calls
    return msg


def logprobs(raw: Any) -> list[float] | None:
    """Log-probs of `logprobs.content` (the OpenAI SDK's entries, JSON-encoded)."""
    try:
        entries = json.loads(raw) if isinstance(raw, str) else raw
    except ValueError:
        return None
    if not isinstance(entries, list):
        return None
    values = [e.get("logprob") if isinstance(e, dict) else None for e in entries]
    numbers = [float(v) for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
    return numbers if numbers and len(numbers) == len(values) else None


def token_ids(value: Any) -> list[int] | None:
    if isinstance(value, str):  # some proxies record the list as a string
        try:
            value = json.loads(value)
        except ValueError:
            return None
    ok = isinstance(value, list) and all(type(x) is int for x in value)  # bool is no id
    return list(value) if ok else None


def reward_dims(span: Span) -> list[dict[str, Any]]:
    """[{name, value}, …] of a reward span, primary first; [] for other spans. The three shapes
    emitter/reward.py reads: `agentlightning.reward.N.{name,value}` (0.3), AgentOps outputs
    `{"type": "reward", "value"}`, and the 0.2 annotation's `reward` attribute."""
    attrs = span["attributes"]
    dims = [d for d in indexed(nested(attrs, _REWARD)) if isinstance(d, dict)]
    if dims:
        return [{"name": str(d.get("name")), "value": float(d["value"])}
                for d in dims if _number(d.get("value"))]
    for key in ("agentops.task.output", "agentops.entity.output"):
        out = attrs.get(key)
        try:
            out = json.loads(out) if isinstance(out, str) else out
        except ValueError:
            out = None
        if isinstance(out, dict) and out.get("type") == "reward" and _number(out.get("value")):
            return [{"name": "primary", "value": float(out["value"])}]
    if span["name"] == "agentlightning.annotation" and _number(attrs.get("reward")):
        return [{"name": "primary", "value": float(attrs["reward"])}]
    return []


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def match_rewards(spans: list[Span], calls: list[Span]) -> dict[int, list[dict[str, Any]]]:
    """{call index: reward dims} by RewardMatchPolicy.FIRST_OCCURRENCE: in start-time order, a
    reward goes to the latest call that ended before it started and has no reward yet."""
    index = {c["span_id"]: k for k, c in enumerate(calls)}
    ended: list[tuple[int, float]] = []
    out: dict[int, list[dict[str, Any]]] = {}
    for span in sorted(spans, key=lambda s: s.get("start_time") or 0.0):
        if span["span_id"] in index:
            ended.append((index[span["span_id"]], span.get("end_time") or 0.0))
        dims = reward_dims(span)
        if not dims:
            continue
        for k, end in reversed(ended):
            if end <= (span.get("start_time") or 0.0) and k not in out:
                out[k] = dims
                break
    return out


def final_reward(spans: list[Span]) -> list[dict[str, Any]] | None:
    """The dims of the last reward span in store order (`find_final_reward`)."""
    return next((dims for dims in map(reward_dims, reversed(spans)) if dims), None)


def tools(call: Span) -> list[dict[str, Any]] | None:
    """The request's tool definitions (`gen_ai.request.functions.N.*`) as OpenAI tools."""
    functions = [f for f in indexed(nested(call["attributes"], "gen_ai.request.functions"))
                 if isinstance(f, dict)]
    out = []
    for f in functions:
        params = f.get("parameters")
        try:
            params = json.loads(params) if isinstance(params, str) else params
        except ValueError:
            pass
        out.append({"type": "function", "function": {
            "name": f.get("name"), "description": f.get("description"), "parameters": params}})
    return out or None
