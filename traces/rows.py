"""Pure conversions between the core dataclasses and table rows (no database access here)."""

from __future__ import annotations

import time
from typing import Any

from agentrm.hashing import anchor_key
from agentrm.traces.schema import TRAJECTORY_LEVEL
from agentrm.types import (
    Advantage,
    ExitStatus,
    Score,
    ScoreLevel,
    Task,
    TokenTrace,
    ToolResult,
    Trajectory,
    Turn,
)


def tool_result_dict(r: ToolResult) -> dict[str, Any]:
    # explicit rather than dataclasses.asdict, which deep-copies and dominated bulk imports
    events = None if r.output_events is None else [[t, chunk] for t, chunk in r.output_events]
    return {"call_id": r.call_id, "content": r.content, "exit_code": r.exit_code,
            "timed_out": r.timed_out, "truncated": r.truncated, "duration_s": r.duration_s,
            "output_events": events}


def tool_result_from_dict(data: dict[str, Any]) -> ToolResult:
    events = data.get("output_events")
    return ToolResult(
        call_id=data["call_id"], content=data.get("content", ""), exit_code=data.get("exit_code"),
        timed_out=bool(data.get("timed_out", False)), truncated=bool(data.get("truncated", False)),
        duration_s=data.get("duration_s"),
        output_events=None if events is None else [(float(t), str(c)) for t, c in events],
    )


def turn_row(trajectory_id: str, turn: Turn) -> dict[str, Any]:
    return {
        "trajectory_id": trajectory_id,
        "idx": turn.index,
        "observation": turn.observation,
        "assistant": turn.assistant,
        "anchor_key": turn.anchor_key or anchor_key(turn.observation),
        "tool_results": [tool_result_dict(r) for r in turn.tool_results] or None,
        "prompt_tokens": turn.prompt_tokens,
        "completion_tokens": turn.completion_tokens,
        "logprobs": turn.logprobs,
        "started_at": turn.started_at,
        "duration_s": turn.duration_s,
        "valid": bool(turn.valid),
        "metadata": turn.metadata or None,
        **token_columns(turn.tokens),
    }


TOKEN_COLS = ("prompt_prefix_len", "prompt_ids", "completion_ids", "tokenizer", "template_hash",
              "prompt_hash")


def token_columns(tok: TokenTrace | None) -> dict[str, Any]:
    """The turn's TokenTrace as columns (all NULL for a text-only turn)."""
    if tok is None:
        return dict.fromkeys(TOKEN_COLS)
    return {"prompt_prefix_len": tok.prefix_len, "prompt_ids": list(tok.prompt_ids),
            "completion_ids": list(tok.completion_ids), "tokenizer": tok.tokenizer or None,
            "template_hash": tok.template_hash or None, "prompt_hash": tok.prompt_hash or None}


def token_trace_from_row(m: Any) -> TokenTrace | None:
    if m.get("completion_ids") is None:
        return None
    return TokenTrace(prompt_ids=list(m["prompt_ids"] or []), completion_ids=list(m["completion_ids"]),
                      prefix_len=int(m["prompt_prefix_len"] or 0), tokenizer=m["tokenizer"] or "",
                      template_hash=m["template_hash"] or "", prompt_hash=m["prompt_hash"] or "")


def turn_from_row(row: Any) -> Turn:
    m = row._mapping
    return Turn(
        index=m["idx"], observation=list(m["observation"] or []), assistant=dict(m["assistant"]),
        anchor_key=m["anchor_key"],
        tool_results=[tool_result_from_dict(r) for r in m["tool_results"] or []],
        prompt_tokens=m["prompt_tokens"], completion_tokens=m["completion_tokens"],
        logprobs=m["logprobs"], started_at=m["started_at"], duration_s=m["duration_s"],
        valid=bool(m["valid"]), metadata=dict(m["metadata"] or {}),
        tokens=token_trace_from_row(m),
    )


def trajectory_row(traj: Trajectory, run_id: str | None = None) -> dict[str, Any]:
    status = ExitStatus(traj.exit_status)
    kind = status.failure_kind
    return {
        "id": traj.id, "run_id": run_id if run_id is not None else traj.run_id,
        "task_id": traj.task_id, "group_id": traj.group_id, "policy": traj.policy,
        "exit_status": status.value, "failure_kind": kind.value if kind else None,
        "reward": traj.reward, "answer": traj.answer, "metadata": traj.metadata or None,
        "tail": traj.tail or None, "n_turns": len(traj.turns), "started_at": time.time(),
        "ended_at": None if status is ExitStatus.RUNNING else time.time(),
    }


def trajectory_from_row(row: Any, turns: list[Turn]) -> Trajectory:
    m = row._mapping
    return Trajectory(
        id=m["id"], task_id=m["task_id"], group_id=m["group_id"], turns=turns,
        tail=list(m["tail"] or []), exit_status=ExitStatus(m["exit_status"]), reward=m["reward"],
        answer=m["answer"], policy=m["policy"], run_id=m["run_id"], metadata=dict(m["metadata"] or {}),
    )


def task_row(task: Task) -> dict[str, Any]:
    return {
        "id": task.id, "instruction": task.instruction, "image": task.image, "setup": task.setup,
        "answer": task.answer, "verifier": task.verifier, "network": bool(task.network),
        "metadata": task.metadata,
    }


def task_from_row(row: Any) -> Task:
    m = row._mapping
    return Task(id=m["id"], instruction=m["instruction"], image=m["image"],
                setup=list(m["setup"] or []), answer=m["answer"], verifier=dict(m["verifier"] or {}),
                network=bool(m["network"]), metadata=dict(m["metadata"] or {}))


def score_row(score: Score, now: float) -> dict[str, Any]:
    level = ScoreLevel(score.level)
    if level is ScoreLevel.TRAJECTORY:
        turn_index = TRAJECTORY_LEVEL
    elif score.turn_index is None:
        raise ValueError(f"turn-level score by {score.scorer} for {score.trajectory_id} has no turn_index")
    else:
        turn_index = int(score.turn_index)
    return {
        "scorer": score.scorer, "version": str(score.version), "config_hash": score.config_hash,
        "level": level.value, "trajectory_id": score.trajectory_id, "turn_index": turn_index,
        "value": None if score.value is None else float(score.value),
        "details": score.details or None, "created_at": now,
    }


def score_from_row(row: Any) -> Score:
    m = row._mapping
    level = ScoreLevel(m["level"])
    return Score(scorer=m["scorer"], trajectory_id=m["trajectory_id"], value=m["value"], level=level,
                 turn_index=None if level is ScoreLevel.TRAJECTORY else m["turn_index"],
                 version=m["version"], config_hash=m["config_hash"], details=dict(m["details"] or {}))


def advantage_row(adv: Advantage, now: float) -> dict[str, Any]:
    return {"estimator": adv.estimator, "config_hash": adv.config_hash,
            "trajectory_id": adv.trajectory_id, "turn_index": int(adv.turn_index),
            "value": float(adv.value), "details": adv.details or None, "created_at": now}


def advantage_from_row(row: Any) -> Advantage:
    m = row._mapping
    return Advantage(estimator=m["estimator"], trajectory_id=m["trajectory_id"],
                     turn_index=m["turn_index"], value=m["value"], config_hash=m["config_hash"],
                     details=dict(m["details"] or {}))
