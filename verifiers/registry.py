"""Scorers by short name (`agentrm score --scorer NAME`): name → "module:factory", imported lazily.

A factory takes keyword options (from the CLI or a config) and returns a Scorer. Plug-ins add
entries through the `agentrm.scorers` entry-point group.
"""

from __future__ import annotations

import importlib
from importlib.metadata import entry_points
from typing import Any

from agentrm.errors import InputError

SCORERS: dict[str, str] = {
    # filled in by each scorer module's issue: "prm": "agentrm.verifiers.prm:make_scorer", ...
    "prm": "agentrm.verifiers.prm:make_scorer",
    "answer": "agentrm.verifiers.answer:make_scorer",
    "exec": "agentrm.verifiers.exec_verifier:make_scorer",
    "judge": "agentrm.verifiers.judge:make_scorer",
    "info-gain": "agentrm.verifiers.info_gain:make_scorer",
    "progress": "agentrm.verifiers.progress:make_scorer",
    "tests": "agentrm.verifiers.tests_verifier:make_scorer",
}


def register(name: str, target: str) -> None:
    if name in SCORERS and SCORERS[name] != target:
        raise ValueError(f"scorer {name!r} is already registered to {SCORERS[name]}")
    SCORERS[name] = target


def available() -> dict[str, str]:
    names = dict(SCORERS)
    for ep in entry_points(group="agentrm.scorers"):
        names.setdefault(ep.name, ep.value)
    return names


def make_scorer(name: str, **options: Any):
    names = available()
    if name not in names:
        raise InputError(f"unknown scorer {name!r} (--scorer): choose from {', '.join(sorted(names))}")
    module_name, _, attr = names[name].partition(":")
    factory = getattr(importlib.import_module(module_name), attr)
    return factory(**options)
