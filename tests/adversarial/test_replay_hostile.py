"""Hostile recorded output must not drive the viewer's terminal, break the cast or inject HTML."""

from __future__ import annotations

import html.parser
import json
import sys
from pathlib import Path

from asciinema.asciicast import v2

from agentrm.replay.asciicast import write_cast
from agentrm.replay.html import write_html
from agentrm.replay.render import full_renderable, to_ansi
from agentrm.replay.view import build_view
from agentrm.types import ExitStatus, ToolResult, Trajectory, Turn

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit"))

HOSTILE = ("\x1b[2J\x1b[H"  # clear screen + home
           "\x1b]0;pwned title\x07"  # set the window title
           "\x1b]52;c;ZXZpbA==\x07"  # write the clipboard (OSC 52)
           "\x1bP+q544e\x1b\\"  # DCS query
           "nul\x00byte bell\x07 backspace\x08 "
           "lone surrogate \udcff end\n"
           "progress 10%\rprogress 100%\n"
           "</script><script>alert(1)</script><img src=x onerror=alert(2)>\n"
           + "x" * 50_000 + "\n"
           + "\n".join(f"row {i}" for i in range(5000)))


def hostile_trajectory() -> Trajectory:
    call = {"id": "h1", "type": "function",
            "function": {"name": "bash", "arguments": json.dumps({"command": "cat evil\x1b[2J"})}}
    turn = Turn(0, [{"role": "user", "content": "task \x1b]0;t\x07 <b>x</b>"}],
                {"role": "assistant", "content": "thinking \x1b[31mred</pre>", "tool_calls": [call]},
                tool_results=[ToolResult("h1", HOSTILE, 0, duration_s=0.2,
                                         output_events=[(0.1, HOSTILE[:40]), (0.05, HOSTILE[40:])])],
                started_at=1.0, duration_s=1.0)
    return Trajectory("evil\x1b[2J-id", "task</title><script>", "g", [turn],
                      exit_status=ExitStatus.SUBMITTED)


def test_printed_view_has_no_recorded_escapes():
    text = to_ansi(full_renderable(build_view(hostile_trajectory()), 20), 100, None)
    assert "\x1b" not in text and "\x00" not in text and "\x07" not in text
    assert "progress 100%" in text and "row 4999" in text and "lines folded" in text


def test_cast_is_valid_json_lines_without_hostile_escapes(tmp_path):
    path = tmp_path / "h.cast"
    write_cast(build_view(hostile_trajectory()), path)
    with open(path, encoding="utf-8") as f, v2.open_from_file(f.readline(), f) as cast:
        events = list(cast.events())
    data = "".join(e[2] for e in events if e[1] == "o")
    for bad in ["\x1b[2J", "\x1b]", "\x1bP", "\x00", "\x07", "\udcff"]:
        assert bad not in data, repr(bad)
    times = [e[0] for e in events]
    assert times == sorted(times)  # a recorded offset going backwards is clamped, not replayed
    assert "row 4999" in data and "\ufffd" in data


def test_html_has_no_injected_markup(tmp_path):
    path = tmp_path / "h.html"
    write_html(build_view(hostile_trajectory()), path)
    page = path.read_text(encoding="utf-8")

    class Tags(html.parser.HTMLParser):
        def __init__(self):
            super().__init__()
            self.tags = []

        def handle_starttag(self, tag, attrs):
            self.tags.append((tag, dict(attrs)))

    parser = Tags()
    parser.feed(page)
    assert [t for t, _ in parser.tags].count("script") == 2  # the page's own two
    assert not any(t == "img" or any(k.startswith("on") for k in a) for t, a in parser.tags)
    assert parser.tags[2][0] != "script" and "<title>agentrm replay task&lt;/title&gt;" in page
    assert "\x1b" not in page and "\x00" not in page
