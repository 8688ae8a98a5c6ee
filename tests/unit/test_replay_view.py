"""Replay view model, timing schedule, terminal rendering, asciicast and HTML exports."""

from __future__ import annotations

import html.parser
import json
from pathlib import Path

import pytest
from asciinema.asciicast import v2

from agentrm.replay.asciicast import LEAD_IN_S, write_cast
from agentrm.replay.html import render_html, write_html
from agentrm.replay.render import bar, fold, full_renderable, to_ansi
from agentrm.replay.timing import FALLBACK_THINK_S, schedule
from agentrm.replay.view import build_view, clean_text
from agentrm.types import Advantage, ExitStatus, Score, ScoreLevel, ToolResult, Trajectory, Turn

DATA = Path(__file__).resolve().parents[1] / "data" / "replay"


def load_demo() -> Trajectory:
    """The golden 4-turn trajectory with recorded timing (bash, long output, invalid, submit)."""
    d = json.loads((DATA / "demo_trajectory.json").read_text())
    turns = []
    for t in d.pop("turns"):
        results = [ToolResult(**{**r, "output_events": [tuple(e) for e in r["output_events"] or []]
                                 or None}) for r in t.pop("tool_results")]
        turns.append(Turn(**t, tool_results=results))
    return Trajectory(**{**d, "exit_status": ExitStatus(d["exit_status"])}, turns=turns)


def make_demo_store(url: str) -> str:
    """A trace store holding the demo trajectory with its turn scores and advantages."""
    from agentrm.traces import open_store

    traj = load_demo()
    with open_store(url) as store:
        traj.run_id = store.begin_run({"purpose": "replay tests"})
        store.begin_trajectory(traj)
        for turn in traj.turns:
            store.append_turn(traj.id, turn)
        store.set_tail(traj.id, traj.tail)
        store.end_trajectory(traj.id, traj.exit_status, traj.reward)
        scores, advs = demo_scores(traj.id)
        store.write_scores([s for s in scores if s.trajectory_id == traj.id])
        store.write_advantages(advs)
    return url


def demo_scores(traj_id: str):
    scores = [Score("prm", traj_id, 0.9, turn_index=0), Score("prm", traj_id, 0.2, turn_index=1),
              Score("prm", traj_id, None, turn_index=3),
              Score("info_gain", traj_id, -0.3, turn_index=1),
              Score("tests", traj_id, 1.0, level=ScoreLevel.TRAJECTORY),
              Score("prm", "other-trajectory", 0.0, turn_index=0)]
    advs = [Advantage("gigpo", traj_id, i, v) for i, v in enumerate([0.4, -1.2, -2.0, 0.8])]
    return scores, advs


def test_view_collects_reasoning_calls_outputs_and_scores():
    traj = load_demo()
    view = build_view(traj, *demo_scores(traj.id))
    assert [t.index for t in view.turns] == [0, 1, 2, 3]
    first = view.turns[0]
    assert first.reasoning == "Let me list the files first."
    assert first.calls[0].command == "ls /workspace"
    assert first.calls[0].output == "a.py\nb.py\nREADME.md\n"
    assert first.calls[0].events == [(0.1, "a.py\n"), (0.25, "b.py\nREADME.md\n")]
    assert first.scores == {"prm": 0.9, "advantage": 0.4}
    assert view.turns[1].scores == {"prm": 0.2, "info_gain": -0.3, "advantage": -1.2}
    assert view.turns[3].scores["prm"] is None  # an abstention stays None, not 0
    assert view.trajectory_scores == {"tests": 1.0}
    bad = view.turns[2]
    assert not bad.valid and bad.calls[0].error and bad.calls[0].command is None
    assert view.score_ranges["prm"] == (0.0, 1.0)
    assert view.score_ranges["advantage"] == (-2.0, 2.0)
    assert view.instruction.startswith("Count the python files")


def test_view_of_imported_turns_takes_outputs_from_following_tool_messages():
    call = {"id": "x1", "type": "function", "function": {"name": "bash",
                                                          "arguments": '{"command": "pwd"}'}}
    t0 = Turn(0, [{"role": "user", "content": "where?"}],
              {"role": "assistant", "content": "look", "tool_calls": [call]})
    t1 = Turn(1, [{"role": "tool", "tool_call_id": "x1", "content": "/workspace"}],
              {"role": "assistant", "content": "done"})
    traj = Trajectory("t", "task", "g", [t0, t1],
                      tail=[{"role": "user", "content": "thanks"}], exit_status=ExitStatus.IMPORTED)
    view = build_view(traj)
    assert view.turns[0].calls[0].output == "/workspace"
    assert view.turns[1].calls == [] and view.final == "thanks"
    assert len(schedule(view)) == 2


def test_two_estimators_get_distinct_labels():
    traj = load_demo()
    advs = [Advantage("gigpo", traj.id, 0, 0.5), Advantage("grpo", traj.id, 0, -0.5)]
    assert build_view(traj, [], advs).turns[0].scores == {"adv:gigpo": 0.5, "adv:grpo": -0.5}


def test_schedule_follows_recorded_timing():
    view = build_view(load_demo())
    timings = schedule(view)
    # turn 0: started at 0, lasted 2.0 s of which the command took 0.3 s -> action at 1.7
    assert timings[0].start == 0.0 and timings[0].action_at == pytest.approx(1.7)
    assert [t for t, _ in timings[0].calls[0].events] == pytest.approx([1.8, 1.95])
    assert timings[1].start == pytest.approx(2.5) and timings[1].action_at == pytest.approx(3.5)
    assert timings[3].start == pytest.approx(5.5)
    clock = [t for tt in timings for t in [tt.start, tt.action_at, tt.end]
             + [e for c in tt.calls for e, _ in c.events]]
    starts = [tt.start for tt in timings]
    assert starts == sorted(starts) and all(x >= 0 for x in clock)


