"""The nouns every stage shares: task → rollout (trajectory of turns) → scores → advantages.

Plain dataclasses with no dependency on any other part of agentrm, so every stage can import
them. Messages are kept in the OpenAI chat shape (dicts) because that is what policies consume
and what the interchange format stores; the typed views (ToolCall) are derived from them.
"""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass, field
from typing import Any

Message = dict[str, Any]
"""An OpenAI chat message: {"role", "content", optional "tool_calls" / "tool_call_id"}."""


class ExitStatus(str, enum.Enum):
    """How a trajectory ended. Every trajectory gets exactly one, persisted in a `finally`."""

    RUNNING = "running"
    SUBMITTED = "submitted"
    TURN_LIMIT = "turn_limit"
    TOKEN_LIMIT = "token_limit"
    TIME_LIMIT = "time_limit"
    FORMAT_ERROR = "format_error"
    SANDBOX_ERROR = "sandbox_error"
    MODEL_ERROR = "model_error"
    CRASHED = "crashed"
    IMPORTED = "imported"  # came from a file; the source did not say how it ended

    @property
    def failure_kind(self) -> FailureKind | None:
        return _FAILURE_KIND.get(self)


class FailureKind(str, enum.Enum):
    """Who is to blame for a failed trajectory: never score an infrastructure failure as 0."""

    MODEL = "model"
    INFRASTRUCTURE = "infrastructure"


_FAILURE_KIND = {
    ExitStatus.FORMAT_ERROR: FailureKind.MODEL,
    ExitStatus.SANDBOX_ERROR: FailureKind.INFRASTRUCTURE,
    ExitStatus.MODEL_ERROR: FailureKind.INFRASTRUCTURE,
    ExitStatus.CRASHED: FailureKind.INFRASTRUCTURE,
}


class ScoreLevel(str, enum.Enum):
    TURN = "turn"
    TRAJECTORY = "trajectory"


def _loads(raw: str) -> Any:
    """json.loads, through orjson when it can (4x faster; imports parse every call's arguments);
    anything orjson refuses goes to json, so results and error messages stay json's."""
    try:
        return _orjson_loads(raw)
    except Exception:  # noqa: BLE001 - json decides, and raises its own error
        return json.loads(raw)


try:
    from orjson import loads as _orjson_loads
except ImportError:  # pragma: no cover - orjson is a dependency
    _orjson_loads = json.loads


@dataclass
class ToolCall:
    """One function call of an assistant message. `arguments` is None when the JSON did not parse."""

    id: str
    name: str
    raw_arguments: str
    arguments: dict[str, Any] | None = None
    error: str | None = None  # why the call is an invalid action (bad JSON, unknown tool, ...)

    @property
    def valid(self) -> bool:
        return self.error is None and self.arguments is not None

    @staticmethod
    def arguments_valid(raw: Any) -> bool:
        """Whether from_message would make a valid call of these arguments (without building it:
        imports check every call of every turn)."""
        if isinstance(raw, dict) or not raw:
            return True
        try:
            return isinstance(_loads(raw), dict)
        except (json.JSONDecodeError, TypeError):
            return False

    @classmethod
    def from_message(cls, call: dict[str, Any]) -> ToolCall:
        fn = call.get("function") or {}
        raw = fn.get("arguments", "")
        if isinstance(raw, dict):  # HF chat templates carry dicts; the API carries strings
            return cls(call.get("id", ""), fn.get("name", ""), json.dumps(raw), raw)
        try:
            parsed = _loads(raw) if raw else {}
        except (json.JSONDecodeError, TypeError) as exc:
            return cls(call.get("id", ""), fn.get("name", ""), str(raw), None, f"bad JSON: {exc}")
        if not isinstance(parsed, dict):
            return cls(call.get("id", ""), fn.get("name", ""), raw, None, "arguments are not an object")
        return cls(call.get("id", ""), fn.get("name", ""), raw, parsed)


@dataclass
class ToolResult:
    """What running one tool call gave back, with the timing replay needs."""

    call_id: str
    content: str
    exit_code: int | None = None
    timed_out: bool = False
    truncated: bool = False
    duration_s: float | None = None
    # (seconds since the command started, chunk) — lets replay show output as the agent saw it
    output_events: list[tuple[float, str]] | None = None


@dataclass
class TokenTrace:
    """What the policy saw and sampled, in its own token ids (no re-tokenisation anywhere).

    The prompt is stored as a reference to the previous turn's prompt plus the new ids:
    full prompt = previous turn's full prompt[:prefix_len] + prompt_ids (prefix_len 0 = the ids
    are the whole prompt), so storage grows with the new tokens of each turn, not with the
    square of the turn count. `prompt_hash` checks the rebuilt prompt (see `full_prompts`).
    Per-token log-probs of `completion_ids` are `Turn.logprobs`.
    """

    prompt_ids: list[int]
    completion_ids: list[int]
    prefix_len: int = 0
    tokenizer: str = ""  # identity: model/tokenizer name and a hash of its vocabulary
    template_hash: str = ""  # hash of the chat template text the prompt was rendered with
    prompt_hash: str = ""  # token_hash(full prompt ids)


