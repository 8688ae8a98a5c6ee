"""run_trajectory: one rollout of a task in a sandbox, every turn logged as it completes.

Every trajectory ends with a closed ExitStatus, persisted in a `finally`. Model failures
(format_error, limits) are the agent's; sandbox_error, model_error and crashed are the
infrastructure's and get reward None, never 0.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from dataclasses import asdict, dataclass
from typing import Any

from agentrm.errors import InfrastructureError
from agentrm.hashing import anchor_key
from agentrm.protocols import Policy, PolicyOutput, Sandbox, TurnSink
from agentrm.rollout.graph import build_graph, recursion_limit, run_direct
from agentrm.rollout.policies.base import ContextLimitExceeded, ModelError
from agentrm.rollout.tools import SUBMIT, TOOL_SCHEMAS, call_error
from agentrm.rollout.writer import TurnWriter
from agentrm.tasks import prepare
from agentrm.tasks.check import outcome_reward
from agentrm.types import ExitStatus, Message, Task, ToolCall, Trajectory, Turn

log = logging.getLogger("agentrm.rollout.loop")

SYSTEM_PROMPT = (
    "You are an agent working in a Linux sandbox through tools. Your working directory is "
    "{workdir}. Run commands with `bash`, read files with `view_file`, change them with "
    "`edit_file`. When you are done, call `submit` with the answer, or without an answer to "
    "submit your changes to the repository."
)
NO_TOOL_CALL = ("No tool call found in your reply. Reply with exactly one tool call, e.g. "
                '<tool_call>{"name": "bash", "arguments": {"command": "ls"}}</tool_call>, or '
                "call submit when you are done.")


@dataclass
class Limits:
    """When a trajectory stops. max_tokens bounds the context of one model call (prompt +
    completion): conversations that outgrow it end `token_limit`."""

    max_turns: int = 20
    max_tokens: int | None = None
    max_seconds: float | None = None
    max_format_errors: int = 3  # consecutive invalid turns before `format_error`
    command_timeout: float = 60.0


def initial_messages(task: Task, workdir: str = "/workspace") -> list[Message]:
    return [{"role": "system", "content": SYSTEM_PROMPT.format(workdir=workdir)},
            {"role": "user", "content": task.instruction}]


class Episode:
    """The side of one rollout the graph state cannot hold: policy, sandbox, store, records."""

    def __init__(self, task: Task, policy: Policy, sandbox: Sandbox, store: TurnWriter | None,
                 trajectory: Trajectory, workdir: str, replay: list[Turn],
                 cancel: threading.Event | None = None):
        self.task, self.policy, self.sandbox, self.store = task, policy, sandbox, store
        self.trajectory, self.workdir, self.replay = trajectory, workdir, replay
        self.cancel = cancel
        self.submission: str | None = None
        from agentrm import telemetry

        self.trace_parent = telemetry.current_context()  # the trajectory's span, for turn spans

    # -- nodes ---------------------------------------------------------------------------
    def policy_step(self, state: dict[str, Any]) -> dict[str, Any]:
        if self.store is not None:
            # the previous turn is committed before the next action starts: a process killed
            # at any point keeps every completed turn (the write overlaps only the routing)
            self.store.flush()
        if self.cancel is not None and self.cancel.is_set():
            return {"status": ExitStatus.CRASHED.value, "error": "interrupted"}
        if state["deadline"] is not None and time.monotonic() >= state["deadline"]:
            return {"status": ExitStatus.TIME_LIMIT.value}
        started, t0 = time.time(), time.monotonic()
        turn = state["turn"]
        if turn < len(self.replay):  # resuming: the recorded action, re-run for the sandbox state
            rec = self.replay[turn]
            out = PolicyOutput(rec.assistant, rec.prompt_tokens, rec.completion_tokens, rec.logprobs)
        else:
            try:
                out = self.policy.act(state["messages"], TOOL_SCHEMAS)
            except ContextLimitExceeded as exc:
                return {"status": ExitStatus.TOKEN_LIMIT.value, "error": str(exc)}
            except Exception as exc:  # noqa: BLE001 - any backend failure is the model's infra
                log.warning("policy failed on %s turn %d: %s", self.trajectory.id, turn, exc)
                kind = "" if isinstance(exc, ModelError) else f"{type(exc).__name__}: "
                return {"status": ExitStatus.MODEL_ERROR.value, "error": f"{kind}{exc}"}
        message = _clean_assistant(out.message)
        tokens = (out.prompt_tokens or 0) + (out.completion_tokens or 0)
        pending = {"out": out, "started_at": started, "t0": t0, "model_done": time.time()}
        return {"messages": [*state["messages"], message], "pending": pending,
                "tokens": tokens or state["tokens"]}

    def tool_step(self, state: dict[str, Any]) -> dict[str, Any]:
        messages, pending, turn = state["messages"], state["pending"], state["turn"]
        assistant = messages[-1]
        calls = [ToolCall.from_message(c) for c in assistant.get("tool_calls") or []]
        errors, results, replies, status, error = [], [], [], None, None
        if not calls:
            errors.append("no tool call")
            replies.append({"role": "user", "content": NO_TOOL_CALL})
        how = prepare.Replay.of(self.task, self.workdir, self._command_timeout(state))
        try:
            for call, result in prepare.run_calls(self.sandbox, calls, how):  # none after submit
                problem = call_error(call)
                if problem:
                    errors.append(problem)
                results.append(result)
                replies.append({"role": "tool", "tool_call_id": call.id, "content": result.content})
                if call.name == SUBMIT and not problem:
                    status, self.submission = ExitStatus.SUBMITTED.value, result.content
        except InfrastructureError as exc:
            status, error = ExitStatus.SANDBOX_ERROR.value, f"{type(exc).__name__}: {exc}"
        self._record(state, assistant, pending, results, errors, error)
        streak = state["invalid_streak"] + 1 if errors else 0
        update = {"messages": [*messages, *replies], "obs_start": len(messages), "turn": turn + 1,
                  "invalid_streak": streak, "pending": None}
        status = status or self._limit_status(state, turn + 1, streak)
        if status:
            update["status"] = status
        if error:
            update["error"] = error
        return update

    # -- helpers -------------------------------------------------------------------------
    def _record(self, state, assistant, pending, results, errors, error) -> None:
        turn_index = state["turn"]
        observation = state["messages"][state["obs_start"]:-1]
        out: PolicyOutput = pending["out"]
        meta: dict[str, Any] = {}
        if errors:
            meta["invalid"] = errors
        if error:
            meta["error"] = error
        turn = Turn(index=turn_index, observation=observation, assistant=assistant,
                    anchor_key=anchor_key(observation), tool_results=results,
                    prompt_tokens=out.prompt_tokens, completion_tokens=out.completion_tokens,
                    logprobs=out.logprobs, started_at=pending["started_at"],
                    duration_s=time.monotonic() - pending["t0"], valid=not errors, metadata=meta,
                    tokens=out.tokens)
        if turn_index < len(self.replay):
            self.trajectory.turns.append(self.replay[turn_index])  # already in the store
            return
        self.trajectory.turns.append(turn)
        if self.store is not None:
            self.store.append_turn(self.trajectory.id, turn)
        from agentrm import telemetry

        telemetry.record_turn(self.trace_parent, turn_index, getattr(self.policy, "name", None),
                              pending["started_at"], pending.get("model_done", pending["started_at"]),
                              time.time(), out.prompt_tokens, out.completion_tokens, turn.tool_calls,
                              results, turn.valid)

    def _command_timeout(self, state) -> float:
        timeout = state["limits"]["command_timeout"]
        if state["deadline"] is not None:
            timeout = max(1.0, min(timeout, state["deadline"] - time.monotonic()))
        return timeout

    @staticmethod
    def _limit_status(state, turns: int, streak: int) -> str | None:
        limits = state["limits"]
        if streak >= limits["max_format_errors"]:
            return ExitStatus.FORMAT_ERROR.value
        if turns >= limits["max_turns"]:
            return ExitStatus.TURN_LIMIT.value
        if limits["max_tokens"] and state["tokens"] >= limits["max_tokens"]:
            return ExitStatus.TOKEN_LIMIT.value
        if state["deadline"] is not None and time.monotonic() >= state["deadline"]:
            return ExitStatus.TIME_LIMIT.value
        return None


def _clean_assistant(message: Message) -> Message:
    clean: Message = {"role": "assistant", "content": message.get("content") or ""}
    if message.get("tool_calls"):
        clean["tool_calls"] = [
            {**c, "id": c.get("id") or f"call_{uuid.uuid4().hex[:12]}", "type": "function"}
            for c in message["tool_calls"]]
    return clean


def run_trajectory(task: Task, policy: Policy, sandbox: Sandbox, store: TurnSink | None = None,
                   limits: Limits | None = None, group_id: str | None = None,
                   trajectory_id: str | None = None, run_id: str | None = None,
                   replay: list[Turn] | None = None, workdir: str = "/workspace",
                   cancel: threading.Event | None = None, engine: str = "langgraph",
                   messages: list[Message] | None = None) -> Trajectory:
    """Roll `policy` out on `task` in `sandbox` until it submits, hits a limit or fails.

    `replay`: turns already recorded for this trajectory (resume); their actions are re-run to
    rebuild the sandbox state and are not written again. `cancel`: when set, the trajectory
    stops before its next model call and closes as `crashed` ("interrupted"), which a rerun retries.
    `engine`: "langgraph" (the compiled StateGraph) or "direct" (the same nodes and router in a
    plain loop; see graph.run_direct). `messages`: the conversation to continue (default: the
    task's prompt), for a sandbox that already holds the state it led to.
    """
    limits = limits or Limits()
    traj = Trajectory(id=trajectory_id or uuid.uuid4().hex, task_id=task.id,
                      group_id=group_id or task.id, answer=task.answer,
                      policy=getattr(policy, "name", None), run_id=run_id)
    writer = TurnWriter(store) if store is not None else None
    episode = Episode(task, policy, sandbox, writer, traj, workdir, list(replay or []), cancel)
    start = [dict(m) for m in messages] if messages else initial_messages(task, episode.workdir)
    state: dict[str, Any] = {"messages": start, "obs_start": 0,
                             "turn": 0, "tokens": 0, "invalid_streak": 0, "limits": asdict(limits),
                             "pending": None, "status": None, "error": None,
                             "deadline": (time.monotonic() + limits.max_seconds
                                          if limits.max_seconds else None)}
    try:
        if store is not None:
            store.begin_trajectory(traj)
        limit = recursion_limit(limits.max_turns)
        if engine == "direct":
            state = run_direct(state, episode.policy_step, episode.tool_step, limit)
        else:
            graph = build_graph(episode.policy_step, episode.tool_step)
            state = graph.invoke(state, {"recursion_limit": limit})  # pyright: ignore[reportArgumentType]
        traj.exit_status = ExitStatus(state.get("status") or ExitStatus.CRASHED.value)
        if state.get("error"):
            traj.metadata["error"] = state["error"]
    except InfrastructureError as exc:
        traj.exit_status, traj.metadata["error"] = ExitStatus.SANDBOX_ERROR, str(exc)
    except BaseException as exc:  # noqa: BLE001 - even Ctrl-C closes the trajectory
        log.exception("trajectory %s crashed", traj.id)
        traj.exit_status, traj.metadata["error"] = ExitStatus.CRASHED, f"{type(exc).__name__}: {exc}"
        if not isinstance(exc, Exception):
            raise
    finally:
        _finish(traj, state, episode, store, writer)
    return traj


def _finish(traj: Trajectory, state: dict[str, Any], episode: Episode, store, writer) -> None:
    """Close the trajectory: tail, outcome reward, exit status — whatever happened before."""
    if writer is not None:
        try:
            writer.flush()  # every turn is in the store before the trajectory closes
        except Exception as exc:  # noqa: BLE001 - a store failure is infrastructure
            log.error("trace store write failed for %s: %s", traj.id, exc)
            traj.exit_status = ExitStatus.CRASHED
            traj.metadata["error"] = f"trace store: {type(exc).__name__}: {exc}"
        finally:
            writer.close()
    messages = state.get("messages") or []
    last = max((i for i, m in enumerate(messages) if m.get("role") == "assistant"), default=-1)
    traj.tail = messages[last + 1:] if last >= 0 else []
    if episode.submission is not None:
        traj.metadata["submission"] = episode.submission
    try:
        traj.reward, details = outcome_reward(episode.task, traj.exit_status, episode.submission,
                                              episode.sandbox)
        traj.metadata.update(details)
    except Exception as exc:  # noqa: BLE001 - a failed check is unknown, not 0
        traj.reward, traj.metadata["reward_error"] = None, f"{type(exc).__name__}: {exc}"
    if store is None:
        return
    try:
        if traj.tail:
            store.set_tail(traj.id, traj.tail)
        store.update_trajectory(traj.id, metadata=traj.metadata)  # error, submission, reason
        store.end_trajectory(traj.id, traj.exit_status, traj.reward)
    except Exception:  # noqa: BLE001 - the caller still gets the trajectory back
        log.exception("could not close trajectory %s in the store", traj.id)
