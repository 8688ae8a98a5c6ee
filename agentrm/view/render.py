"""Pure helpers that turn stored rows into what the templates draw: histogram bars, diff lines,
per-turn score and advantage rows, SWE-bench test results. No database and no HTML here (the
templates escape everything), so each piece is testable on plain data."""

from __future__ import annotations

import json
import math
import time
from collections import defaultdict
from typing import Any

MAX_TEXT = 20_000  # characters of one message or output shown before "… (N more)"


def fmt(value: Any, digits: int = 4) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        return f"{value:.{digits}g}"
    return str(value)


def pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f}%"


def when(epoch: float | None) -> str:
    return "–" if epoch is None else time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(epoch))


def seconds(value: float | None) -> str:
    if value is None:
        return "–"
    if value < 60:
        return f"{value:.2f} s" if value < 10 else f"{value:.0f} s"
    return f"{value / 60:.1f} min" if value < 3600 else f"{value / 3600:.1f} h"


def clip(text: str | None, limit: int = MAX_TEXT) -> str:
    text = text or ""
    return text if len(text) <= limit else f"{text[:limit]}\n… ({len(text) - limit} more characters)"


def content_text(content: Any) -> str:
    """A chat message's content as text (strings, content-part lists, None)."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = [p.get("text", "") if isinstance(p, dict) and p.get("type", "text") == "text"
                 else f"[{p.get('type', 'part')}]" if isinstance(p, dict) else str(p) for p in content]
        return "\n".join(parts)
    return json.dumps(content, ensure_ascii=False)


def arguments_text(arguments: Any) -> str:
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments)
        except ValueError:
            return arguments
    if isinstance(arguments, dict) and set(arguments) == {"command"} and isinstance(arguments["command"], str):
        return arguments["command"]
    return json.dumps(arguments, indent=1, ensure_ascii=False)


def histogram_bars(hist: dict[str, Any], width: int = 320, height: int = 110) -> list[dict[str, Any]]:
    """Bar rectangles (x, y, w, h) and their ranges for an SVG drawn by the template."""
    counts = hist.get("counts") or []
    if not counts:
        return []
    top = max(counts) or 1
    lo, hi = hist["lo"], hist["hi"]
    step = (hi - lo) / len(counts) if hi > lo else 0.0
    bar_w = width / len(counts)
    out = []
    for i, c in enumerate(counts):
        h = 0 if c == 0 else max(1.0, height * c / top)
        a = lo + i * step
        out.append({"x": round(i * bar_w, 2), "w": round(max(bar_w - 1, 1), 2), "y": round(height - h, 2),
                    "h": round(h, 2), "count": c,
                    "label": f"{fmt(a)} … {fmt(a + step)}: {c}" if step else f"{fmt(lo)}: {c}"})
    return out


def diff_lines(patch: str | None) -> list[tuple[str, str]]:
    """(kind, text) per line of a unified diff; kind ∈ file, hunk, add, del, ctx."""
    out = []
    for line in (patch or "").splitlines():
        if line.startswith(("diff --git", "+++", "---", "index ", "new file", "deleted file")):
            kind = "file"
        elif line.startswith("@@"):
            kind = "hunk"
        elif line.startswith("+"):
            kind = "add"
        elif line.startswith("-"):
            kind = "del"
        else:
            kind = "ctx"
        out.append((kind, line))
    return out


def score_reason(details: dict[str, Any] | None) -> str:
    """Why a scorer gave its value: its stated reason, else the compact remaining details."""
    details = details or {}
    for key in ("reason", "verdict", "error", "abstain", "status"):
        if details.get(key):
            value = details[key]
            return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)[:500]
    rest = {k: v for k, v in details.items() if k not in ("config", "log", "tests", "tests_status")}
    return json.dumps(rest, ensure_ascii=False, default=str)[:500] if rest else ""


def by_turn(scores: list[Any], advantages: list[Any]) -> tuple[dict, dict, list]:
    """Scores and advantages per turn index, and the trajectory-level scores."""
    turn_scores: dict[int, list] = defaultdict(list)
    traj_scores = []
    for s in scores:
        row = {"scorer": s.scorer, "value": s.value, "version": s.version,
               "reason": score_reason(s.details), "details": s.details}
        if s.turn_index is None:
            traj_scores.append(row)
        else:
            turn_scores[s.turn_index].append(row)
    turn_adv: dict[int, list] = defaultdict(list)
    for a in advantages:
        parts = {k: v for k, v in (a.details or {}).items() if isinstance(v, (int, float)) or v is None}
        turn_adv[a.turn_index].append({"estimator": a.estimator, "value": a.value, "parts": parts})
    return turn_scores, turn_adv, traj_scores


def tests_verdict(traj_scores: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The SWE-bench test verdict from a trajectory-level `tests` score, for the patch view."""
    for s in traj_scores:
        if s["scorer"] != "tests":
            continue
        d = s["details"] or {}
        groups = []
        for name, result in (d.get("tests_status") or {}).items():
            for outcome in ("success", "failure"):
                for test in (result or {}).get(outcome) or []:
                    groups.append({"group": name, "test": test, "ok": outcome == "success"})
        return {"value": s["value"], "status": d.get("status"), "resolution": d.get("resolution"),
                "patch_applied": d.get("patch_applied"), "error": d.get("error"),
                "suspicious": d.get("suspicious") or [], "tests": groups,
                "duration_s": d.get("duration_s")}
    return None


def gold_from_metadata(rows: list[dict[str, Any]]) -> str | None:
    """The gold patch among trajectories of one task: a SWE-bench evaluation of `gold`."""
    for row in rows:
        meta = row.get("metadata") or {}
        if (meta.get("swebench") or {}).get("model_name_or_path") == "gold" and meta.get("model_patch"):
            return meta["model_patch"]
    return None
