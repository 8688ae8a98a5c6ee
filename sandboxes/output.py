"""Bounded output collection: each stream keeps a head and a tail within its cap and counts the
rest, so 100 MB of output costs the host a fixed amount of memory (inspect's lesson: cap per
stream, flag truncation, keep head and tail)."""

from __future__ import annotations

import codecs
import time


class CappedStream:
    """Keep the first 3/4 of `cap` bytes and the last 1/4; drop and count what lies between."""

    def __init__(self, cap: int):
        self.head_cap = cap - cap // 4
        self.tail_cap = cap // 4
        self.head = bytearray()
        self.tail = bytearray()
        self.dropped = 0

    def add(self, data: bytes) -> None:
        room = self.head_cap - len(self.head)
        if room > 0:
            self.head += data[:room]
            data = data[room:]
        if not data:
            return
        self.tail += data
        excess = len(self.tail) - self.tail_cap
        if excess > 0:
            self.dropped += excess
            del self.tail[:excess]

    @property
    def truncated(self) -> bool:
        return self.dropped > 0

    def text(self) -> str:
        if not self.dropped:
            return (bytes(self.head) + bytes(self.tail)).decode("utf-8", "replace")
        marker = f"\n[... {self.dropped} bytes truncated by agentrm ...]\n"
        return (bytes(self.head).decode("utf-8", "replace") + marker
                + bytes(self.tail).decode("utf-8", "replace"))


class OutputRecorder:
    """stdout/stderr collectors plus timed chunks (seconds since command start, text) for replay.

    The event list is bounded as well: once `cap` characters were recorded, later chunks are
    dropped from the events (the streams still keep their tails).
    """

    def __init__(self, cap: int, record_events: bool = True, on_output=None):
        self.start = time.monotonic()
        self.streams = {1: CappedStream(cap), 2: CappedStream(cap)}
        self.decoders = {1: codecs.getincrementaldecoder("utf-8")("replace"),
                         2: codecs.getincrementaldecoder("utf-8")("replace")}
        self.events: list[tuple[float, str]] | None = [] if record_events else None
        self.event_budget = 2 * cap
        self.on_output = on_output  # callback(stream: int, data: bytes) for live streaming

    def add(self, stream: int, data: bytes) -> None:
        if not data:
            return
        self.streams[stream].add(data)
        if self.on_output is not None:
            self.on_output(stream, data)
        if self.events is not None and self.event_budget > 0:
            text = self.decoders[stream].decode(data)
            if text:
                text = text[: self.event_budget]
                self.event_budget -= len(text)
                self.events.append((round(time.monotonic() - self.start, 6), text))

    @property
    def truncated(self) -> bool:
        return self.streams[1].truncated or self.streams[2].truncated

    def elapsed(self) -> float:
        return time.monotonic() - self.start
