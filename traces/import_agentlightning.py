"""Agent Lightning stored rollouts and spans as trajectories (agentlightning 0.3).

Input: what its store serves (`LightningStoreServer`: `GET /v1/agl/rollouts`, `…/attempts`,
`/v1/agl/spans?rollout_id=…`; a `{"items": [...]}` page each), a JSON list of such items or
JSON lines, as one file or a directory of them. Items are told apart by their keys: a span has
`span_id`, a rollout `input`, an attempt `attempt_id` without `span_id`.

One trajectory per attempt that has spans (id: the rollout id; `ROLLOUT/ATTEMPT` when a rollout
has several). Each LLM call span is one turn (agentlightning_spans.py): the prompt after its
last assistant message is the observation (as `agentrm proxy` records turns), the reply with
its tool calls, the call's sampled ids and log-probs; rewards go to calls by Agent Lightning's
FIRST_OCCURRENCE rule and become turn scores `agentlightning` (`agentlightning.NAME` for other
dimensions); the last reward span is the trajectory's reward.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from agentrm.errors import InputError
from agentrm.traces import agentlightning_spans as S
from agentrm.types import ExitStatus, Score, ScoreLevel, ToolResult, Trajectory, Turn

AGL_SCORER = "agentlightning"
_STATUS = {"failed": ExitStatus.CRASHED, "unresponsive": ExitStatus.CRASHED,
           "cancelled": ExitStatus.CRASHED, "timeout": ExitStatus.TIME_LIMIT,
           "queuing": ExitStatus.RUNNING, "preparing": ExitStatus.RUNNING,
           "running": ExitStatus.RUNNING, "requeuing": ExitStatus.RUNNING}
Item = dict[str, Any]


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
    files = [path]
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith(".")
                       and p.suffix.lower() in (".json", ".jsonl"))
        if not files:
            raise InputError("is a directory with no .json or .jsonl file in it", path=str(path))
    spans: list[Item] = []
    rollouts: dict[str, Item] = {}
    attempts: dict[tuple[str, str], Item] = {}
    for file in files:
        for where, item in _items(file):
            kind = _kind(item)
            if kind == "span":
                _check_span(item, file, where)
                spans.append(item)
            elif kind == "rollout":
                rollouts[item["rollout_id"]] = item
                current = item.get("attempt")  # an AttemptedRollout carries its latest attempt
                if isinstance(current, dict) and isinstance(current.get("attempt_id"), str):
                    attempts.setdefault((item["rollout_id"], current["attempt_id"]), current)
            elif kind == "attempt":
                attempts[(item["rollout_id"], item["attempt_id"])] = item
            else:
                raise InputError(f"{where} is not an Agent Lightning span, rollout or attempt",
                                 path=str(file))
    if not spans and not rollouts:
        raise InputError("no Agent Lightning spans or rollouts", path=str(path))
    return _trajectories(spans, rollouts, attempts)


def _items(file: Path) -> list[tuple[str, Any]]:
    from agentrm.traces.formats import _load

    if file.suffix.lower() == ".jsonl":
        out = []
        try:
            lines = file.read_text(encoding="utf-8").splitlines()
        except UnicodeDecodeError as exc:
            raise InputError(f"not UTF-8 (byte {exc.start})", path=str(file)) from None
        for n, line in enumerate(lines, start=1):
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
    raise InputError("not Agent Lightning store data (expected its API's {\"items\": [...]}, a "
                     "list of spans, rollouts or attempts, or JSON lines)", path=str(file))


def _kind(item: Any) -> str | None:
    if not isinstance(item, dict) or not isinstance(item.get("rollout_id"), str):
        return None
    if "span_id" in item:
        return "span"
    if "input" in item:
        return "rollout"
    return "attempt" if isinstance(item.get("attempt_id"), str) else None


def _check_span(span: Item, file: Path, where: str) -> None:
    for key, kind in (("attempt_id", str), ("span_id", str), ("name", str), ("sequence_id", int),
                      ("attributes", dict)):
        if not isinstance(span.get(key), kind):
            raise InputError(f"{where}: span needs {key} ({kind.__name__})", path=str(file))


def _trajectories(spans: list[Item], rollouts: dict[str, Item],
                  attempts: dict[tuple[str, str], Item]) -> Iterator[Trajectory]:
    by_attempt: dict[str, dict[str, list[Item]]] = {}
    for span in spans:
        attempts_of = by_attempt.setdefault(span["rollout_id"], {})
        attempts_of.setdefault(span["attempt_id"], []).append(span)
    for rollout_id in dict.fromkeys([*rollouts, *by_attempt]):
        rollout = rollouts.get(rollout_id)
        latest = ((rollout or {}).get("attempt") or {}).get("attempt_id")
        groups = by_attempt.get(rollout_id) or {str(latest): []}
        for attempt_id, group in groups.items():
            traj_id = rollout_id if len(groups) == 1 else f"{rollout_id}/{attempt_id}"
            yield _trajectory(traj_id, rollout, attempts.get((rollout_id, attempt_id)), group)


def _trajectory(traj_id: str, rollout: Item | None, attempt: Item | None,
                spans: list[Item]) -> Trajectory:
    spans = sorted(spans, key=lambda s: (s["sequence_id"], s.get("start_time") or 0.0))
    calls = S.llm_calls(spans)
    turns = [_turn(k, call, spans) for k, call in enumerate(calls)]
    _link(turns, calls)
    for k, dims in S.match_rewards(spans, calls).items():
        turns[k].metadata["agentlightning"]["rewards"] = dims
    final = S.final_reward(spans)
    rollout_id = traj_id.split("/")[0]
    task_id = _task_id(rollout, rollout_id)
    rollout, attempt = rollout or {}, attempt or {}
    status = attempt.get("status") or rollout.get("status")
    first = calls[0]["attributes"] if calls else {}
    exceptions = [{k: v for k, v in s["attributes"].items() if k.startswith("exception.")}
                  for s in spans if any(k.startswith("exception.") for k in s["attributes"])]
    return Trajectory(
        id=traj_id, task_id=task_id, group_id=task_id, turns=turns,
        exit_status=_STATUS.get(str(status), ExitStatus.IMPORTED),
        reward=final[0]["value"] if final else None,
        policy=first.get("gen_ai.response.model") or first.get("gen_ai.request.model"),
        metadata={"format": "agentlightning", "agentlightning": {
            "rollout_id": rollout_id,
            "attempt_id": attempt.get("attempt_id") or (spans[0]["attempt_id"] if spans else None),
            "status": rollout.get("status"), "attempt_status": attempt.get("status"),
            "mode": rollout.get("mode"), "input": rollout.get("input"), "final_reward": final,
            "tools": S.tools(calls[0]) if calls else None, "exceptions": exceptions}})


def _task_id(rollout: Item | None, rollout_id: str) -> str:
    """The task a rollout attempted: its input's `task_id` or `id`, else a hash of its input
    (rollouts of one input form a group), else (no rollout record) the rollout id."""
    if rollout is None or "input" not in rollout:
        return rollout_id
    task = rollout["input"]
    if isinstance(task, dict):
        for key in ("task_id", "id"):
            if isinstance(task.get(key), (str, int)) and not isinstance(task.get(key), bool):
                return str(task[key])
    text = json.dumps(task, sort_keys=True, ensure_ascii=False, default=str)
    return "agl-" + hashlib.sha256(text.encode()).hexdigest()[:12]


def _turn(index: int, call: Item, spans: list[Item]) -> Turn:
    from agentrm.hashing import anchor_key
    from agentrm.traces.messages import MessageError, validate_messages
    from agentrm.types import ToolCall

    attrs = call["attributes"]
    prompt = S.prompt(call)
    last = max((i for i, m in enumerate(prompt) if m.get("role") == "assistant"), default=-1)
    observation = prompt[last + 1:]
    reply = S.reply(call, spans)
    try:
        validate_messages([*prompt, reply])
    except MessageError as exc:
        raise InputError(f"rollout {call['rollout_id']}, span {call['span_id']}: {exc}") from None
    start, end = call.get("start_time"), call.get("end_time")
    duration = None
    if isinstance(start, (int, float)) and isinstance(end, (int, float)):
        duration = end - start
    return Turn(index=index, observation=observation, assistant=reply,
                anchor_key=anchor_key(observation),
                prompt_tokens=attrs.get("gen_ai.usage.prompt_tokens"),
                completion_tokens=attrs.get("gen_ai.usage.completion_tokens"),
                logprobs=S.logprobs(attrs.get("logprobs.content")), started_at=start,
                duration_s=duration,
                valid=all(ToolCall.arguments_valid(c["function"]["arguments"])
                          for c in reply.get("tool_calls") or []),
                metadata={"agentlightning": {
                    "span_id": call["span_id"], "response_id": attrs.get("gen_ai.response.id"),
                    "finish_reason": attrs.get("gen_ai.completion.0.finish_reason")}})


def _link(turns: list[Turn], calls: list[Item]) -> None:
    """Sampled ids (each prompt stored against the previous one) and each turn's tool results,
    read from the next call's prompt (the messages answering its calls)."""
    from agentrm.traces.formats import _tokens

    previous: list[int] | None = None
    for k, (turn, call) in enumerate(zip(turns, calls, strict=True)):
        attrs = call["attributes"]
        ids = {"prompt_token_ids": S.token_ids(attrs.get("prompt_token_ids")),
               "completion_token_ids": S.token_ids(attrs.get("response_token_ids"))}
        turn.tokens, previous = _tokens(ids, previous)
        answered = {c["id"] for c in turn.assistant.get("tool_calls") or []}
        if k + 1 < len(turns) and answered:
            turn.tool_results = [
                ToolResult(call_id=m["tool_call_id"], content=str(m.get("content") or ""))
                for m in turns[k + 1].observation
                if m.get("role") == "tool" and m.get("tool_call_id") in answered]


def agentlightning_scores(traj: Trajectory) -> list[Score]:
    """Each turn's matched reward as a turn score `agentlightning` (primary dimension) and
    `agentlightning.NAME` (the others)."""
    out = []
    for turn in traj.turns:
        for n, dim in enumerate((turn.metadata.get("agentlightning") or {}).get("rewards") or []):
            out.append(Score(scorer=AGL_SCORER if n == 0 else f"{AGL_SCORER}.{dim['name']}",
                             trajectory_id=traj.id, value=dim["value"], level=ScoreLevel.TURN,
                             turn_index=turn.index,
                             details={"source": "agentlightning", "name": dim["name"]}))
    return out
