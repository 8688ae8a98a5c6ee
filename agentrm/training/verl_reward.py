"""The reward verl's reward workers compute for a recipe of `agentrm train --trainer verl`.

verl calls the recipe's `compute_score(data_source, solution_str, ground_truth, extra_info)` once
per rollout. When the rollout ran in agentrm's agent loop (agentrm.training.verl_agent_loop),
`extra_info` carries the whole trajectory, its exit status and the outcome the task's verifier
gave inside the sandbox before it was removed: that is the `outcome` term, also for verifiers
that run a command in the sandbox. Without it (verl's own single-turn or tool agent loops), the
response text is parsed for the last `submit` call and answer-checked; a task whose verifier
needs the sandbox state then abstains, never scores 0.

Other terms of the SPEC (prm, submitted, judge, …) come from agentrm's scorers, loaded once per
worker process, or from a running `agentrm serve` (`server`), which gets the trajectory record.
verl needs a number: an abstention is returned as 0.0 with `agentrm_abstained` = 1 in the metrics.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from agentrm.types import ExitStatus, Score, ScoreLevel, Task, Trajectory, Turn

log = logging.getLogger("agentrm.training.verl_reward")
TRAJECTORY_KEY = "agentrm_trajectory"  # extra field the agent loop fills (a JSON record)
_SCORERS: dict[str, Any] = {}  # per reward-worker process: models load once


def task_of(extra_info: dict[str, Any]) -> Task:
    return Task(**json.loads(extra_info["task"]))


def trajectory_from_text(task: Task, text: str, trajectory_id: str = "verl") -> Trajectory:
    """A one-turn trajectory from a decoded response: submitted when it calls `submit`, whose
    answer is checked by the task's answer verifier (a command verifier abstains: no sandbox)."""
    from agentrm.rollout.loop import initial_messages
    from agentrm.rollout.policies.parsing import parse_tool_calls
    from agentrm.tasks.check import outcome_reward, verifier_spec

    content, calls = parse_tool_calls(text)
    submits = [c for c in calls if (c.get("function") or {}).get("name") == "submit"]
    message: dict[str, Any] = {"role": "assistant", "content": content}
    if calls:
        message["tool_calls"] = submits[-1:] or calls[-1:]
    turn = Turn(0, initial_messages(task), message)
    status = ExitStatus.SUBMITTED if submits else ExitStatus.TURN_LIMIT
    call = turn.tool_calls[0] if submits else None
    submission = None if call is None else str((call.arguments or {}).get("answer", ""))
    spec = verifier_spec(task)
    if spec is not None and spec["kind"] != "answer":
        reward, details = None, {"reward_reason": "the verifier needs the sandbox (agentrm agent loop)"}
    else:
        reward, details = outcome_reward(task, status, submission)
    return Trajectory(trajectory_id, task.id, task.id, [turn], exit_status=status, reward=reward,
                      answer=task.answer, metadata=details)


def rollout_trajectory(extra_info: dict[str, Any]) -> Trajectory | None:
    """The trajectory agentrm's agent loop recorded for this rollout, if it ran there."""
    from agentrm.traces.io import trajectory_from_record

    raw = extra_info.get(TRAJECTORY_KEY)
    if not raw:
        return None
    return trajectory_from_record(json.loads(raw) if isinstance(raw, str) else raw)


def _scores_in_process(traj: Trajectory, names: list[str]) -> list[Score]:
    from agentrm.scoring import score_trajectories
    from agentrm.verifiers.registry import make_scorer

    for name in names:
        if name not in _SCORERS:
            _SCORERS[name] = make_scorer(name)
    return score_trajectories([traj], [_SCORERS[name] for name in names])


def _scores_from_server(traj: Trajectory, names: list[str], server: str) -> list[Score]:
    """POST the trajectory record to `agentrm serve` /score; its rows as Scores."""
    import httpx

    from agentrm.traces.io import record_from_trajectory

    reply = httpx.post(server.rstrip("/") + "/score", timeout=600,
                       json={"trajectories": [record_from_trajectory(traj)]})
    reply.raise_for_status()
    view = reply.json()["trajectories"][0]
    rows = [Score(n, traj.id, v, ScoreLevel.TRAJECTORY) for n, v in view["trajectory_scores"].items()]
    rows += [Score(n, traj.id, v, ScoreLevel.TURN, i) for n, values in view["turn_scores"].items()
             for i, v in enumerate(values)]
    absent = sorted(set(names) - {s.scorer for s in rows})
    if absent:
        log.warning("the reward server at %s has no scorer %s", server, ", ".join(absent))
    return rows


def score_trajectory(traj: Trajectory, reward: str, server: str | None = None) -> float | None:
    """The trajectory's return under the reward SPEC (None: a needed score abstained)."""
    from agentrm.rewards.combine import combine_scores, parse_spec
    from agentrm.rewards.stored import OUTCOME, outcome_scores

    spec = parse_spec(reward)
    needed = {t.scorer for t in spec.terms} | ({spec.gate[0]} if spec.gate else set())
    if OUTCOME in needed and traj.reward is None:
        return None  # the verifier could not judge (no sandbox, a broken environment): abstain
    names = sorted(needed - {OUTCOME})
    scores = outcome_scores([traj])
    if names:
        scores += _scores_from_server(traj, names, server) if server else _scores_in_process(traj, names)
    return combine_scores(reward, [traj], scores)[0].total


def score_response(solution_str: str, extra_info: dict[str, Any], reward: str = "outcome",
                   server: str | None = None) -> dict[str, float]:
    """verl's reward-function result for one rollout: {"score", and per-rollout metrics}."""
    traj = rollout_trajectory(extra_info)
    if traj is None:
        traj = trajectory_from_text(task_of(extra_info), solution_str,
                                    f"{extra_info.get('task_id', 'task')}-{extra_info.get('index', 0)}")
    total = score_trajectory(traj, reward, server)
    return {"score": 0.0 if total is None else total, "agentrm_abstained": float(total is None),
            "agentrm_submitted": float(traj.exit_status is ExitStatus.SUBMITTED),
            "agentrm_turns": float(len(traj.turns))}
