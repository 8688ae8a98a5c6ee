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
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from agentrm.errors import InputError
from agentrm.traces.messages import MessageError, split_turns
from agentrm.types import ExitStatus, Message, Score, ScoreLevel, Trajectory

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
    if b'"rollout_id"' in head and (b'"span_id"' in head or b'"attempt_id"' in head):
        return "agentlightning"  # its store's spans, rollouts or attempts
    if b'"schema_version"' in head and b"ATIF" in head:
        return "atif"
    if b'"trajectory_format"' in head or b'"mini_version"' in head:
        return "mini-swe-agent"
    if b'"trajectory"' in head or b'"history"' in head:
        return "swe-agent"
    if b'"steps"' in head:
        return "atif"
    raise InputError("cannot tell the format (expected .jsonl, ATIF .json, SWE-agent .traj or "
                     "Agent Lightning spans); pass --format", path=str(path))


def _finish(path: Path, messages: list[Message], **fields: Any) -> Trajectory:
    try:
        turns, tail = split_turns(messages)
    except MessageError as exc:
        raise InputError(f"after conversion: {exc}", path=str(path)) from None
    fields.setdefault("group_id", fields["task_id"])
    return Trajectory(turns=turns, tail=tail, **fields)


def _text(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, list):  # content parts
        return "".join(str(p.get("text", "")) if isinstance(p, dict) else str(p) for p in value)
    return json.dumps(value)


# -- ATIF --------------------------------------------------------------------------------------
ATIF_SCORER = "atif"  # imported step rewards become turn-level scores of this name
ATIF_VERSION = "ATIF-v1.4"
_TOKEN_METRICS = ("prompt_tokens", "completion_tokens", "logprobs", "prompt_token_ids", "completion_token_ids")
_ROOT_KEPT = ("format", "agent", "final_metrics", "notes")  # trajectory.metadata keys read from the root


def _step_reward(step: dict[str, Any]) -> tuple[float | None, str | None]:
    """A step's reward and where it was: ATIF has no reward field of its own (its MetricsSchema
    forbids unknown keys), so producers put it in `metrics.extra.reward` or `extra.reward`."""
    for where, holder in (("metrics.extra", (step.get("metrics") or {}).get("extra")),
                          ("extra", step.get("extra"))):
        value = holder.get("reward") if isinstance(holder, dict) else None
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value), where
    return None, None


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


def _step_meta(step: dict[str, Any]) -> dict[str, Any]:
    """What a step holds beyond its messages and the turn's own fields, kept so the export can
    give it back: ids, timestamps, model, effort, extra, metrics other than tokens, the
    results' extra keys (subagent refs), the message when it is not a plain string."""
    meta = {k: step[k] for k in ("step_id", "timestamp", "model_name", "reasoning_effort", "extra")
            if k in step}
    if not isinstance(step.get("message"), str):
        meta["message"] = step.get("message")
    if step.get("source") != "agent":
        if "observation" in step:
            meta["observation"] = step["observation"]
        return meta
    metrics = dict(step.get("metrics") or {})
    rest = {k: v for k, v in metrics.items() if k not in _TOKEN_METRICS}
    if "completion_token_ids" in metrics and "prompt_token_ids" not in metrics:
        rest["completion_token_ids"] = metrics["completion_token_ids"]  # no prompt: not a TokenTrace
    reward, at = _step_reward(step)
    if reward is not None:
        meta["reward"], meta["reward_at"] = reward, at
        holder = (rest if at == "metrics.extra" else meta).get("extra")
        if isinstance(holder, dict):
            holder = {k: v for k, v in holder.items() if k != "reward"}
            if at == "metrics.extra":
                rest["extra"] = holder
            else:
                meta["extra"] = holder
    if "metrics" in step:
        meta["metrics"] = rest
    results = (step.get("observation") or {}).get("results") if "observation" in step else None
    if results is not None:
        meta["results"] = [{k: v for k, v in r.items() if k not in ("source_call_id", "content")}
                           if isinstance(r, dict) else {} for r in results]
    if "reasoning_content" in step and not step.get("reasoning_content"):
        meta["reasoning_content"] = step["reasoning_content"]
    if "tool_calls" in step:
        meta["tool_calls"] = [{"string_arguments": isinstance(c.get("arguments"), str),
                               "has_arguments": "arguments" in c}
                              for c in step.get("tool_calls") or [] if isinstance(c, dict)]
    return meta


