"""Rich renderables for a replay: one turn = content on the left, score bars on the right.

Used by the printed replay, the interactive player and (through an ANSI capture) the
asciicast export, so all three look the same.
"""

from __future__ import annotations

import io

from rich.console import Console, Group, RenderableType
from rich.panel import Panel
from rich.rule import Rule
from rich.syntax import Syntax
from rich.table import Table
from rich.text import Text

from agentrm.replay.view import CallView, ReplayView, TurnView, clean_text

BAR_CELLS = 10
SCORES_WIDTH = 36


def fold(text: str, max_lines: int) -> tuple[str, int]:
    """Keep the head and tail of long output; returns (text, number of lines hidden)."""
    lines = text.split("\n")
    if max_lines <= 0 or len(lines) <= max_lines:
        return text, 0
    head = max(1, (max_lines * 2) // 3)
    tail = max(1, max_lines - head)
    hidden = len(lines) - head - tail
    return "\n".join(lines[:head] + [f"… {hidden} lines folded …"] + lines[-tail:]), hidden


def output_lexer(text: str) -> str:
    """A cheap guess: the common shapes of agent tool output, else plain text."""
    head = text.lstrip()[:2000]
    if head.startswith(("diff --git", "--- ", "@@ ")) or "\n@@ " in head:
        return "diff"
    if "Traceback (most recent call last)" in head:
        return "pytb"
    if head[:1] in "{[" and head.rstrip()[-1:] in "}]":
        return "json"
    return "text"


def bar(value: float | None, lo: float, hi: float, cells: int = BAR_CELLS) -> Text:
    """A unit bar for [0, 1] scales, else a bar growing left (negative) or right from 0."""
    if value is None:
        return Text("abstained".ljust(cells), style="dim")
    if lo >= 0:
        frac = min(1.0, max(0.0, (value - lo) / ((hi - lo) or 1.0)))
        filled = round(frac * cells)
        colour = "red" if frac < 1 / 3 else "yellow" if frac < 2 / 3 else "green"
        return Text("█" * filled, style=colour) + Text("░" * (cells - filled), style="dim")
    half = cells // 2
    frac = min(1.0, abs(value) / (hi or 1.0))
    filled = round(frac * half)
    if value < 0:
        return (Text("░" * (half - filled), style="dim") + Text("█" * filled, style="red")
                + Text("│") + Text("░" * half, style="dim"))
    return (Text("░" * half, style="dim") + Text("│") + Text("█" * filled, style="green")
            + Text("░" * (half - filled), style="dim"))


def scores_table(scores: dict[str, float | None], ranges: dict[str, tuple[float, float]]) -> Table:
    table = Table.grid(padding=(0, 1))
    table.add_column(no_wrap=True, max_width=14)
    table.add_column(no_wrap=True)
    table.add_column(no_wrap=True, justify="right")
    for label in sorted(scores):
        value = scores[label]
        lo, hi = ranges.get(label, (0.0, 1.0))
        shown = "–" if value is None else (f"{value:+.3f}" if lo < 0 else f"{value:.3f}")
        table.add_row(Text(label, overflow="ellipsis"), bar(value, lo, hi), shown)
    return table


def _call_block(call: CallView, max_lines: int, output: str | None) -> list[RenderableType]:
    parts: list[RenderableType] = []
    if call.command is not None:
        code, lexer = call.command, "bash"
        parts.append(Text(f"▶ {call.name}", style="bold cyan"))
    else:
        code, lexer = call.arguments, "json"
        parts.append(Text(f"▶ {call.name}(…)", style="bold cyan"))
    parts.append(Syntax(clean_text(code), lexer, background_color="default", word_wrap=True))
    if call.error:
        parts.append(Text(f"invalid action: {call.error}", style="bold red"))
    if output is None:
        return parts
    text, hidden = fold(clean_text(output).rstrip("\n"), max_lines)
    facts = []
    if call.exit_code is not None:
        facts.append(f"exit {call.exit_code}")
    if call.duration_s is not None:
        facts.append(f"{call.duration_s:.2f}s")
    if call.timed_out:
        facts.append("TIMED OUT")
    if call.truncated:
        facts.append("truncated")
    if hidden:
        facts.append(f"{hidden} lines folded")
    style = "red" if (call.exit_code or call.timed_out) else "blue"
    body = Syntax(text, output_lexer(text), background_color="default", word_wrap=True) \
        if text else Text("(no output)", style="dim")
    parts.append(Panel(body, title="output", subtitle=" · ".join(facts) or None,
                       title_align="left", subtitle_align="right", border_style=style))
    return parts


def turn_title(view: ReplayView, turn: TurnView, position: int) -> Text:
    title = Text(f"turn {position + 1}/{len(view.turns)}", style="bold")
    title.append(f"  (index {turn.index})", style="dim")
    if turn.duration_s is not None:
        title.append(f"  {turn.duration_s:.2f}s", style="dim")
    if turn.completion_tokens is not None:
        title.append(f"  {turn.completion_tokens} tok", style="dim")
    if not turn.valid:
        title.append("  INVALID ACTION", style="bold red")
    return title


def turn_renderable(view: ReplayView, position: int, max_lines: int = 40,
                    outputs: list[str | None] | None = None, scores: bool = True) -> RenderableType:
    """A turn with its score bars beside it. `outputs` overrides call outputs (partial
    playback); `scores=False` leaves the bars out (a recording shows them once the turn ends)."""
    turn = view.turns[position]
    left: list[RenderableType] = []
    if turn.reasoning:
        left.append(Text(turn.reasoning))
    if not turn.calls:
        left.append(Text("(no tool call)", style="dim"))
    for pos, call in enumerate(turn.calls):
        shown = call.output if outputs is None else outputs[pos]
        left.extend(_call_block(call, max_lines, shown))
    grid = Table.grid(expand=True, padding=(0, 1))
    grid.add_column(ratio=1)
    if turn.scores and scores:
        grid.add_column(width=SCORES_WIDTH)
        grid.add_row(Group(*left), Panel(scores_table(turn.scores, view.score_ranges),
                                         title="scores", border_style="magenta"))
    else:
        grid.add_row(Group(*left))
    return Group(Rule(turn_title(view, turn, position), align="left"), grid)


def header_renderable(view: ReplayView) -> RenderableType:
    facts = Table.grid(padding=(0, 2))
    facts.add_column(style="bold")
    facts.add_column()
    # ids, task ids and policy names are recorded data: Text, never rich markup
    facts.add_row("trajectory", Text(view.trajectory_id))
    facts.add_row("task", Text(view.task_id))
    reward = "unknown" if view.reward is None else f"{view.reward:g}"
    facts.add_row("exit", Text(f"{view.exit_status}   reward {reward}   turns {len(view.turns)}"))
    if view.policy:
        facts.add_row("policy", Text(view.policy))
    parts: list[RenderableType] = [facts]
    if view.trajectory_scores:
        parts.append(scores_table(view.trajectory_scores, {}))
    if view.instruction:
        parts.append(Panel(Text(view.instruction), title="task", title_align="left",
                           border_style="dim"))
    return Panel(Group(*parts), title="agentrm replay", title_align="left", border_style="cyan")


def footer_renderable(view: ReplayView) -> RenderableType | None:
    if not view.final:
        return None
    return Panel(Text(view.final), title="after the last turn", title_align="left",
                 border_style="dim")


def patch_renderable(view: ReplayView) -> RenderableType | None:
    """The SWE-bench patch the trajectory submitted (a gold or empty prediction has only this)."""
    if view.patch is None:
        return None
    title = Text("patch") + (Text(f" · {view.verdict}") if view.verdict else Text(""))
    body: RenderableType = Syntax(view.patch.rstrip("\n"), "diff", background_color="default",
                                  word_wrap=True) if view.patch.strip() else Text("(empty patch)", style="dim")
    return Panel(body, title=title, title_align="left", border_style="dim")


def full_renderable(view: ReplayView, max_lines: int = 40) -> RenderableType:
    parts = [header_renderable(view)]
    parts += [turn_renderable(view, pos, max_lines) for pos in range(len(view.turns))]
    tail = [footer_renderable(view), patch_renderable(view)]
    return Group(*parts, *[part for part in tail if part is not None])


def to_ansi(renderable: RenderableType, width: int, color_system: str | None = "256") -> str:
    """Render to a string with escape codes (or plain text when color_system is None)."""
    buf = io.StringIO()
    console = Console(file=buf, width=width, force_terminal=color_system is not None,
                      color_system=color_system, legacy_windows=False, soft_wrap=False,
                      emoji=False, highlight=False)
    console.print(renderable)
    return buf.getvalue()
