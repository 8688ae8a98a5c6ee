"""Harbor trial and job directories as trajectories (harbor 0.26: `harbor.models.trial.paths`).

A trial directory holds `result.json` (a TrialResult), the agent's ATIF trajectory at
`agent/trajectory.json` and the verifier's `verifier/reward.txt` (one number, Harbor's reward
`{"reward": x}`) or `verifier/reward.json` (a flat map of numbers); a multi-step trial has them
per step under `steps/NAME/`. A job directory holds one trial directory per trial.

Each trial (each step of a multi-step trial) becomes one trajectory: the ATIF document read by
`read_atif` (so step rewards become `atif` scores), its id the trial name (`TRIAL/STEP` for a
step), its task and group the task name (a job's attempts of one task form a group), its reward
the verifier's `reward` key (the only key when there is one), and every verifier key a
trajectory-level score `harbor.KEY`. Token ids the trajectory lacks are taken from the result's
`agent_result.rollout_details[0]` when it has one entry per agent turn.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from agentrm.errors import InputError
from agentrm.types import ExitStatus, Score, ScoreLevel, Trajectory

HARBOR_SCORER = "harbor"  # verifier keys become scores named harbor.KEY
_SANDBOX_ERRORS = {"EnvironmentStartTimeoutError", "AgentSetupTimeoutError", "SandboxBuildFailedError",
                   "HealthcheckError", "InfrastructureTimeout"}
_MODEL_ERRORS = {"ApiError", "ApiConnectionError", "ModelNotFoundError", "AgentAuthenticationError",
                 "UnsupportedModelParametersError", "NetworkConnectionError", "AgentSafetyRefusalError"}
_VERIFIER_ERRORS = {"VerifierTimeoutError", "VerifierOutputParseError", "RewardFileNotFoundError",
                    "RewardFileEmptyError", "AddTestsDirError", "DownloadVerifierDirError"}


def _result(path: Path) -> dict[str, Any] | None:
    """result.json when it is a TrialResult (it names its trial), else None."""
    file = path / "result.json"
    if not file.is_file():
        return None
    try:
        doc = json.loads(file.read_text(encoding="utf-8"))
    except (ValueError, OSError):
        return None
    return doc if isinstance(doc, dict) and isinstance(doc.get("trial_name"), str) else None


def is_trial_dir(path: Path) -> bool:
    return _result(path) is not None


def is_job_dir(path: Path) -> bool:
    return any(is_trial_dir(p) for p in _children(path))


def _children(path: Path) -> list[Path]:
    return sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))


def read_harbor(path: Path) -> Iterator[Trajectory]:
    """The trajectories of a trial directory (or its result.json), or of every trial of a job
    directory, in trial-name order. Checked at the call: a directory that is neither fails here."""
    path = path.parent if path.name == "result.json" and path.is_file() else path
    if not path.is_dir():
        raise InputError("not a Harbor trial or job directory", path=str(path))
    if is_trial_dir(path):
        trials = [path]
    else:
        trials = [p for p in _children(path) if is_trial_dir(p)]
        for child in _children(path):  # a trial still running has no result.json yet: skipped
            if (child / "result.json").is_file() and child not in trials:
                raise InputError("not a Harbor trial result (unreadable JSON or no trial_name)",
                                 path=str(child / "result.json"))
        if not trials:
            raise InputError("not a Harbor trial or job directory (no result.json naming a "
                             "trial_name here or in a subdirectory)", path=str(path))
    return (traj for trial in trials for traj in _trial(trial))


def _trial(trial: Path) -> Iterator[Trajectory]:
    from agentrm.traces.formats import _load

    res = _load(trial / "result.json")
    steps = res.get("step_results")
    if isinstance(steps, list) and steps:
        for step in steps:
            name = str(step.get("step_name"))
            rewards = _rewards(step.get("verifier_result"), trial / "steps" / name / "verifier")
            yield _trajectory(trial / "steps" / name / "agent" / "trajectory.json", res, rewards,
                              step.get("exception_info") or res.get("exception_info"),
                              step.get("agent_result"), step=name)
        return
    rewards = _rewards(res.get("verifier_result"), trial / "verifier")
    yield _trajectory(trial / "agent" / "trajectory.json", res, rewards, res.get("exception_info"),
                      res.get("agent_result"))


def _rewards(verifier_result: Any, verifier_dir: Path) -> dict[str, float]:
    """The verifier's rewards as result.json records them, else as the reward files hold them
    (Harbor's rule: reward.txt is `{"reward": x}`, reward.json a flat map of numbers)."""
    rewards = verifier_result.get("rewards") if isinstance(verifier_result, dict) else None
    if rewards is None:
        text, js = verifier_dir / "reward.txt", verifier_dir / "reward.json"
        if text.is_file() and text.read_text().strip():
            try:
                rewards = {"reward": float(text.read_text())}
            except ValueError:
                raise InputError("reward.txt is not a number", path=str(text)) from None
        elif js.is_file() and js.read_text().strip():
            from agentrm.traces.formats import _load

            rewards = _load(js)
    if rewards is None:
        return {}
    if not isinstance(rewards, dict) or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
            for v in rewards.values()):
        raise InputError("verifier rewards must be a flat map of finite numbers", path=str(verifier_dir))
    return {str(k): float(v) for k, v in rewards.items()}


