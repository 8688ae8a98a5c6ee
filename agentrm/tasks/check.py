"""A built-in outcome check for tasks with a checkable answer (the full verifiers live in
agentrm.verifiers; this one is enough for the bundled suite).

Verifier specs (Task.verifier):
  {"kind": "answer", "mode": "exact" | "numeric" | "contains" | "regex" | "path", "tolerance": 1e-6}
  {"kind": "command", "command": "python3 test.py", "timeout": 60, "restore": {path: text}}
      run in the rollout's sandbox after submit, out of the agent's reach (Sandbox.verify_exec);
      exit 0 = 1.0. `restore` rewrites files (tests) first, so editing them does not pass.
The reward is None (unknown) after an infrastructure failure and for tasks without a check,
0.0 when the agent failed (wrong answer, a limit, format errors) and 1.0 when it succeeded.
"""

from __future__ import annotations

import math
import re
from typing import Any

from agentrm.types import ExitStatus, Task

MODES = ("exact", "numeric", "contains", "regex", "path")
KINDS = ("answer", "command")


def verifier_spec(task: Task) -> dict[str, Any] | None:
    spec = dict(task.verifier or {})
    if not spec:
        return {"kind": "answer", "mode": "exact"} if task.answer is not None else None
    spec.setdefault("kind", "answer")
    if spec["kind"] == "answer":
        spec.setdefault("mode", "exact")
    return spec


def validate_spec(task: Task) -> str | None:
    """Why the task's verifier spec is unusable, or None."""
    spec = verifier_spec(task)
    if spec is None:
        return None
    if spec["kind"] not in KINDS:
        return f"verifier kind {spec['kind']!r} is not one of {', '.join(KINDS)}"
    if spec["kind"] == "answer":
        if task.answer is None:
            return "an answer verifier needs `answer`"
        if spec["mode"] not in MODES:
            return f"answer mode {spec['mode']!r} is not one of {', '.join(MODES)}"
    if spec["kind"] == "command" and not isinstance(spec.get("command"), str):
        return "a command verifier needs `command` (a string)"
    return None


def _number(text: str) -> float | None:
    match = re.findall(r"-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?", text.replace(",", ""))
    return float(match[-1]) if match else None


def answer_matches(submitted: str, expected: str, mode: str = "exact", tolerance: float = 1e-6) -> bool:
    got, want = submitted.strip(), str(expected).strip()
    if mode == "exact":
        return got.strip("`'\". ") == want
    if mode == "numeric":
        a, b = _number(got), _number(want)
        return a is not None and b is not None and math.isclose(a, b, rel_tol=tolerance, abs_tol=tolerance)
    if mode == "contains":
        return want.lower() in got.lower()
    if mode == "regex":
        return re.fullmatch(want, got) is not None
    if mode == "path":
        norm = lambda p: re.sub(r"^(\./)+", "", p.strip("`'\" ").rstrip("/"))  # noqa: E731
        return norm(got) == norm(want)
    raise ValueError(f"unknown answer mode {mode!r}")


def outcome_reward(task: Task, status: ExitStatus, submission: str | None,
                   sandbox: Any = None) -> tuple[float | None, dict[str, Any]]:
    """(reward, details) for a finished trajectory."""
    if status.failure_kind is not None and status is not ExitStatus.FORMAT_ERROR:
        return None, {}  # infrastructure failure: unknown, never 0
    spec = verifier_spec(task)
    if spec is None:
        return None, {}
    if status is not ExitStatus.SUBMITTED or submission is None:
        return 0.0, {"reward_reason": status.value}
    if spec["kind"] == "answer":
        ok = answer_matches(submission, task.answer, spec["mode"], spec.get("tolerance", 1e-6))
        return float(ok), {"reward_reason": "answer " + ("matches" if ok else "differs")}
    # after the agent stopped, files restored as root, a fresh environment: no function,
    # alias, PATH entry, user site or background job of the agent's reaches the check
    r = sandbox.verify_exec(spec["command"], timeout=spec.get("timeout", 60),
                            restore=spec.get("restore"))
    if r.timed_out:
        return 0.0, {"reward_reason": "verifier command timed out"}
    return float(r.exit_code == 0), {"reward_reason": f"verifier command exit {r.exit_code}"}
