"""Scorers by short name (`agentrm score --scorer NAME`): name → factory, imported lazily.

Each entry says which of the shared model flags (`--model`, `--style`, …) the scorer takes, so a
command with several scorers hands each only its own, and a one-line description for `--help`.
A factory takes keyword options and returns a Scorer. Plug-ins add entries through the
`agentrm.scorers` entry-point group (they take every option given with `-o`).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any

from agentrm.errors import InputError

PRM_FLAGS = ("model", "style", "template", "separator", "good", "bad", "aggregate", "max_length",
             "device", "backend", "batch_size")


@dataclass(frozen=True)
class Entry:
    target: str  # "module:factory"
    takes: tuple[str, ...] = ()  # shared model flags this scorer accepts
    summary: str = ""


SCORERS: dict[str, Entry] = {
    "prm": Entry("agentrm.verifiers.prm:make_scorer", PRM_FLAGS,
                 "process reward model, one pass per trajectory (token-cls, tag, value, judge)"),
    "answer": Entry("agentrm.verifiers.answer:make_scorer", (), "final answer vs the task's answer"),
    "exec": Entry("agentrm.verifiers.exec_verifier:make_scorer", (),
                  "runs the submission in a fresh sandbox and compares its output"),
    "judge": Entry("agentrm.verifiers.judge:make_scorer", ("model",),
                   "an LLM judge that may run tools in its own sandbox"),
    "info-gain": Entry("agentrm.verifiers.info_gain:make_scorer", ("model", "device", "backend"),
                       "per-turn information gain about the answer (IGPO)"),
    "progress": Entry("agentrm.verifiers.progress:make_scorer", (),
                      "per-turn progress from K branch rollouts out of snapshots (PAV)"),
    "submitted": Entry("agentrm.verifiers.format_reward:make_scorer", (),
                       "format reward: 1 when the agent called submit (weight it below the outcome)"),
    "tests": Entry("agentrm.verifiers.tests_verifier:make_scorer", (),
                   "the task's tests (SWE-bench FAIL_TO_PASS / PASS_TO_PASS) in a fresh container"),
}


def register(name: str, target: str, takes: tuple[str, ...] = (), summary: str = "") -> None:
    if name in SCORERS and SCORERS[name].target != target:
        raise ValueError(f"scorer {name!r} is already registered to {SCORERS[name].target}")
    SCORERS[name] = Entry(target, takes, summary)


def available() -> dict[str, Entry]:
    names = dict(SCORERS)
    for ep in entry_points(group="agentrm.scorers"):
        names.setdefault(ep.name, Entry(ep.value, summary="plug-in"))
    return names


def describe() -> str:
    """One line per scorer, for help texts."""
    return "; ".join(f"{name}: {entry.summary}" for name, entry in sorted(available().items()))


def _entry(name: str) -> Entry:
    names = available()
    if name not in names:
        raise InputError(f"unknown scorer {name!r} (--scorer): choose from {', '.join(sorted(names))}")
    return names[name]


def options_for(name: str, shared: dict[str, Any]) -> dict[str, Any]:
    """The shared model flags that scorer `name` takes (None values dropped)."""
    takes = set(_entry(name).takes)
    return {k: v for k, v in shared.items() if k in takes and v is not None}


def make_scorer(name: str, **options: Any):
    module_name, _, attr = _entry(name).target.partition(":")
    factory = getattr(importlib.import_module(module_name), attr)
    return factory(**options)
