"""asciicast v2 export of a replay: `asciinema play FILE.cast` plays it.

v2 keeps absolute event times, which is what lets one "m" marker per turn be merged in at
the turn's start. Command output is emitted chunk by chunk at
its recorded offsets, so the recording shows what the agent saw as it saw it. The file is
written to a temporary name and renamed, so a failed export leaves nothing half-written.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

from rich.text import Text

from agentrm.files import atomic_open
from agentrm.replay.render import (
    header_renderable,
    scores_table,
    to_ansi,
    turn_renderable,
    turn_title,
)
from agentrm.replay.timing import schedule
from agentrm.replay.view import ReplayView, clean_text

Event = tuple[float, str, str]
# The header stays alone on screen briefly; it also keeps the first marker off t=0, where
# asciinema 2.x's pause-on-markers does not pause (it tests the pause time for truthiness).
LEAD_IN_S = 0.5


def _crlf(text: str) -> str:
    """Terminals in raw mode need CR LF; recorded output usually has bare LF."""
    return text.replace("\r\n", "\n").replace("\n", "\r\n")


def _marker_label(view: ReplayView, pos: int) -> str:
    turn = view.turns[pos]
    what = next((c.command or c.name for c in turn.calls), "") or turn.reasoning
    first = (clean_text(what).strip().splitlines() or [""])[0]
    return f"turn {pos + 1}: {first[:60]}"


def cast_events(view: ReplayView, width: int, colour: str | None = "256") -> Iterator[Event]:
    """(time, code, data) events of the whole replay, times non-decreasing."""
    yield 0.0, "o", _crlf(to_ansi(header_renderable(view), width, colour))
    for pos, timing in enumerate(schedule(view, offset=LEAD_IN_S)):
        turn = view.turns[pos]
        yield timing.start, "m", _marker_label(view, pos)
        # "thinking…" while the model works, on the title's line without a line feed, so the
        # action can overwrite it (carriage return, erase line) instead of leaving it on screen
        thinking = to_ansi(turn_title(view, turn, pos) + Text("  thinking…", style="dim"), width, colour)
        yield timing.start, "o", _crlf(thinking.rstrip("\n"))
        # The turn as the model produced it (reasoning + calls), outputs and scores not yet shown.
        without_output = turn_renderable(view, pos, outputs=[None] * len(turn.calls), scores=False)
        yield timing.action_at, "o", "\r\x1b[2K" + _crlf(to_ansi(without_output, width, colour))
        for call, call_timing in zip(turn.calls, timing.calls, strict=True):
            yield call_timing.start, "o", _crlf(f"\x1b[2m── {call.name} output ──\x1b[0m\n")
            last = ""
            for t, chunk in call_timing.events:
                text = clean_text(chunk)
                if text:
                    last = text
                    yield t, "o", _crlf(text)
            facts = [] if call.exit_code is None else [f"exit {call.exit_code}"]
            if call.timed_out:
                facts.append("TIMED OUT")
            tail = "" if not last or last.endswith("\n") else "\n"
            end = " · ".join(facts) or "end of output"
            yield call_timing.end, "o", _crlf(f"{tail}\x1b[2m── {end} ──\x1b[0m\n")
        if turn.scores:
            yield timing.end, "o", _crlf(to_ansi(scores_table(turn.scores, view.score_ranges),
                                                 width, colour))


def write_cast(view: ReplayView, path: str | Path, width: int = 110, height: int = 32,
               title: str | None = None, idle_time_limit: float | None = 2.0,
               started_at: float | None = None) -> int:
    """Write the replay as asciicast v2; returns the number of events written."""
    path = Path(path)
    events = list(cast_events(view, width))
    start = started_at or next((t.started_at for t in view.turns if t.started_at), None)
    header: dict = {
        "version": 2, "width": width, "height": height,
        "timestamp": int(start if start else time.time()),
        "duration": round(max((t for t, _, _ in events), default=0.0), 6),
        "title": title or f"agentrm replay {view.title}",
        "env": {"TERM": "xterm-256color", "SHELL": "/bin/bash"},
    }
    if idle_time_limit:
        header["idle_time_limit"] = idle_time_limit
    with atomic_open(path) as out:
        out.write(json.dumps(header, ensure_ascii=False) + "\n")
        for t, code, data in events:
            out.write(json.dumps([round(t, 6), code, data], ensure_ascii=False) + "\n")
    return len(events)