def token_hash(ids: list[int]) -> str:
    """Short, stable hash of a token id list (the check on a rebuilt prompt)."""
    import hashlib

    return hashlib.sha256(",".join(map(str, ids)).encode()).hexdigest()[:16]


def full_prompts(turns: list[Turn]) -> list[list[int] | None]:
    """Each turn's full prompt ids rebuilt from the prefix references; None when a turn has
    no tokens, refers to a turn without them, or fails its hash check."""
    out: list[list[int] | None] = []
    previous: list[int] | None = None
    for turn in turns:
        tok = turn.tokens
        ids: list[int] | None = None
        if tok is not None:
            if tok.prefix_len == 0:
                ids = list(tok.prompt_ids)
            elif previous is not None and tok.prefix_len <= len(previous):
                ids = previous[: tok.prefix_len] + list(tok.prompt_ids)
            if ids is not None and tok.prompt_hash and token_hash(ids) != tok.prompt_hash:
                ids = None
        out.append(ids)
        previous = ids
    return out


@dataclass
class Turn:
    """One model action plus the environment's response.

    `observation` holds the messages since the previous assistant message (what this action
    acted on); `assistant` is the action. The tool results of this turn are the start of the
    next turn's observation (or of the trajectory's `tail`), and are also kept, with timings,
    in `tool_results`.
    """

    index: int
    observation: list[Message]
    assistant: Message
    anchor_key: str = ""
    tool_results: list[ToolResult] = field(default_factory=list)
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    logprobs: list[float] | None = None
    started_at: float | None = None
    duration_s: float | None = None
    valid: bool = True  # False when any tool call was malformed (an invalid action for GiGPO)
    metadata: dict[str, Any] = field(default_factory=dict)
    tokens: TokenTrace | None = None  # sampled ids; None for text-only (imported) turns

    @property
    def tool_calls(self) -> list[ToolCall]:
        return [ToolCall.from_message(c) for c in self.assistant.get("tool_calls") or []]


@dataclass
class Trajectory:
    """One rollout of a task. Rollouts of one task from one initial state share `group_id`."""

    id: str
    task_id: str
    group_id: str
    turns: list[Turn] = field(default_factory=list)
    tail: list[Message] = field(default_factory=list)  # messages after the last assistant turn
    exit_status: ExitStatus = ExitStatus.RUNNING
    reward: float | None = None  # outcome reward; None = unknown (not 0)
    answer: str | None = None  # ground truth when known
    policy: str | None = None
    run_id: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def failure_kind(self) -> FailureKind | None:
        return self.exit_status.failure_kind

    def messages(self) -> list[Message]:
        """The whole conversation in OpenAI chat order."""
        out: list[Message] = []
        for turn in self.turns:
            out.extend(turn.observation)
            out.append(turn.assistant)
        out.extend(self.tail)
        return out


@dataclass
class ExecResult:
    """The result of one command in a sandbox. Output beyond the cap is dropped and flagged."""

    exit_code: int
    stdout: str
    stderr: str = ""
    timed_out: bool = False
    truncated: bool = False
    duration_s: float = 0.0
    output_events: list[tuple[float, str]] | None = None  # timed chunks, when recorded

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and not self.timed_out


@dataclass
class Task:
    """What a rollout attempts: an instruction in a sandbox, with an optional checkable answer."""

    id: str
    instruction: str
    image: str | None = None  # sandbox image; None = the default base image
    setup: list[str] = field(default_factory=list)  # shell commands run once before the rollout
    answer: str | None = None
    verifier: dict[str, Any] = field(default_factory=dict)  # e.g. {"kind": "answer", "mode": "numeric"}
    network: bool = False
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass
class Score:
    """One scorer's verdict on a turn or a whole trajectory. value None = the scorer abstained."""

    scorer: str
    trajectory_id: str
    value: float | None
    level: ScoreLevel = ScoreLevel.TURN
    turn_index: int | None = None
    version: str = "1"
    config_hash: str = ""
    details: dict[str, Any] = field(default_factory=dict)


@dataclass
class Advantage:
    """An advantage for one turn, with its parts (episode/step for GiGPO) in `details`."""

    estimator: str
    trajectory_id: str
    turn_index: int
    value: float
    config_hash: str = ""
    details: dict[str, Any] = field(default_factory=dict)
