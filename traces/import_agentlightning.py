"""Agent Lightning stored rollouts and spans as trajectories (agentlightning 0.3).

Input: what its store serves (`LightningStoreServer`: `GET /v1/agl/rollouts`, `…/attempts`,
`/v1/agl/spans?rollout_id=…`; a `{"items": [...]}` page each), a JSON list of such items or
JSON lines, as one file or a directory of them. Items are told apart by their keys: a span has
`span_id`, a rollout `input`, an attempt `attempt_id` without `span_id`.

One trajectory per attempt that has spans (id: the rollout id; `ROLLOUT/ATTEMPT` when a rollout
has several), built the way Agent Lightning's own adapters read spans:
- each LLM call span (`openai.chat.completion`, AgentOps' OpenAI instrumentation; duplicates of
  one `gen_ai.response.id` dropped) is one turn: its `gen_ai.prompt.N.*` after the last assistant
  message is the observation, `gen_ai.completion.0.*` the reply, with tool calls from
  `gen_ai.completion.0.tool_calls.*` or from its `tool_call.*` child spans (`tool.*`);
- `prompt_token_ids` / `response_token_ids` are the turn's ids, `logprobs.content` its log-probs;
- rewards (`agentlightning.reward.N.{name,value}`, first = primary; the older AgentOps and
  annotation shapes too) go to calls by Agent Lightning's FIRST_OCCURRENCE rule (a reward goes
  to the latest call that ended before it and has none yet): turn scores `agentlightning`
  (and `agentlightning.NAME` for other dimensions); the last reward span is the trajectory's
  reward (`find_final_reward`).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from agentrm.errors import InputError
from agentrm.types import ExitStatus, Message, Score, ScoreLevel, ToolResult, Trajectory, Turn

AGL_SCORER = "agentlightning"
_LLM_CALL = re.compile(r"openai\.chat\.completion")  # TracerTraceToTriplet's default llm_call_match
_REWARD = "agentlightning.reward"
_STATUS = {"failed": ExitStatus.CRASHED, "unresponsive": ExitStatus.CRASHED,
           "cancelled": ExitStatus.CRASHED, "timeout": ExitStatus.TIME_LIMIT,
           "queuing": ExitStatus.RUNNING, "preparing": ExitStatus.RUNNING,
           "running": ExitStatus.RUNNING, "requeuing": ExitStatus.RUNNING}


def looks_like_agentlightning(path: Path) -> bool:
    """Whether a file starts like Agent Lightning store data (a span or rollout near the top)."""
    try:
        with path.open("rb") as fh:
            head = fh.read(4096)
    except OSError:
        return False
    return b'"rollout_id"' in head and (b'"span_id"' in head or b'"attempt_id"' in head)


def read_agentlightning(path: Path) -> Iterator[Trajectory]:
    """The trajectories in a file or directory of Agent Lightning store data. Every file is
    read and checked at the call, so bad input fails before a store is opened."""
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith(".")
                       and p.suffix.lower() in (".json", ".jsonl"))
        if not files:
            raise InputError("is a directory with no .json or .jsonl file in it", path=str(path))
    else:
        files = [path]
    spans: list[dict[str, Any]] = []
    rollouts: dict[str, dict[str, Any]] = {}
    attempts: dict[tuple[str, str], dict[str, Any]] = {}
    for file in files:
        for where, item in _items(file):
            kind = _kind(item)
            if kind == "span":
                _check_span(item, file, where)
                spans.append(item)
            elif kind == "rollout":
                rollouts[item["rollout_id"]] = item
                if isinstance(item.get("attempt"), dict):
                    attempts.setdefault((item["rollout_id"], str(item["attempt"].get("attempt_id"))), item["attempt"])
            elif kind == "attempt":
                attempts[(item["rollout_id"], item["attempt_id"])] = item
            else:
                raise InputError(f"{where} is not an Agent Lightning span, rollout or attempt", path=str(file))
    if not spans and not rollouts:
        raise InputError("no Agent Lightning spans or rollouts", path=str(path))
    return _trajectories(spans, rollouts, attempts)


def _items(file: Path) -> list[tuple[str, Any]]:
    from agentrm.traces.formats import _load

    if file.suffix.lower() == ".jsonl":
        out = []
        for n, line in enumerate(file.read_text(encoding="utf-8").splitlines(), start=1):
            if line.strip():
                try:
                    out.append((f"line {n}", json.loads(line)))
                except ValueError as exc:
                    raise InputError(f"malformed JSON: {exc}", path=str(file), line=n) from None
        return out
    doc = _load(file)
    if isinstance(doc, dict) and isinstance(doc.get("items"), list):  # a page of the store's API
        return [(f"items[{i}]", it) for i, it in enumerate(doc["items"])]
    if isinstance(doc, list):
        return [(f"[{i}]", it) for i, it in enumerate(doc)]
    if isinstance(doc, dict) and _kind(doc) is not None:
        return [("the object", doc)]
    raise InputError("not Agent Lightning store data (expected its API's {\"items\": [...]}, a list "
                     "of spans, rollouts or attempts, or JSON lines)", path=str(file))


def _kind(item: Any) -> str | None:
    if not isinstance(item, dict) or not isinstance(item.get("rollout_id"), str):
        return None
    if "span_id" in item:
        return "span"
    if "input" in item:
        return "rollout"
    if isinstance(item.get("attempt_id"), str):
        return "attempt"
    return None


def _check_span(span: dict[str, Any], file: Path, where: str) -> None:
    for key, kind in (("attempt_id", str), ("span_id", str), ("name", str), ("sequence_id", int),
                      ("attributes", dict)):
        if not isinstance(span.get(key), kind):
            raise InputError(f"{where}: span needs {key} ({kind.__name__})", path=str(file))


def _trajectories(spans: list[dict[str, Any]], rollouts: dict[str, dict[str, Any]],
                  attempts: dict[tuple[str, str], dict[str, Any]]) -> Iterator[Trajectory]:
    by_attempt: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for span in spans:
        by_attempt.setdefault(span["rollout_id"], {}).setdefault(span["attempt_id"], []).append(span)
    for rollout_id in dict.fromkeys([*rollouts, *by_attempt]):
        rollout = rollouts.get(rollout_id)
        groups = by_attempt.get(rollout_id) or {str((rollout or {}).get("attempt", {}).get("attempt_id")): []}
        for attempt_id, group in groups.items():
            traj_id = rollout_id if len(groups) == 1 else f"{rollout_id}/{attempt_id}"
            yield _trajectory(traj_id, rollout, attempts.get((rollout_id, attempt_id)), group)


def _trajectory(traj_id: str, rollout: dict[str, Any] | None, attempt: dict[str, Any] | None,
                spans: list[dict[str, Any]]) -> Trajectory:
    spans = sorted(spans, key=lambda s: (s["sequence_id"], s.get("start_time") or 0.0))
    calls = _llm_calls(spans)
    turns = [_turn(k, call, spans) for k, call in enumerate(calls)]
    _link_tokens_and_results(turns, calls)
    rewards = _match_rewards(spans, calls)
    for k, dims in rewards.items():
        turns[k].metadata["agentlightning"]["rewards"] = dims
    final = next((_reward_dims(s) for s in reversed(spans) if _reward_dims(s)), None)
    task_id = _task_id(rollout, traj_id.split("/")[0])
    status = (attempt or {}).get("status") or (rollout or {}).get("status")
    first = calls[0]["attributes"] if calls else {}
    return Trajectory(
        id=traj_id, task_id=task_id, group_id=task_id, turns=turns,
        exit_status=_STATUS.get(str(status), ExitStatus.IMPORTED),
        reward=final[0]["value"] if final else None,
        policy=first.get("gen_ai.response.model") or first.get("gen_ai.request.model"),
        metadata={"format": "agentlightning", "agentlightning": {
            "rollout_id": traj_id.split("/")[0], "attempt_id": (attempt or {}).get("attempt_id")
            or (spans[0]["attempt_id"] if spans else None),
            "status": (rollout or {}).get("status"), "attempt_status": (attempt or {}).get("status"),
            "mode": (rollout or {}).get("mode"), "input": (rollout or {}).get("input"),
            "final_reward": final, "tools": _tools(first),
            "exceptions": [{k: s["attributes"][k] for k in s["attributes"] if k.startswith("exception.")}
                           for s in spans if any(k.startswith("exception.") for k in s["attributes"])]}})


def _task_id(rollout: dict[str, Any] | None, rollout_id: str) -> str:
    """The task a rollout attempted: its input's `task_id` or `id`, else a hash of its input
    (rollouts of one input form a group), else the rollout id."""
    if rollout is None or "input" not in rollout:
        return rollout_id
    task = rollout["input"]
    if isinstance(task, dict):
        for key in ("task_id", "id"):
            if isinstance(task.get(key), (str, int)) and not isinstance(task.get(key), bool):
                return str(task[key])
    text = json.dumps(task, sort_keys=True, ensure_ascii=False, default=str)
    return "agl-" + hashlib.sha256(text.encode()).hexdigest()[:12]


def _llm_calls(spans: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out, seen = [], set()
    for span in spans:
        attrs = span["attributes"]
        if not (_LLM_CALL.search(span["name"]) or "gen_ai.completion.0.role" in attrs):
            continue
        response_id = attrs.get("gen_ai.response.id")
        if response_id is not None and response_id in seen:
            continue  # the same response recorded twice (nested instrumentation)
        seen.add(response_id)
        out.append(span)
    return out


def _nested(attrs: dict[str, Any], prefix: str) -> dict[str, Any]:
    """`prefix.a.b = v` attributes as {"a": {"b": v}}."""
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


def _indexed(node: dict[str, Any]) -> list[Any]:
    return [node[k] for k in sorted((k for k in node if k.isdigit()), key=int)]


def _message(raw: dict[str, Any]) -> Message:
    msg: Message = {"role": raw.get("role"), "content": raw.get("content")}
    calls = [{"id": str(c.get("id")), "type": "function",
              "function": {"name": c.get("name"), "arguments": c.get("arguments") or "{}"}}
             for c in _indexed(raw.get("tool_calls") or {}) if isinstance(c, dict)]
    if calls:
        msg["tool_calls"] = calls
    for key in ("tool_call_id", "name"):
        if raw.get(key) is not None:
            msg[key] = raw[key]
    return msg


def _reply(call: dict[str, Any], spans: list[dict[str, Any]]) -> Message:
    raw = _nested(call["attributes"], "gen_ai.completion").get("0") or {"role": "assistant"}
    msg = _message(raw if isinstance(raw, dict) else {"role": "assistant", "content": str(raw)})
    msg["role"] = "assistant"
    if "tool_calls" not in msg:  # AgentOps records the reply's calls as child spans
        children = [s for s in spans if s.get("parent_id") == call["span_id"] and "tool.name" in s["attributes"]]
        calls = [{"id": str(s["attributes"].get("tool.call.id")), "type": "function",
                  "function": {"name": s["attributes"]["tool.name"],
                               "arguments": s["attributes"].get("tool.parameters") or "{}"}}
                 for s in children]
        if calls:
            msg["tool_calls"] = calls
    return msg


def _turn(index: int, call: dict[str, Any], spans: list[dict[str, Any]]) -> Turn:
    from agentrm.hashing import anchor_key
    from agentrm.traces.messages import MessageError, validate_messages
    from agentrm.types import ToolCall

    attrs = call["attributes"]
    prompt = [_message(m) for m in _indexed(_nested(attrs, "gen_ai.prompt")) if isinstance(m, dict)]
    last = max((i for i, m in enumerate(prompt) if m.get("role") == "assistant"), default=-1)
    observation = prompt[last + 1:]
    reply = _reply(call, spans)
    try:
        validate_messages([*prompt, reply])
    except MessageError as exc:
        raise InputError(f"rollout {call['rollout_id']}, span {call['span_id']}: {exc}") from None
    start, end = call.get("start_time"), call.get("end_time")
    return Turn(index=index, observation=observation, assistant=reply, anchor_key=anchor_key(observation),
                prompt_tokens=attrs.get("gen_ai.usage.prompt_tokens"),
                completion_tokens=attrs.get("gen_ai.usage.completion_tokens"),
                logprobs=_logprobs(attrs.get("logprobs.content")), started_at=start,
                duration_s=end - start if isinstance(start, (int, float)) and isinstance(end, (int, float)) else None,
                valid=all(ToolCall.arguments_valid(c["function"]["arguments"]) for c in reply.get("tool_calls") or []),
                metadata={"agentlightning": {
                    "span_id": call["span_id"], "response_id": attrs.get("gen_ai.response.id"),
                    "finish_reason": attrs.get("gen_ai.completion.0.finish_reason"),
                    "prompt_messages": len(prompt)}})


def _logprobs(raw: Any) -> list[float] | None:
    try:
        entries = json.loads(raw) if isinstance(raw, str) else raw
    except ValueError:
        return None
    if not isinstance(entries, list):
        return None
    values = [e.get("logprob") if isinstance(e, dict) else None for e in entries]
    numbers = [float(v) for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
    return numbers if numbers and len(numbers) == len(values) else None


def _ids(value: Any) -> list[int] | None:
    if isinstance(value, str):  # proxies record them as a Python literal string
        try:
            value = json.loads(value)
        except ValueError:
            return None
    return list(value) if isinstance(value, list) and all(isinstance(x, int) for x in value) else None


def _link_tokens_and_results(turns: list[Turn], calls: list[dict[str, Any]]) -> None:
    """Sampled ids (each prompt stored against the previous one) and each turn's tool results,
    read from the next call's prompt (the messages answering its calls)."""
    from agentrm.traces.formats import _tokens

    previous: list[int] | None = None
    for k, (turn, call) in enumerate(zip(turns, calls, strict=True)):
        attrs = call["attributes"]
        prompt, completion = _ids(attrs.get("prompt_token_ids")), _ids(attrs.get("response_token_ids"))
        if prompt is not None and completion is not None:
            turn.tokens, previous = _tokens({"prompt_token_ids": prompt, "completion_token_ids": completion}, previous)
        else:
            previous = None
        ids = {c["id"] for c in turn.assistant.get("tool_calls") or []}
        if k + 1 < len(turns) and ids:
            turn.tool_results = [ToolResult(call_id=m["tool_call_id"], content=str(m.get("content") or ""))
                                 for m in turns[k + 1].observation
                                 if m.get("role") == "tool" and m.get("tool_call_id") in ids]