def _exit_status(exception: Any) -> ExitStatus:
    kind = exception.get("exception_type") if isinstance(exception, dict) else None
    if kind is None or kind in _VERIFIER_ERRORS:  # the agent finished; only the grading failed
        return ExitStatus.IMPORTED
    if kind == "AgentTimeoutError":
        return ExitStatus.TIME_LIMIT
    if kind in _SANDBOX_ERRORS:
        return ExitStatus.SANDBOX_ERROR
    if kind in _MODEL_ERRORS:
        return ExitStatus.MODEL_ERROR
    return ExitStatus.CRASHED


def _trajectory(atif: Path, res: dict[str, Any], rewards: dict[str, float], exception: Any,
                agent_result: Any, step: str | None = None) -> Trajectory:
    from agentrm.traces.formats import read_atif

    trial_name = res["trial_name"]
    task = str(res.get("task_name") or trial_name)
    traj_id = trial_name if step is None else f"{trial_name}/{step}"
    if atif.is_file():
        traj = next(read_atif(atif))
    else:  # the agent left no trajectory (it crashed or timed out before writing one)
        traj = Trajectory(id=traj_id, task_id=task, group_id=task)
    traj.id, traj.task_id, traj.group_id = traj_id, task, task
    traj.exit_status = _exit_status(exception)
    traj.reward = rewards.get("reward", next(iter(rewards.values())) if len(rewards) == 1 else None)
    model = ((res.get("agent_info") or {}).get("model_info") or {}).get("name")
    traj.policy = traj.policy or model
    agent_result = agent_result if isinstance(agent_result, dict) else {}
    _rollout_tokens(traj, agent_result.get("rollout_details"))
    traj.metadata["harbor"] = {
        "trial_name": trial_name, "step": step, "trial_uri": res.get("trial_uri"),
        "task_name": res.get("task_name"), "source": res.get("source"),
        "agent_info": res.get("agent_info"), "rewards": rewards,
        "exception": {k: exception.get(k) for k in ("exception_type", "exception_message")}
        if isinstance(exception, dict) else None,
        "usage": {k: agent_result.get(k) for k in ("n_input_tokens", "n_cache_tokens",
                                                   "n_output_tokens", "cost_usd")},
        "started_at": res.get("started_at"), "finished_at": res.get("finished_at")}
    return traj


def _rollout_tokens(traj: Trajectory, details: Any) -> None:
    """Ids and log-probs from Harbor's rollout_details (full prompt, completion and log-probs
    per turn) for a trajectory whose ATIF steps carry none, when the turn counts agree."""
    from agentrm.traces.formats import _tokens

    if not isinstance(details, list) or not details or not isinstance(details[0], dict):
        return
    if any(t.tokens is not None for t in traj.turns):
        return
    prompts, completions = details[0].get("prompt_token_ids"), details[0].get("completion_token_ids")
    logprobs = details[0].get("logprobs")
    if not (isinstance(prompts, list) and isinstance(completions, list)
            and len(prompts) == len(completions) == len(traj.turns)):
        return
    previous: list[int] | None = None
    for k, turn in enumerate(traj.turns):
        turn.tokens, previous = _tokens({"prompt_token_ids": prompts[k],
                                         "completion_token_ids": completions[k]}, previous)
        if isinstance(logprobs, list) and k < len(logprobs) and turn.logprobs is None:
            turn.logprobs = logprobs[k]


def harbor_scores(traj: Trajectory) -> list[Score]:
    """Every verifier key of a Harbor trial as a trajectory-level score `harbor.KEY`."""
    rewards = (traj.metadata.get("harbor") or {}).get("rewards") or {}
    return [Score(scorer=f"{HARBOR_SCORER}.{key}", trajectory_id=traj.id, value=value,
                  level=ScoreLevel.TRAJECTORY, details={"source": "harbor verifier"})
            for key, value in rewards.items()]