def test_schedule_without_timing_uses_a_fixed_pace():
    traj = load_demo()
    for turn in traj.turns:
        turn.started_at = turn.duration_s = None
        for r in turn.tool_results:
            r.duration_s, r.output_events = None, None
    timings = schedule(build_view(traj))
    assert timings[0].action_at == FALLBACK_THINK_S
    assert all(b.start >= a.end for a, b in zip(timings, timings[1:], strict=False))


def test_fold_keeps_head_and_tail():
    text = "\n".join(str(i) for i in range(100))
    folded, hidden = fold(text, 9)
    lines = folded.split("\n")
    assert hidden == 91 and lines[0] == "0" and lines[-1] == "99" and "91 lines folded" in folded
    assert fold("a\nb", 9) == ("a\nb", 0) and fold(text, 0) == (text, 0)


def test_bars_scale_unit_and_signed_values():
    assert bar(1.0, 0, 1).plain == "█" * 10 and bar(0.0, 0, 1).plain == "░" * 10
    assert bar(-2.0, -2, 2).plain == "█████│░░░░░"
    assert bar(1.0, -2, 2).plain.count("█") == 2 and bar(None, 0, 1).plain.strip() == "abstained"


def test_clean_text_removes_escapes_but_keeps_text():
    assert clean_text("a\x1b[31mred\x1b[0m\r\nb\x07\x1b]0;title\x07c") == "ared\nbc"


def test_printed_replay_shows_every_turn_and_its_scores():
    traj = load_demo()
    text = to_ansi(full_renderable(build_view(traj, *demo_scores(traj.id)), 10), 120, None)
    for needle in ["turn 1/4", "turn 4/4", "ls /workspace", "README.md", "INVALID ACTION",
                   "lines folded", "line 199", "prm", "advantage", "+0.400", "abstained",
                   "There are 2 python files."]:
        assert needle in text, needle
    assert "\x1b" not in text  # the recorded escape codes never reach the terminal


def read_cast(path: Path):
    with open(path, encoding="utf-8") as f:
        with v2.open_from_file(f.readline(), f) as cast:
            return cast.v2_header, list(cast.events())


def test_asciicast_v2_parses_with_markers_and_recorded_timing(tmp_path):
    traj = load_demo()
    view = build_view(traj, *demo_scores(traj.id))
    path = tmp_path / "out.cast"
    n = write_cast(view, path, width=100, height=30)
    header, events = read_cast(path)
    assert len(events) == n
    assert header["version"] == 2 and header["width"] == 100 and header["height"] == 30
    assert header["timestamp"] == int(traj.turns[0].started_at) and "traj-demo" in header["title"]
    times = [e[0] for e in events]
    assert times == sorted(times) and {e[1] for e in events} == {"o", "m"}
    markers = [e for e in events if e[1] == "m"]
    assert len(markers) == 4
    # Independent check: markers sit at each turn's recorded start relative to the first.
    expected = [LEAD_IN_S + t.started_at - traj.turns[0].started_at for t in traj.turns]
    assert [m[0] for m in markers] == pytest.approx(expected)
    assert markers[0][2].startswith("turn 1: ls /workspace")
    # The chunked output of turn 0 comes at action time (2.0 - 0.3) + each recorded offset.
    chunks = {e[2]: e[0] for e in events if e[1] == "o"}
    assert chunks["a.py\r\n"] == pytest.approx(LEAD_IN_S + 1.7 + 0.1)
    assert chunks["b.py\r\nREADME.md\r\n"] == pytest.approx(LEAD_IN_S + 1.7 + 0.25)
    assert header["duration"] == pytest.approx(times[-1])
    output = "".join(e[2] for e in events if e[1] == "o")
    assert "line 199" in output
    assert "Error: bad JSON red" in output  # the recorded escape codes are stripped


def test_html_page_is_self_contained_and_has_every_turn(tmp_path):
    traj = load_demo()
    path = tmp_path / "page.html"
    write_html(build_view(traj, *demo_scores(traj.id)), path, max_lines=10)
    page = path.read_text(encoding="utf-8")

    class Collect(html.parser.HTMLParser):
        def __init__(self):
            super().__init__()
            self.sections, self.external, self.scripts, self.text = [], [], [], []
            self._in_json = False

        def handle_starttag(self, tag, attrs):
            a = dict(attrs)
            if tag == "section" and "turn" in (a.get("class") or ""):
                self.sections.append(a["id"])
            if a.get("src") or (tag == "link" and a.get("href")):
                self.external.append((tag, a))
            self._in_json = tag == "script" and a.get("type") == "application/json"

        def handle_data(self, data):
            self.text.append(data)
            if self._in_json:
                self.scripts.append(data)
                self._in_json = False

    parser = Collect()
    parser.feed(page)
    assert parser.sections == [f"turn-{i}" for i in range(4)]
    assert parser.external == []  # the hostile "<img src=x>" output is escaped, not a tag
    timing = json.loads(parser.scripts[0])
    assert len(timing) == 4 and timing[0]["calls"][0][0] == pytest.approx([1.8, "a.py\n"])
    for needle in ["ls /workspace", "README.md", "INVALID ACTION", "lines folded", "line 199",
                   "There are 2 python files.", "next ›", "‹ prev", "« first", "last »", "ArrowRight"]:
        assert needle in "".join(parser.text), needle
    assert page.count("</script>") == 2  # the one in the reasoning/output is escaped
    assert "http://" not in page and "https://" not in page


def test_html_escapes_markup_in_reasoning():
    traj = load_demo()
    page = render_html(build_view(traj))
    assert "<b>bold</b>" not in page and "&lt;b&gt;bold&lt;/b&gt;" in page
