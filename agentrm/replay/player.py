"""Interactive terminal player: step through turns with keys, or play with recorded timing.

Keys are read from the tty in cbreak mode (no echo, no line buffering; Ctrl-C still
interrupts). Frames are drawn on the alternate screen and the terminal is always restored.
Timing comes from `replay_timing.schedule`, scaled by `speed`; pauses longer than
`idle_limit` (recorded seconds) are shortened, as asciinema does at playback.
"""

from __future__ import annotations

import os
import select
import shutil
import sys
import termios
import time
import tty
from dataclasses import dataclass

from rich.text import Text

from agentrm.replay.render import header_renderable, to_ansi, turn_renderable, turn_title
from agentrm.replay.timing import TurnTiming, schedule
from agentrm.replay.view import ReplayView

KEYS = {
    "\x1b[C": "next", "\x1bOC": "next", "\x1b[B": "next", "\x1bOB": "next", "n": "next",
    "l": "next", "\x1b[D": "prev", "\x1bOD": "prev", "\x1b[A": "prev", "\x1bOA": "prev",
    "p": "prev", "h": "prev", "j": "down", "k": "up", "\x1b[6~": "pgdn", "\x1b[5~": "pgup",
    "g": "first", "\x1b[H": "first", "\x1b[1~": "first", "G": "last", "\x1b[F": "last",
    "\x1b[4~": "last", " ": "play", "o": "expand", "+": "faster", "=": "faster",
    "-": "slower", "q": "quit", "Q": "quit", "\x03": "quit",
}
HELP = "q quit  n/→ next  p/← prev  space play/pause  j/k scroll  o unfold  +/- speed"


class KeyReader:
    """Single keys (and arrow escape sequences) from a tty file descriptor."""

    def __init__(self, fd: int):
        self.fd = fd
        self._saved = None

    def __enter__(self) -> KeyReader:
        self._saved = termios.tcgetattr(self.fd)
        tty.setcbreak(self.fd)
        return self

    def __exit__(self, *exc) -> None:
        termios.tcsetattr(self.fd, termios.TCSADRAIN, self._saved)

    def read(self, timeout: float | None) -> str | None:
        ready, _, _ = select.select([self.fd], [], [], timeout)
        if not ready:
            return None
        data = os.read(self.fd, 1)
        if data == b"\x1b":  # an escape sequence arrives in one burst
            while select.select([self.fd], [], [], 0.03)[0]:
                data += os.read(self.fd, 1)
                if len(data) >= 3 and (data[-1:].isalpha() or data[-1:] == b"~"):
                    break
        return data.decode("utf-8", "replace")


@dataclass
class PlayerState:
    pos: int = 0
    scroll: int = 0
    expanded: bool = False
    playing: bool = False
    clock: float = 0.0  # replay clock (recorded seconds) while playing


def partial_outputs(timing: TurnTiming, clock: float) -> list[str | None]:
    """What each call had printed by `clock`: None before the command started."""
    out: list[str | None] = []
    for call in timing.calls:
        if clock < call.start:
            out.append(None)
        else:
            out.append("".join(chunk for t, chunk in call.events if t <= clock))
    return out


