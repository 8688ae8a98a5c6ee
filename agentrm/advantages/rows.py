"""Step rows: the column arrays every estimator consumes, and their JSONL file format.

One row per (trajectory, step) — the verl-agent / GiGPO layout (FORMATS.md §4.1):
`{"uid", "traj_uid", "step", "anchor", "reward", "valid", "turn_reward"}`. Reading validates
every row and names `path:line` on the first bad one; estimators never see bad data.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from agentrm.errors import InputError
from agentrm.files import atomic_open

REQUIRED = ("uid", "traj_uid", "step", "reward")


def anchor_text(value: Any) -> str | None:
    """Hashable form of an anchor (ALGORITHMS.md §3.4): strings as-is; numbers, lists and dicts
    as canonical JSON (lists ≡ tuples, dict keys sorted), prefixed so 1 and "1" never collide."""
    if value is None:
        return None
    if isinstance(value, str):
        return value
    return "\x00" + json.dumps(value, sort_keys=True, separators=(",", ":"))


@dataclass
class StepRows:
    """Column arrays of step rows. reward/turn_reward NaN = unknown; anchor None = no state key."""

    uid: np.ndarray  # str
    traj_uid: np.ndarray  # str
    step: np.ndarray  # int64
    reward: np.ndarray  # float64
    valid: np.ndarray  # bool
    anchor: np.ndarray  # object: str | None
    turn_reward: np.ndarray  # float64

    def __len__(self) -> int:
        return int(self.step.shape[0])

    @classmethod
    def from_columns(cls, uid: Sequence, traj_uid: Sequence, step: Sequence, reward: Sequence,
                     valid: Sequence | None = None, anchor: Sequence | None = None,
                     turn_reward: Sequence | None = None) -> StepRows:
        n = len(step)
        rows = cls(
            uid=_id_array(uid),
            traj_uid=_id_array(traj_uid),
            step=np.asarray(step, dtype=np.int64),
            reward=np.asarray(reward, dtype=np.float64),
            valid=np.ones(n, bool) if valid is None else np.asarray(valid, dtype=bool),
            anchor=np.full(n, None, object) if anchor is None else _anchor_array(anchor),
            turn_reward=(np.full(n, np.nan) if turn_reward is None
                         else np.asarray(turn_reward, dtype=np.float64)),
        )
        for name in ("uid", "traj_uid", "reward", "valid", "anchor", "turn_reward"):
            if len(getattr(rows, name)) != n:
                raise InputError(f"column {name!r} has {len(getattr(rows, name))} values, step has {n}")
        return rows

    def take(self, index: np.ndarray) -> StepRows:
        return StepRows(**{k: getattr(self, k)[index] for k in self.__dataclass_fields__})


def _id_array(values: Sequence) -> np.ndarray:
    """Integer id arrays stay integers (fast grouping); anything else becomes strings."""
    arr = np.asarray(values)
    return arr if arr.dtype.kind in "iu" else arr.astype(str)


def _anchor_array(values: Sequence) -> np.ndarray:
    """Numeric or fixed-width string arrays (no missing anchors) stay as they are: grouping them
    is a C-level np.unique. Anything else becomes an object array (str | None)."""
    if isinstance(values, np.ndarray) and values.dtype.kind in "iuUS":
        return values
    return _object_array(values)


def _object_array(values: Sequence) -> np.ndarray:
    out = np.empty(len(values), dtype=object)
    out[:] = list(values)
    return out


def _number(record: dict, key: str, where: tuple[str, int], *, required: bool) -> float:
    if key not in record:
        if required:
            raise InputError(f"missing field {key!r}", path=where[0], line=where[1])
        return math.nan
    value = record[key]
    if value is None:
        return math.nan
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise InputError(f"{key!r} must be a finite number or null, got {value!r}",
                         path=where[0], line=where[1])
    return float(value)


def _parse(record: Any, where: tuple[str, int]) -> tuple:
    if not isinstance(record, dict):
        raise InputError("a step row must be a JSON object", path=where[0], line=where[1])
    for key in ("uid", "traj_uid"):
        if key not in record:
            raise InputError(f"missing field {key!r}", path=where[0], line=where[1])
        if not isinstance(record[key], (str, int)) or isinstance(record[key], bool):
            raise InputError(f"{key!r} must be a string or integer", path=where[0], line=where[1])
    step = record.get("step")
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        raise InputError(f"'step' must be a non-negative integer, got {step!r}",
                         path=where[0], line=where[1])
    valid = record.get("valid", True)
    if not isinstance(valid, bool):
        raise InputError(f"'valid' must be true or false, got {valid!r}", path=where[0], line=where[1])
    anchor = record.get("anchor")
    if isinstance(anchor, float) and not math.isfinite(anchor):
        raise InputError("'anchor' must not be NaN", path=where[0], line=where[1])
    return (str(record["uid"]), str(record["traj_uid"]), step,
            _number(record, "reward", where, required=True), valid, anchor_text(anchor),
            _number(record, "turn_reward", where, required=False))


def rows_from_records(records: Iterable[tuple[Any, tuple[str, int]]]) -> StepRows:
    """Validate (record, (path, line)) pairs into StepRows; the first bad row raises InputError."""
    parsed = []
    seen: dict[tuple[str, int], int] = {}
    owner: dict[str, str] = {}
    for record, where in records:
        row = _parse(record, where)
        key = (row[1], row[2])
        if key in seen:
            raise InputError(f"duplicate step {row[2]} of trajectory {row[1]!r} "
                             f"(first at line {seen[key]})", path=where[0], line=where[1])
        seen[key] = where[1]
        if owner.setdefault(row[1], row[0]) != row[0]:
            raise InputError(f"trajectory {row[1]!r} appears in groups {owner[row[1]]!r} and "
                             f"{row[0]!r}", path=where[0], line=where[1])
        parsed.append(row)
    if not parsed:
        return StepRows.from_columns([], [], [], [])
    uid, traj, step, reward, valid, anchor, turn_reward = zip(*parsed, strict=True)
    return StepRows.from_columns(uid, traj, step, reward, valid, anchor, turn_reward)


def iter_jsonl(path: str | os.PathLike) -> Iterator[tuple[Any, tuple[str, int]]]:
    """(record, (path, line)) for every non-blank line; bad JSON raises InputError path:line."""
    name = str(path)
    try:
        handle = open(path, encoding="utf-8")
    except OSError as exc:
        raise InputError(f"cannot read: {exc.strerror}", path=name) from None
    with handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                yield json.loads(line), (name, number)
            except json.JSONDecodeError as exc:
                raise InputError(f"not valid JSON ({exc.msg})", path=name, line=number) from None


def read_step_rows(path: str | os.PathLike) -> tuple[StepRows, list[dict]]:
    """The validated rows of a JSONL file, plus the original records (echoed in the output)."""
    pairs = list(iter_jsonl(path))
    return rows_from_records(pairs), [record for record, _ in pairs]


def write_jsonl_atomic(records: Iterable[dict], path: str | os.PathLike) -> int:
    """Write to a temp file next to `path`, then rename: a failure leaves no partial output."""
    count = 0
    with atomic_open(path) as out:
        for record in records:
            out.write(json.dumps(record, ensure_ascii=False, allow_nan=False) + "\n")
            count += 1
    return count