def _epoch(timestamp: Any) -> float | None:
    from datetime import datetime

    if not isinstance(timestamp, str):
        return None
    try:
        return datetime.fromisoformat(timestamp.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def _tokens(metrics: dict[str, Any], previous: list[int] | None) -> tuple[Any, list[int] | None]:
    """A TokenTrace from a step's prompt/completion ids (the prompt stored as a reference to the
    previous step's prompt plus its new ids), and the full prompt for the next step."""
    from agentrm.types import TokenTrace, token_hash

    prompt, completion = metrics.get("prompt_token_ids"), metrics.get("completion_token_ids")
    if not (isinstance(prompt, list) and isinstance(completion, list)):
        return None, None
    prefix = 0
    if previous:
        limit = min(len(previous), len(prompt))
        while prefix < limit and previous[prefix] == prompt[prefix]:
            prefix += 1
    return TokenTrace(prompt_ids=list(prompt[prefix:]), completion_ids=list(completion), prefix_len=prefix,
                      prompt_hash=token_hash(list(prompt))), list(prompt)


def read_atif(path: Path) -> Iterator[Trajectory]:
    """One ATIF document as a trajectory; nothing in it is dropped: what has no place in a
    turn goes to `turn.metadata["atif"]` / `trajectory.metadata["atif"]` (see `write_atif`),
    and a step's reward becomes an `atif` score when the trajectory is imported."""
    doc = _load(path)
    steps = doc.get("steps") if isinstance(doc, dict) else None
    if not isinstance(steps, list):
        raise InputError("ATIF root must be an object with a 'steps' list", path=str(path))
    messages: list[Message] = []
    agent_steps: list[dict[str, Any]] = []
    other_steps: dict[str, dict[str, Any]] = {}
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
            agent_steps.append(step)
        else:
            other_steps[str(i + 1)] = _step_meta(step)
    extra = doc.get("extra") or {}
    traj_id = str(doc.get("trajectory_id") or doc.get("session_id") or path.stem)
    task_id = str(extra.get("task_id") or doc.get("session_id") or path.stem)
    reward = extra.get("reward")
    meta = {"format": doc.get("schema_version"), "agent": doc.get("agent"),
            "final_metrics": doc.get("final_metrics"), "notes": doc.get("notes")}
    root = {k: v for k, v in doc.items() if k not in ("steps", "schema_version", "agent", "final_metrics", "notes")}
    if isinstance(root.get("extra"), dict) and "reward" in root["extra"]:
        root["extra"] = {k: v for k, v in root["extra"].items() if k != "reward"}
        root["reward_in_extra"] = True
    metadata = {k: v for k, v in meta.items() if v is not None}
    metadata["atif"] = {"root": root, "steps": other_steps,
                        "present": [k for k in _ROOT_KEPT[1:] if k in doc]}
    group = extra.get("group_id")  # written by write_atif for trajectories agentrm recorded
    status = extra.get("exit_status")
    traj = _finish(path, messages, id=traj_id, task_id=task_id,
                   group_id=group if isinstance(group, str) and group else task_id,
                   exit_status=ExitStatus(status) if status in ExitStatus._value2member_map_ else ExitStatus.IMPORTED,
                   reward=float(reward) if isinstance(reward, (int, float)) else None,
                   policy=(doc.get("agent") or {}).get("model_name"), metadata=metadata)
    previous: list[int] | None = None
    for turn, step in zip(traj.turns, agent_steps, strict=True):
        m = step.get("metrics") or {}
        turn.prompt_tokens, turn.completion_tokens = m.get("prompt_tokens"), m.get("completion_tokens")
        turn.logprobs = m.get("logprobs")
        turn.tokens, previous = _tokens(m, previous)
        turn.started_at = _epoch(step.get("timestamp"))
        turn.metadata = {"atif": _step_meta(step)}
    yield traj


def imported_scores(traj: Trajectory) -> list[Score]:
    """The step rewards a file carried (ATIF `metrics.extra.reward`) as turn-level scores, and
    the rewards of Harbor and Agent Lightning imports, written with the trajectory when it is
    imported."""
    out = _harness_scores(traj)
    if "atif" not in traj.metadata:  # the import path calls this for every trajectory of any format
        return out
    for turn in traj.turns:
        reward = (turn.metadata.get("atif") or {}).get("reward")
        if isinstance(reward, (int, float)) and not isinstance(reward, bool):
            out.append(Score(scorer=ATIF_SCORER, trajectory_id=traj.id, value=float(reward),
                             level=ScoreLevel.TURN, turn_index=turn.index,
                             details={"source": "atif", "at": turn.metadata["atif"].get("reward_at")}))
    return out


def _harness_scores(traj: Trajectory) -> list[Score]:
    """Scores other harnesses recorded: Harbor's verifier keys, Agent Lightning's rewards."""
    if "harbor" in traj.metadata:
        from agentrm.traces.import_harbor import harbor_scores
        return harbor_scores(traj)
    if "agentlightning" in traj.metadata:
        from agentrm.traces.import_agentlightning import agentlightning_scores
        return agentlightning_scores(traj)
    return []


def _iso(epoch: float | None) -> str | None:
    from datetime import datetime, timezone

    if epoch is None:
        return None
    return datetime.fromtimestamp(epoch, tz=timezone.utc).isoformat().replace("+00:00", "Z")


def _arguments(raw: Any, as_string: bool) -> Any:
    if as_string or not isinstance(raw, str):
        return raw
    try:
        value = json.loads(raw)
    except ValueError:
        return raw
    return value if isinstance(value, dict) else raw


def _agent_step(turn: Any, step_id: int, results: list[Message], reward: float | None,
                full_prompt: list[int] | None) -> dict[str, Any]:
    meta = dict((turn.metadata or {}).get("atif") or {})
    msg = turn.assistant
    step: dict[str, Any] = {"step_id": step_id}
    if "timestamp" in meta or turn.started_at is not None:
        step["timestamp"] = meta.get("timestamp", _iso(turn.started_at))
    step["source"] = "agent"
    for key in ("model_name", "reasoning_effort"):
        if key in meta:
            step[key] = meta[key]
    step["message"] = meta["message"] if "message" in meta else (_text(msg.get("content")) or "")
    if msg.get("reasoning_content") or "reasoning_content" in meta:
        step["reasoning_content"] = msg.get("reasoning_content") or meta.get("reasoning_content")
    calls = msg.get("tool_calls") or []
    shapes = meta.get("tool_calls") or []
    if calls or "tool_calls" in meta:
        step["tool_calls"] = []
        for j, call in enumerate(calls):
            shape = shapes[j] if j < len(shapes) else {}
            out = {"tool_call_id": call.get("id"), "function_name": (call.get("function") or {}).get("name")}
            if shape.get("has_arguments", True):
                out["arguments"] = _arguments((call.get("function") or {}).get("arguments"),
                                              shape.get("string_arguments", False))
            step["tool_calls"].append(out)
    if results or "results" in meta:
        extras = meta.get("results") or []
        step["observation"] = {"results": [
            {**({"source_call_id": r["tool_call_id"]} if r.get("role") == "tool" else {}),
             "content": r.get("content"), **(extras[k] if k < len(extras) else {})}
            for k, r in enumerate(results)]}
    metrics: dict[str, Any] = {}
    if turn.prompt_tokens is not None:
        metrics["prompt_tokens"] = turn.prompt_tokens
    if turn.completion_tokens is not None:
        metrics["completion_tokens"] = turn.completion_tokens
    rest = dict(meta.get("metrics") or {})
    metrics.update({k: v for k, v in rest.items() if k not in ("extra", "completion_token_ids")})
    if turn.tokens is not None and full_prompt is not None:
        metrics["prompt_token_ids"] = full_prompt
        metrics["completion_token_ids"] = list(turn.tokens.completion_ids)
    elif "completion_token_ids" in rest:
        metrics["completion_token_ids"] = rest["completion_token_ids"]
    if turn.logprobs is not None:
        metrics["logprobs"] = turn.logprobs
    extra = rest.get("extra")
    at = meta.get("reward_at", "metrics.extra")
    if reward is not None and at == "metrics.extra":
        extra = {**(extra or {}), "reward": reward}
    if extra is not None:
        metrics["extra"] = extra
    if metrics or "metrics" in meta:
        step["metrics"] = metrics
    step_extra = meta.get("extra")
    if reward is not None and at == "extra":
        step_extra = {**(step_extra or {}), "reward": reward}
    if step_extra is not None:
        step["extra"] = step_extra
    return step


def _plain_step(msg: Message, step_id: int, meta: dict[str, Any]) -> dict[str, Any]:
    step: dict[str, Any] = {"step_id": step_id}
    if "timestamp" in meta:
        step["timestamp"] = meta["timestamp"]
    step["source"] = msg["role"] if msg["role"] in ("system", "user") else "user"
    step["message"] = meta["message"] if "message" in meta else (_text(msg.get("content")) or "")
    step.update({k: v for k, v in meta.items() if k not in ("step_id", "timestamp", "message")})
    return step


def write_atif(traj: Trajectory, scores: Iterable[Score] = ()) -> dict[str, Any]:
    """The trajectory as an ATIF document, the inverse of `read_atif`: an imported file comes
    back as it was read, with its step rewards taken from the `atif` scores (so a rescored
    step exports its new value) and the trajectory's reward in `extra.reward`. Trajectories
    agentrm recorded itself get the same mapping with their sampled ids and log-probs."""
    from agentrm.types import full_prompts

    step_rewards = {s.turn_index: s.value for s in scores
                    if s.scorer == ATIF_SCORER and ScoreLevel(s.level) is ScoreLevel.TURN}
    atif = traj.metadata.get("atif") or {}
    others: dict[str, Any] = atif.get("steps") or {}
    prompts = full_prompts(traj.turns)
    steps: list[dict[str, Any]] = []

    def plain(messages: list[Message]) -> None:
        for msg in messages:
            steps.append(_plain_step(msg, len(steps) + 1, others.get(str(len(steps) + 1)) or {}))

    for k, turn in enumerate(traj.turns):
        following = traj.turns[k + 1].observation if k + 1 < len(traj.turns) else traj.tail
        meta = (turn.metadata or {}).get("atif") or {}
        if "results" in meta:
            n = len(meta["results"])
        else:  # recorded here: the tool messages answering this turn are its results
            n = next((i for i, m in enumerate(following) if m.get("role") != "tool"), len(following))
        if k == 0:
            plain(turn.observation)
        reward = step_rewards.get(turn.index, meta.get("reward") if not step_rewards else None)
        steps.append(_agent_step(turn, len(steps) + 1, following[:n], reward, prompts[k]))
        plain(following[n:])
    if not traj.turns:
        plain(traj.tail)
    root = dict(atif.get("root") or {})
    present = atif.get("present")
    doc: dict[str, Any] = {"schema_version": traj.metadata.get("format") or ATIF_VERSION}
    if "session_id" not in root:
        doc["session_id"] = traj.id
    if present is None:
        doc["agent"] = {"name": "agentrm", "version": _version(), "model_name": traj.policy}
    elif "agent" in present:
        doc["agent"] = traj.metadata.get("agent")
    reward_in_extra = root.pop("reward_in_extra", False)
    extra = root.pop("extra", None)
    doc.update(root)
    doc["steps"] = steps
    if traj.metadata.get("notes") is not None:
        doc["notes"] = traj.metadata["notes"]
    if traj.metadata.get("final_metrics") is not None:
        doc["final_metrics"] = traj.metadata["final_metrics"]
    elif present is None:
        doc["final_metrics"] = {"total_prompt_tokens": sum(t.prompt_tokens or 0 for t in traj.turns),
                                "total_completion_tokens": sum(t.completion_tokens or 0 for t in traj.turns),
                                "total_steps": len(steps)}
    if present is None:
        extra = {"task_id": traj.task_id, "group_id": traj.group_id, "exit_status": traj.exit_status.value}
    if traj.reward is not None and (reward_in_extra or present is None):
        extra = {**(extra or {}), "reward": traj.reward}
    if extra is not None:
        doc["extra"] = extra
    return doc


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("agentrm")
    except Exception:  # noqa: BLE001 - not installed as a distribution
        return "0"


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


def _read_harbor(path: Path) -> Iterator[Trajectory]:
    from agentrm.traces.import_harbor import read_harbor  # it reads ATIF with this module
    return read_harbor(path)


def _read_agentlightning(path: Path) -> Iterator[Trajectory]:
    from agentrm.traces.import_agentlightning import read_agentlightning
    return read_agentlightning(path)


READERS = {"atif": read_atif, "swe-agent": read_swe_agent, "mini-swe-agent": read_mini_swe_agent,
           "harbor": _read_harbor, "agentlightning": _read_agentlightning}
