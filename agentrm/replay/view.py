"""Replay view model: a trajectory plus its scores, flattened into what every replay shows.

The terminal view, the interactive player, the asciicast and the HTML page all render the
same `ReplayView`, so they cannot disagree about what a turn did. Building the view is pure
(no store, no terminal); `load_replay` is the one place that reads the store or a file.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agentrm.errors import InputError, NotFoundError
from agentrm.types import Advantage, Message, Score, ScoreLevel, Trajectory, Turn

# Ordinary terminal escapes and C0 controls except tab/newline: recorded output is shown as
# text, never allowed to drive the viewer's terminal.
_ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[@-Z\\-_]")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def clean_text(text: str | None) -> str:
    """Strip terminal escapes and control bytes (keeps \\n and \\t; \\r\\n becomes \\n)."""
    if not text:
        return ""
    text = _ANSI.sub("", text).replace("\r\n", "\n").replace("\r", "\n")
    text = _CONTROL.sub("", text)
    # Lone surrogates (undecodable bytes smuggled through JSON) cannot be written as UTF-8.
    return text.encode("utf-8", "surrogatepass").decode("utf-8", "replace")


@dataclass
class CallView:
    """One tool call of a turn and what it returned."""

    call_id: str
    name: str
    arguments: str  # pretty JSON, or the raw string when it did not parse
    command: str | None = None  # shell command when the tool is shell-like
    error: str | None = None  # why the call was an invalid action
    output: str | None = None  # None = no result recorded
    exit_code: int | None = None
    timed_out: bool = False
    truncated: bool = False
    duration_s: float | None = None
    events: list[tuple[float, str]] | None = None  # (seconds since command start, chunk)


@dataclass
class TurnView:
    index: int
    reasoning: str
    calls: list[CallView]
    scores: dict[str, float | None] = field(default_factory=dict)
    started_at: float | None = None
    duration_s: float | None = None
    valid: bool = True
    prompt_tokens: int | None = None
    completion_tokens: int | None = None


@dataclass
class ReplayView:
    trajectory_id: str
    task_id: str
    exit_status: str
    reward: float | None
    policy: str | None
    run_id: str | None
    instruction: str
    turns: list[TurnView]
    final: str = ""  # text of messages after the last turn that are not tool results
    trajectory_scores: dict[str, float | None] = field(default_factory=dict)
    score_ranges: dict[str, tuple[float, float]] = field(default_factory=dict)
    patch: str | None = None  # a SWE-bench prediction's diff (None: the trajectory has none)
    verdict: str = ""  # the harness's status for that patch: resolved, unresolved, …

    @property
    def title(self) -> str:
        return f"{self.task_id} · {self.trajectory_id} · {self.exit_status}"


def _content_text(content: Any) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # OpenAI content parts
        return "\n".join(str(p.get("text", "")) if isinstance(p, dict) else str(p) for p in content)
    return json.dumps(content, ensure_ascii=False, default=str)


def _reasoning(assistant: Message) -> str:
    parts = [_content_text(assistant.get(k)) for k in ("reasoning_content", "reasoning", "content")]
    return clean_text("\n\n".join(p.strip() for p in parts if p and p.strip()))


def _command_of(arguments: dict[str, Any] | None) -> str | None:
    if not arguments:
        return None
    for key in ("command", "cmd", "script", "code"):
        value = arguments.get(key)
        if isinstance(value, str):
            return value
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return " ".join(value)
    return None


def _tool_messages(messages: Iterable[Message]) -> dict[str, Message]:
    return {m.get("tool_call_id", ""): m for m in messages if m.get("role") == "tool"}


def by_call_ids(turn: Turn) -> set[str]:
    return {c.id for c in turn.tool_calls}


def _call_views(turn: Turn, next_messages: list[Message]) -> list[CallView]:
    """Tool calls with results: recorded ToolResults first, else the following tool messages."""
    results = {r.call_id: r for r in turn.tool_results}
    by_id = _tool_messages(next_messages)
    unmatched = [m for m in next_messages if m.get("role") == "tool"]
    views = []
    for pos, call in enumerate(turn.tool_calls):
        if call.arguments is not None:
            args = json.dumps(call.arguments, indent=2, ensure_ascii=False)
        else:
            args = call.raw_arguments
        view = CallView(clean_text(call.id), clean_text(call.name), args,
                        _command_of(call.arguments), clean_text(call.error) or None)
        result = results.get(call.id)
        if result is None and pos < len(turn.tool_results) and not results.keys() & by_call_ids(turn):
            result = turn.tool_results[pos]  # ids were not recorded: match by position
        if result is not None:
            view.output = result.content
            view.exit_code, view.timed_out = result.exit_code, result.timed_out
            view.truncated, view.duration_s = result.truncated, result.duration_s
            view.events = [(float(t), str(c)) for t, c in result.output_events or []] or None
        else:
            message = by_id.get(call.id) or (unmatched[pos] if pos < len(unmatched) else None)
            if message is not None:
                view.output = _content_text(message.get("content"))
        views.append(view)
    return views


def _score_tables(trajectory_id: str, scores: Iterable[Score], advantages: Iterable[Advantage]):
    """Per-turn and per-trajectory values by label; a later row of the same label wins."""
    per_turn: dict[int, dict[str, float | None]] = {}
    whole: dict[str, float | None] = {}
    for s in scores:
        if s.trajectory_id != trajectory_id:
            continue
        if s.level == ScoreLevel.TRAJECTORY or s.turn_index is None:
            whole[clean_text(s.scorer)] = s.value
        else:
            per_turn.setdefault(s.turn_index, {})[clean_text(s.scorer)] = s.value
    advs = [a for a in advantages if a.trajectory_id == trajectory_id]
    estimators = {a.estimator for a in advs}
    for a in advs:
        label = "advantage" if len(estimators) == 1 else f"adv:{clean_text(a.estimator)}"
        per_turn.setdefault(a.turn_index, {})[label] = a.value
    return per_turn, whole


def score_ranges(turns: list[TurnView]) -> dict[str, tuple[float, float]]:
    """Bar scale per label: [0, 1] when every value fits, else symmetric around 0."""
    values: dict[str, list[float]] = {}
    for turn in turns:
        for label, value in turn.scores.items():
            if value is not None:
                values.setdefault(label, []).append(float(value))
    ranges = {}
    for label, vs in values.items():
        if all(0.0 <= v <= 1.0 for v in vs):
            ranges[label] = (0.0, 1.0)
        else:
            m = max(abs(v) for v in vs) or 1.0
            ranges[label] = (-m, m)
    return ranges


def build_view(traj: Trajectory, scores: Iterable[Score] = (),
               advantages: Iterable[Advantage] = ()) -> ReplayView:
    """Flatten a trajectory (and its stored scores) into the replay view model."""
    per_turn, whole = _score_tables(traj.id, scores, advantages)
    turns = []
    for pos, turn in enumerate(traj.turns):
        following = traj.turns[pos + 1].observation if pos + 1 < len(traj.turns) else traj.tail
        turns.append(TurnView(
            index=turn.index, reasoning=_reasoning(turn.assistant),
            calls=_call_views(turn, following), scores=dict(per_turn.get(turn.index, {})),
            started_at=turn.started_at, duration_s=turn.duration_s, valid=turn.valid,
            prompt_tokens=turn.prompt_tokens, completion_tokens=turn.completion_tokens))
    instruction = ""
    first_obs = traj.turns[0].observation if traj.turns else []
    for message in first_obs:
        if message.get("role") == "user":
            instruction = clean_text(_content_text(message.get("content")))
    final = "\n".join(clean_text(_content_text(m.get("content"))) for m in traj.tail
                      if m.get("role") != "tool" and m.get("content"))
    return ReplayView(
        trajectory_id=clean_text(traj.id), task_id=clean_text(traj.task_id),
        exit_status=clean_text(getattr(traj.exit_status, "value", str(traj.exit_status))),
        reward=traj.reward, policy=clean_text(traj.policy) or None,
        run_id=clean_text(traj.run_id) or None, instruction=instruction,
        turns=turns, final=final, trajectory_scores=whole, score_ranges=score_ranges(turns),
        patch=_patch(traj), verdict=clean_text(str(_swebench(traj).get("status") or "")))


def _swebench(traj: Trajectory) -> dict[str, Any]:
    found = (traj.metadata or {}).get("swebench")
    return found if isinstance(found, dict) else {}


def _patch(traj: Trajectory) -> str | None:
    patch = (traj.metadata or {}).get("model_patch")
    return None if patch is None else clean_text(str(patch))


def require_turns(traj: Trajectory, where: str) -> Trajectory:
    """Something to show: turns, or a SWE-bench prediction's patch (gold and empty
    predictions are stored with no turns; their replay is the patch and its verdict)."""
    if not traj.turns and _patch(traj) is None:
        raise InputError(f"trajectory {traj.id!r} has no turns to replay", path=where)
    return traj


def load_trajectory(source: str, db_url: str | None, index: int = 0) -> tuple[Trajectory, bool]:
    """A trajectory from a file (JSONL/ATIF/.traj; the `index`-th) or from the store by id.

    Returns (trajectory, from_store). A path that exists is read as a file; anything else is
    looked up as an id, so an unknown id raises the store's NotFoundError.
    """
    path = Path(source)
    if path.exists():
        from agentrm.traces.io import read_trajectories

        if path.is_dir():
            raise InputError("is a directory, expected a trajectory file", path=source)
        chosen, count = None, 0
        for traj in read_trajectories(path):  # read to the end: a truncated file is an error
            if count == index:
                chosen = traj
            count += 1
        if chosen is None:
            raise InputError(f"no trajectory at --index {index} (the file has {count})",
                             path=source)
        return require_turns(chosen, source), False
    if path.suffix in (".jsonl", ".json", ".traj", ".gz"):
        raise InputError("no such file", path=source)
    from agentrm.traces import open_store

    store = open_store(db_url, must_exist=True)
    try:
        traj = store.get_trajectory(source)
    except NotFoundError as exc:
        raise NotFoundError(f"{exc}{id_hint(store, source)}") from None
    return require_turns(traj, f"{db_url} trajectory {source}"), True


def id_hint(store: Any, text: str, shown: int = 3) -> str:
    """For an unknown trajectory id that names a run, group or task instead (people type the
    group `RUN/TASK` for `RUN/TASK/0`): '; it is a group: a, b, … (N)', else ''."""
    for kind, key in (("group", "group_id"), ("run", "run_id"), ("task", "task_id")):
        rows = store.summaries(**{key: text}, limit=shown + 1)
        if rows:
            ids = ", ".join(str(r["id"]) for r in rows[:shown]) + (", …" if len(rows) > shown else "")
            return f"; it is a {kind}, whose trajectories are {ids} (agentrm traces list --{kind} {text})"
    return ""


def load_scores(db_url: str, trajectory_id: str) -> tuple[list[Score], list[Advantage]]:
    from agentrm.traces import open_store

    store = open_store(db_url, must_exist=True)
    return (store.get_scores(trajectory_ids=[trajectory_id]),
            store.get_advantages(trajectory_ids=[trajectory_id]))