class Player:
    def __init__(self, view: ReplayView, speed: float = 1.0, max_lines: int = 40,
                 idle_limit: float = 2.0, out=None, color_system: str | None = "256"):
        self.view, self.speed, self.max_lines, self.idle_limit = view, speed, max_lines, idle_limit
        self.timings = schedule(view)
        self.out = out or sys.stdout
        self.color_system = color_system
        self.state = PlayerState()
        self._cache: dict[tuple, list[str]] = {}

    # -- drawing ---------------------------------------------------------------------------
    def size(self) -> tuple[int, int]:
        """The tty's own size: a stale exported COLUMNS/LINES must not win for a full screen."""
        try:
            size = os.get_terminal_size(self.out.fileno())
        except (AttributeError, OSError, ValueError):
            size = shutil.get_terminal_size((100, 30))
        return size.columns, size.lines

    def _body(self, width: int) -> list[str]:
        s, max_lines = self.state, 0 if self.state.expanded else self.max_lines
        timing = self.timings[s.pos]
        if s.playing and s.clock < timing.end:
            if s.clock < timing.action_at:
                renderable = turn_title(self.view, self.view.turns[s.pos], s.pos)
                renderable += Text("  thinking…", style="dim")
                outputs = None
            else:
                outputs = partial_outputs(timing, s.clock)
                renderable = turn_renderable(self.view, s.pos, max_lines, outputs)
            key = (s.pos, width, max_lines, repr(outputs), s.clock < timing.action_at)
        else:
            renderable = turn_renderable(self.view, s.pos, max_lines)
            key = (s.pos, width, max_lines, None, False)
        if key not in self._cache:
            text = to_ansi(renderable, width, self.color_system)
            if s.pos == 0:
                text = to_ansi(header_renderable(self.view), width, self.color_system) + text
            self._cache = {key: text.rstrip("\n").split("\n")}
        return self._cache[key]

    def draw(self) -> None:
        width, height = self.size()
        body_h = max(1, height - 2)
        lines = self._body(width)
        s = self.state
        top_max = max(0, len(lines) - body_h)
        s.scroll = top_max if s.playing else min(max(0, s.scroll), top_max)
        shown = lines[s.scroll:s.scroll + body_h]
        mode = "▶ playing" if s.playing else "⏸ paused"
        status = (f" turn {s.pos + 1}/{len(self.view.turns)} · {self.view.task_id} · "
                  f"{self.view.trajectory_id} · {self.view.exit_status} · {mode} · {self.speed:g}x")
        more = f" [{s.scroll + 1}-{s.scroll + len(shown)}/{len(lines)}]" if top_max else ""
        frame = ["\x1b[H\x1b[7m" + (status + more)[:width].ljust(width) + "\x1b[0m"]
        frame += [line + "\x1b[0m\x1b[K" for line in shown]
        frame += ["\x1b[K"] * (body_h - len(shown))
        frame.append("\x1b[2m" + HELP[:width] + "\x1b[0m\x1b[K")
        self.out.write("\r\n".join(frame))
        self.out.flush()

    # -- control ---------------------------------------------------------------------------
    def _goto(self, pos: int) -> None:
        s = self.state
        s.pos, s.scroll = max(0, min(len(self.view.turns) - 1, pos)), 0
        s.clock = self.timings[s.pos].start

    def handle(self, action: str) -> bool:
        """Apply one key action; False means quit."""
        s = self.state
        if action == "quit":
            return False
        page = max(1, self.size()[1] - 3)
        moves = {"next": lambda: self._goto(s.pos + 1), "prev": lambda: self._goto(s.pos - 1),
                 "first": lambda: self._goto(0),
                 "last": lambda: self._goto(len(self.view.turns) - 1)}
        if action in moves:
            moves[action]()
        elif action in ("down", "up", "pgdn", "pgup"):
            s.playing = False
            s.scroll += {"down": 1, "up": -1, "pgdn": page, "pgup": -page}[action]
        elif action == "expand":
            s.expanded = not s.expanded
        elif action == "faster":
            self.speed = min(64.0, self.speed * 2)
        elif action == "slower":
            self.speed = max(1 / 64, self.speed / 2)
        elif action == "play":
            s.playing = not s.playing
            if s.playing:
                last = s.pos == len(self.view.turns) - 1
                self._goto(0 if last and s.clock >= self.timings[s.pos].end else s.pos)
        return True

    def _next_change(self) -> float:
        """The replay-clock time of the next thing that changes on screen."""
        timing, clock = self.timings[self.state.pos], self.state.clock
        times = [timing.action_at, timing.end] + [t for c in timing.calls for t, _ in c.events]
        return min((t for t in times if t > clock), default=timing.end)

    def _tick(self, elapsed_wall: float) -> None:
        s = self.state
        target = self._next_change()
        if self.idle_limit and target - s.clock > self.idle_limit:
            s.clock = target - self.idle_limit  # shorten long pauses
        s.clock += elapsed_wall * self.speed
        while s.clock >= self.timings[s.pos].end:
            if s.pos == len(self.view.turns) - 1:
                s.playing = False
                return
            s.pos, s.scroll = s.pos + 1, 0
            s.clock = max(s.clock, self.timings[s.pos].start)

    def run(self, keys: KeyReader, play: bool = False) -> None:
        self.out.write("\x1b[?1049h\x1b[?25l")
        try:
            self._goto(0)
            if play:
                self.handle("play")
            self.draw()
            last, size = time.monotonic(), self.size()
            while True:
                wait = 0.5  # paused: wake now and then to notice a resized terminal
                if self.state.playing:
                    gap = (self._next_change() - self.state.clock) / self.speed
                    wait = max(0.0, min(0.1, gap))
                was_playing = self.state.playing
                key = keys.read(wait)
                now = time.monotonic()
                if self.state.playing:
                    self._tick(now - last)
                last = now
                if key is not None and not self.handle(KEYS.get(key, "")):
                    return
                resized = self.size() != size
                if key is not None or was_playing or resized:
                    size = self.size()
                    self.draw()
        finally:
            self.out.write("\x1b[0m\x1b[?25h\x1b[?1049l")
            self.out.flush()


def open_tty() -> int | None:
    """A readable tty fd for keys: stdin when it is one, else /dev/tty, else None."""
    if sys.stdin.isatty():
        return sys.stdin.fileno()
    try:
        return os.open("/dev/tty", os.O_RDONLY)
    except OSError:
        return None