def _reward_dims(span: dict[str, Any]) -> list[dict[str, Any]]:
    """[{name, value}, …] of a reward span, primary first (emitter/reward.py's three shapes)."""
    attrs = span["attributes"]
    dims = [d for d in _indexed(_nested(attrs, _REWARD)) if isinstance(d, dict)]
    if dims:
        return [{"name": str(d.get("name")), "value": float(d["value"])} for d in dims
                if isinstance(d.get("value"), (int, float)) and not isinstance(d.get("value"), bool)]
    for key in ("agentops.task.output", "agentops.entity.output"):
        out = attrs.get(key)
        try:
            out = json.loads(out) if isinstance(out, str) else out
        except ValueError:
            out = None
        if isinstance(out, dict) and out.get("type") == "reward" and isinstance(out.get("value"), (int, float)):
            return [{"name": "primary", "value": float(out["value"])}]
    if span["name"] == "agentlightning.annotation" and isinstance(attrs.get("reward"), (int, float)):
        return [{"name": "primary", "value": float(attrs["reward"])}]
    return []


def _match_rewards(spans: list[dict[str, Any]], calls: list[dict[str, Any]]) -> dict[int, list[dict[str, Any]]]:
    """Rewards to calls by RewardMatchPolicy.FIRST_OCCURRENCE: in start-time order, a reward
    goes to the latest call that ended before it started and has no reward yet."""
    index = {c["span_id"]: k for k, c in enumerate(calls)}
    seen: list[tuple[int, float]] = []
    out: dict[int, list[dict[str, Any]]] = {}
    for span in sorted(spans, key=lambda s: s.get("start_time") or 0.0):
        if span["span_id"] in index:
            seen.append((index[span["span_id"]], span.get("end_time") or 0.0))
        dims = _reward_dims(span)
        if not dims:
            continue
        for k, ended in reversed(seen):
            if ended > (span.get("start_time") or 0.0) or k in out:
                continue
            out[k] = dims
            break
    return out


def _tools(attrs: dict[str, Any]) -> list[dict[str, Any]] | None:
    functions = [f for f in _indexed(_nested(attrs, "gen_ai.request.functions")) if isinstance(f, dict)]
    if not functions:
        return None
    out = []
    for f in functions:
        params = f.get("parameters")
        try:
            params = json.loads(params) if isinstance(params, str) else params
        except ValueError:
            pass
        out.append({"type": "function", "function": {"name": f.get("name"), "description": f.get("description"),
                                                     "parameters": params}})
    return out


def agentlightning_scores(traj: Trajectory) -> list[Score]:
    """Each turn's matched reward as a turn score `agentlightning` (primary dimension) and
    `agentlightning.NAME` (the others)."""
    out = []
    for turn in traj.turns:
        for n, dim in enumerate((turn.metadata.get("agentlightning") or {}).get("rewards") or []):
            out.append(Score(scorer=AGL_SCORER if n == 0 else f"{AGL_SCORER}.{dim['name']}",
                             trajectory_id=traj.id, value=dim["value"], level=ScoreLevel.TURN,
                             turn_index=turn.index, details={"source": "agentlightning", "name": dim["name"]}))
    return out
