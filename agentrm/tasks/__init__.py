"""Tasks: loading from JSONL / YAML, and the bundled suite (`bundled_tasks()`, `--tasks builtin`).

A task row: {id, instruction, image?, setup? (str | list), answer?, verifier?, network?,
metadata?}. Errors name the file and line and leave nothing half-loaded.
"""

from __future__ import annotations

import json
from dataclasses import fields
from pathlib import Path
from typing import Any

from agentrm.errors import InputError
from agentrm.tasks.check import validate_spec
from agentrm.types import Task

BUILTIN = Path(__file__).with_name("builtin.yaml")
_FIELDS = {f.name for f in fields(Task)}

__all__ = ["BUILTIN", "bundled_tasks", "load_tasks", "task_from_dict"]


def task_from_dict(row: Any, path: str, line: int | None) -> Task:
    if not isinstance(row, dict):
        raise InputError(f"a task must be a mapping, got {type(row).__name__}", path=path, line=line)
    unknown = sorted(set(row) - _FIELDS)
    if unknown:
        raise InputError(f"unknown task field(s) {', '.join(unknown)}; known: "
                         f"{', '.join(sorted(_FIELDS))}", path=path, line=line)
    for key in ("id", "instruction"):
        if not isinstance(row.get(key), str) or not row[key].strip():
            raise InputError(f"task needs a non-empty string `{key}`", path=path, line=line)
    row = dict(row)
    setup = row.get("setup") or []
    row["setup"] = [setup] if isinstance(setup, str) else setup
    if not isinstance(row["setup"], list) or not all(isinstance(s, str) for s in row["setup"]):
        raise InputError(f"task {row['id']}: `setup` must be a string or a list of strings",
                         path=path, line=line)
    if row.get("answer") is not None:
        row["answer"] = str(row["answer"])
    for key in ("verifier", "metadata"):
        if not isinstance(row.get(key) or {}, dict):
            raise InputError(f"task {row['id']}: `{key}` must be a mapping", path=path, line=line)
        row[key] = row.get(key) or {}
    task = Task(**row)
    problem = validate_spec(task)
    if problem:
        raise InputError(f"task {task.id}: {problem}", path=path, line=line)
    return task


def _yaml_rows(text: str, path: str) -> list[tuple[Any, int]]:
    import yaml

    try:
        node = yaml.compose(text)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise InputError(f"not valid YAML: {getattr(exc, 'problem', exc)}", path=path,
                         line=mark.line + 1 if mark else None) from exc
    if isinstance(data, dict) and "tasks" in data:
        data = data["tasks"]
        node = next(v for k, v in node.value if k.value == "tasks")
    if not isinstance(data, list):
        raise InputError("expected a list of tasks (or a mapping with `tasks:`)", path=path, line=1)
    return [(row, item.start_mark.line + 1) for row, item in zip(data, node.value, strict=True)]


def _jsonl_rows(text: str, path: str) -> list[tuple[Any, int]]:
    rows = []
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        try:
            rows.append((json.loads(line), lineno))
        except json.JSONDecodeError as exc:
            raise InputError(f"not JSON: {exc.msg}", path=path, line=lineno) from exc
    return rows


def load_tasks(path: str | Path) -> list[Task]:
    """Tasks from a .jsonl / .json / .yaml file, or the bundled suite for 'builtin'."""
    if str(path) == "builtin":
        return bundled_tasks()
    path = Path(path)
    if not path.is_file():
        raise InputError("no such task file (flag --tasks; or `builtin`)", path=str(path))
    text = path.read_text()
    if path.suffix in {".yaml", ".yml"}:
        rows = _yaml_rows(text, str(path))
    elif path.suffix == ".json":
        data = json.loads(text)
        rows = [(r, None) for r in (data if isinstance(data, list) else data.get("tasks", []))]
    else:
        rows = _jsonl_rows(text, str(path))
    tasks, seen = [], {}
    for row, line in rows:
        task = task_from_dict(row, str(path), line)
        if task.id in seen:
            raise InputError(f"duplicate task id {task.id!r} (first at line {seen[task.id]})",
                             path=str(path), line=line)
        seen[task.id] = line
        tasks.append(task)
    if not tasks:
        raise InputError("no tasks in file", path=str(path))
    return tasks


def bundled_tasks() -> list[Task]:
    """The bundled suite: small shell and code tasks (find, count, fix, compute)."""
    return load_tasks(BUILTIN)
