"""When each part of a turn happened, on one clock starting at the first turn (seconds).

The recorded fields are `Turn.started_at` (epoch), `Turn.duration_s` (model call plus tools)
and per tool result `duration_s` and `output_events` (offsets since the command started).
Imported trajectories often lack some or all of them, so every gap falls back to a fixed
pace and times are forced to be non-decreasing (a player must never go back in time).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from agentrm.replay.view import CallView, ReplayView

FALLBACK_THINK_S = 1.0  # model time shown when nothing was recorded
FALLBACK_COMMAND_S = 0.5  # command time when nothing was recorded


@dataclass
class CallTiming:
    start: float
    events: list[tuple[float, str]]  # absolute times on the replay clock
    end: float


@dataclass
class TurnTiming:
    start: float  # the turn (model call) began
    action_at: float  # the assistant message was complete
    calls: list[CallTiming] = field(default_factory=list)
    end: float = 0.0


def _call_duration(call: CallView) -> float:
    last = max((t for t, _ in call.events or []), default=0.0)
    if call.duration_s is not None and call.duration_s >= 0:
        return max(float(call.duration_s), last)
    return last if call.events else FALLBACK_COMMAND_S


def _events(call: CallView, start: float) -> list[tuple[float, str]]:
    if call.events:
        out, clock = [], start
        for offset, chunk in call.events:
            clock = max(clock, start + max(0.0, float(offset)))
            out.append((clock, chunk))
        return out
    if call.output:
        return [(start + _call_duration(call), call.output)]
    return []


def schedule(view: ReplayView, offset: float = 0.0) -> list[TurnTiming]:
    """One TurnTiming per turn of `view`, in order; the first turn starts at `offset`."""
    origin = next((t.started_at for t in view.turns if t.started_at is not None), None)
    if origin is not None:
        origin -= offset
    clock = offset
    out = []
    for turn in view.turns:
        start = clock
        if turn.started_at is not None and origin is not None:
            start = max(clock, float(turn.started_at) - origin)
        tools = sum(_call_duration(c) for c in turn.calls)
        if turn.duration_s is not None:
            think = max(0.0, float(turn.duration_s) - tools)
        else:
            think = FALLBACK_THINK_S
        timing = TurnTiming(start=start, action_at=start + think)
        t = timing.action_at
        for call in turn.calls:
            events = _events(call, t)
            end = max([t + _call_duration(call)] + [e for e, _ in events])
            timing.calls.append(CallTiming(t, events, end))
            t = end
        timing.end = max(t, start + float(turn.duration_s or 0.0))
        clock = timing.end
        out.append(timing)
    return out
