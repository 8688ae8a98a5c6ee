"""One self-contained HTML page of a replay: inline CSS/JS, no external assets.

Same content as the terminal view (reasoning, calls, highlighted and folded output, score
bars) with step controls (buttons, ←/→, n/p) and a Play button that reveals each turn's
output chunks with the recorded timing. Highlighting is pygments with inline styles so the
page works offline and from a file:// URL.
"""

from __future__ import annotations

import html
import json
from pathlib import Path

from pygments import highlight
from pygments.formatters import HtmlFormatter
from pygments.lexers import get_lexer_by_name

from agentrm.files import atomic_write
from agentrm.replay import assets as replay_assets
from agentrm.replay.render import output_lexer
from agentrm.replay.timing import schedule
from agentrm.replay.view import CallView, ReplayView, TurnView, clean_text

_FORMATTER = HtmlFormatter(noclasses=True, nowrap=True, style="monokai")


def _code(text: str, lexer: str) -> str:
    try:
        return highlight(text, get_lexer_by_name(lexer), _FORMATTER)
    except Exception:  # a lexer failing on odd input must not lose the text
        return html.escape(text)


def _output(text: str, max_lines: int) -> str:
    lines = text.rstrip("\n").split("\n")
    lexer = output_lexer(text)
    if max_lines <= 0 or len(lines) <= max_lines:
        return f'<pre class="out">{_code(chr(10).join(lines), lexer)}</pre>'
    head, tail = max(1, max_lines * 2 // 3), max(1, max_lines - max_lines * 2 // 3)
    hidden = lines[head:len(lines) - tail]
    return (f'<pre class="out">{_code(chr(10).join(lines[:head]), lexer)}</pre>'
            f'<details class="fold"><summary>{len(hidden)} lines folded</summary>'
            f'<pre class="out">{_code(chr(10).join(hidden), lexer)}</pre></details>'
            f'<pre class="out">{_code(chr(10).join(lines[-tail:]), lexer)}</pre>')


def _bar(value: float | None, lo: float, hi: float) -> str:
    if value is None:
        return '<span class="bar none">abstained</span>'
    if lo >= 0:
        frac = min(1.0, max(0.0, (value - lo) / ((hi - lo) or 1.0)))
        colour = "bad" if frac < 1 / 3 else "mid" if frac < 2 / 3 else "good"
        return (f'<span class="bar"><span class="fill {colour}" '
                f'style="left:0;width:{frac * 100:.1f}%"></span></span>')
    frac = min(1.0, abs(value) / (hi or 1.0)) * 50
    left, colour = (50 - frac, "bad") if value < 0 else (50, "good")
    return (f'<span class="bar signed"><span class="fill {colour}" '
            f'style="left:{left:.1f}%;width:{frac:.1f}%"></span></span>')


def _scores(scores: dict[str, float | None], ranges: dict[str, tuple[float, float]]) -> str:
    rows = []
    for label in sorted(scores):
        value = scores[label]
        lo, hi = ranges.get(label, (0.0, 1.0))
        shown = "–" if value is None else (f"{value:+.3f}" if lo < 0 else f"{value:.3f}")
        rows.append(f'<tr><td class="label">{html.escape(label)}</td><td>{_bar(value, lo, hi)}'
                    f'</td><td class="num">{shown}</td></tr>')
    return f'<table class="scores">{"".join(rows)}</table>' if rows else ""


def _call(call: CallView, max_lines: int, turn_pos: int, call_pos: int) -> str:
    code, lexer = (call.command, "bash") if call.command is not None else (call.arguments, "json")
    parts = [f'<div class="call"><div class="callname">▶ {html.escape(call.name)}</div>',
             f'<pre class="cmd">{_code(clean_text(code), lexer)}</pre>']
    if call.error:
        parts.append(f'<div class="invalid">invalid action: {html.escape(call.error)}</div>')
    if call.output is not None:
        facts = [f"exit {call.exit_code}"] if call.exit_code is not None else []
        facts += [f"{call.duration_s:.2f}s"] if call.duration_s is not None else []
        facts += ["TIMED OUT"] if call.timed_out else []
        facts += ["truncated"] if call.truncated else []
        bad = " bad" if (call.exit_code or call.timed_out) else ""
        parts.append(f'<div class="output{bad}" id="out-{turn_pos}-{call_pos}">'
                     f'<div class="facts">output · {" · ".join(facts)}</div>'
                     f'{_output(clean_text(call.output), max_lines)}</div>')
    parts.append("</div>")
    return "".join(parts)


def _turn(view: ReplayView, turn: TurnView, pos: int, max_lines: int) -> str:
    facts = [f"index {turn.index}"]
    facts += [f"{turn.duration_s:.2f}s"] if turn.duration_s is not None else []
    facts += [f"{turn.completion_tokens} tok"] if turn.completion_tokens is not None else []
    invalid = ' <span class="invalid">INVALID ACTION</span>' if not turn.valid else ""
    calls = "".join(_call(c, max_lines, pos, i) for i, c in enumerate(turn.calls))
    reasoning = (f'<pre class="reasoning">{html.escape(turn.reasoning)}</pre>'
                 if turn.reasoning else "")
    return (f'<section class="turn" id="turn-{pos}" data-pos="{pos}">'
            f'<h2>turn {pos + 1}/{len(view.turns)} <small>{" · ".join(facts)}</small>{invalid}</h2>'
            f'<div class="grid"><div class="content">{reasoning}{calls or "<i>(no tool call)</i>"}'
            f'</div><aside>{_scores(turn.scores, view.score_ranges)}</aside></div></section>')


def _playback_data(view: ReplayView) -> str:
    """Per turn: start, action time and each call's (time, chunk) events, for the Play button."""
    data = []
    for timing in schedule(view):
        data.append({"start": timing.start, "action": timing.action_at, "end": timing.end,
                     "calls": [[[t, clean_text(c)] for t, c in call.events]
                               for call in timing.calls]})
    return json.dumps(data, ensure_ascii=False).replace("</", "<\\/")


def render_html(view: ReplayView, max_lines: int = 40) -> str:
    reward = "unknown" if view.reward is None else f"{view.reward:g}"
    head = (f'<h1>agentrm replay</h1><table class="facts">'
            f'<tr><th>trajectory</th><td>{html.escape(view.trajectory_id)}</td></tr>'
            f'<tr><th>task</th><td>{html.escape(view.task_id)}</td></tr>'
            f'<tr><th>exit</th><td>{html.escape(view.exit_status)} · reward {reward} · '
            f'{len(view.turns)} turns</td></tr>'
            + (f'<tr><th>policy</th><td>{html.escape(view.policy)}</td></tr>' if view.policy else "")
            + "</table>" + _scores(view.trajectory_scores, {})
            + (f'<pre class="task">{html.escape(view.instruction)}</pre>' if view.instruction else ""))
    turns = "".join(_turn(view, t, pos, max_lines) for pos, t in enumerate(view.turns))
    final = (f'<section class="final"><h2>after the last turn</h2><pre>{html.escape(view.final)}'
             f'</pre></section>' if view.final else "")
    css, js = replay_assets.CSS, replay_assets.JS
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f'<title>{html.escape("agentrm replay " + view.title)}</title><style>{css}</style>'
            # only the controls stay on screen while scrolling; the facts scroll away with the page
            f'</head><body><section class="summary">{head}</section><header><nav id="controls">'
            f'<button id="first">« first</button><button id="prev">‹ prev</button>'
            f'<span id="pos">turn 1/{len(view.turns)}</span><button id="next">next ›</button>'
            f'<button id="last">last »</button><button id="play">play</button>'
            f'<label>speed <input id="speed" type="number" value="1" min="0.1" step="0.5"></label>'
            f'<label><input id="all" type="checkbox"> show all</label></nav></header>'
            f'<main>{turns}{final}</main>'
            f'<script type="application/json" id="timing">{_playback_data(view)}</script>'
            f'<script>{js}</script></body></html>\n')


def write_html(view: ReplayView, path: str | Path, max_lines: int = 40) -> None:
    """Write the page atomically (temp file + rename)."""
    atomic_write(path, render_html(view, max_lines))
