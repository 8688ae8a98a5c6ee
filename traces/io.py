"""Interchange files: JSONL (read and write), ATIF and SWE-agent trajectories (read).

JSONL, one trajectory per line (docs/trace-format.md):
    {"id", "task_id", "group_id", "messages": [OpenAI chat messages], "reward", "answer",
     "metadata", "exit_status", "policy"}
Writing is canonical (fixed key order, compact separators, UTF-8), so import → export → import →
export is byte-identical. Reading validates everything and raises InputError naming file:line.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any

import orjson

from agentrm.errors import InputError
from agentrm.traces.messages import MessageError, split_turns
from agentrm.types import ExitStatus, Trajectory

RECORD_KEYS = ("id", "task_id", "group_id", "messages", "reward", "answer", "metadata",
               "exit_status", "policy")
_FIELD_TYPES: dict[str, tuple[type, ...]] = {
    "id": (str,), "task_id": (str,), "group_id": (str,), "answer": (str,), "policy": (str,),
    "metadata": (dict,), "exit_status": (str,),
}


def record_from_trajectory(t: Trajectory) -> dict[str, Any]:
    return {
        "id": t.id, "task_id": t.task_id, "group_id": t.group_id, "messages": t.messages(),
        "reward": t.reward, "answer": t.answer, "metadata": t.metadata or {},
        "exit_status": ExitStatus(t.exit_status).value, "policy": t.policy,
    }


def _check_record(d: Any) -> None:
    if not isinstance(d, dict):
        raise MessageError(f"a trajectory must be a JSON object, not {type(d).__name__}")
    for key in ("id", "task_id", "messages"):
        if key not in d:
            raise MessageError(f"missing field {key!r}")
    for key, types in _FIELD_TYPES.items():
        value = d.get(key)
        if value is not None and not isinstance(value, types):
            raise MessageError(f"field {key!r} must be {types[0].__name__}, not {type(value).__name__}")
    if not d["id"] or not d["task_id"]:
        raise MessageError("'id' and 'task_id' must be non-empty")
    for key in _FIELD_TYPES:
        if isinstance(d.get(key), str) and "\x00" in d[key]:
            raise MessageError(f"field {key!r} contains a NUL character")  # PostgreSQL text rejects it
    reward = d.get("reward")
    if reward is not None and not _finite_number(reward):
        raise MessageError(f"field 'reward' must be a finite number or null, not {str(reward)[:40]}")
    status = d.get("exit_status")
    if status is not None and status not in ExitStatus._value2member_map_:
        raise MessageError(f"unknown exit_status {status!r}")


def _finite_number(value: Any) -> bool:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:  # an integer too large for a float
        return False


def trajectory_from_record(d: dict[str, Any]) -> Trajectory:
    """Build a trajectory from one JSONL record; MessageError (a ValueError) if it is malformed."""
    _check_record(d)
    turns, tail = split_turns(d["messages"])  # validates the messages in the same pass
    reward = d.get("reward")
    return Trajectory(
        id=d["id"], task_id=d["task_id"], group_id=d.get("group_id") or d["task_id"],
        turns=turns, tail=tail, exit_status=ExitStatus(d.get("exit_status") or "imported"),
        reward=None if reward is None else float(reward), answer=d.get("answer"),
        policy=d.get("policy"), metadata=d.get("metadata") or {},
    )


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def read_jsonl(path: str | Path) -> Iterator[Trajectory]:
    path = Path(path)
    seen: set[str] = set()
    count = 0
    with _open_binary(path) as fh:
        for lineno, raw in enumerate(fh, start=1):
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise InputError(f"not UTF-8 (byte {exc.start})", path=str(path), line=lineno) from None
            if lineno == 1 and text.startswith("\ufeff"):
                text = text[1:]  # a UTF-8 byte order mark, as some editors write
            if not text.strip():
                continue
            try:
                try:  # orjson first (4x faster); json judges what it refuses (NaN, huge ints)
                    record = orjson.loads(text)
                except orjson.JSONDecodeError:
                    record = json.loads(text, parse_constant=_reject_constant)
                traj = trajectory_from_record(record)
            except ValueError as exc:  # JSONDecodeError and MessageError are ValueErrors
                raise InputError(_one_line(exc), path=str(path), line=lineno) from None
            except RecursionError:
                raise InputError("JSON nested too deeply", path=str(path), line=lineno) from None
            if traj.id in seen:
                raise InputError(f"duplicate trajectory id {traj.id!r}", path=str(path), line=lineno)
            seen.add(traj.id)
            count += 1
            yield traj
    if count == 0:
        raise InputError("empty file: no trajectories", path=str(path), line=1)


def _open_binary(path: Path) -> IO[bytes]:
    try:
        return path.open("rb")
    except FileNotFoundError:
        raise InputError("no such file", path=str(path)) from None
    except IsADirectoryError:
        raise InputError("is a directory, not a file", path=str(path)) from None


def _one_line(exc: Exception) -> str:
    return " ".join(str(exc).split())


def dumps_record(record: dict[str, Any]) -> str:
    """Canonical single-line JSON; falls back to ASCII escapes for lone surrogates."""
    try:
        line = json.dumps(record, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
        line.encode("utf-8")
        return line
    except UnicodeEncodeError:
        return json.dumps(record, ensure_ascii=True, separators=(",", ":"), allow_nan=False)


def write_jsonl(trajs: Iterable[Trajectory], path: str | Path | IO[str]) -> int:
    """Write trajectories as JSONL; returns the number written."""
    if not isinstance(path, (str, Path)):
        return _write_lines(trajs, path)
    with open(path, "w", encoding="utf-8", newline="\n") as fh:
        return _write_lines(trajs, fh)


def _write_lines(trajs: Iterable[Trajectory], fh: IO[str]) -> int:
    n = 0
    for t in trajs:
        fh.write(dumps_record(record_from_trajectory(t)) + "\n")
        n += 1
    return n


def detect_format(path: Path) -> str:
    """'jsonl', 'atif', 'swe-agent' or 'mini-swe-agent', by name and, for JSON, by its keys."""
    name = path.name.lower()
    if name.endswith(".jsonl"):
        return "jsonl"
    if name.endswith(".traj"):
        return "swe-agent"
    from agentrm.traces.formats import sniff_json
    return sniff_json(path)


def read_trajectories(path: str | Path, fmt: str | None = None) -> Iterator[Trajectory]:
    """Trajectories from a JSONL, ATIF or SWE-agent file, or a directory (traces/harnesses.py);
    InputError naming path:line if bad.
    A missing file fails here, at the call, not at the first item: `traces import` opens (and
    would create) the store only after this returns."""
    path = Path(path)
    if path.is_dir():  # a harness's output folder (Harbor, Agent Lightning) or a folder of files
        from agentrm.traces.harnesses import read_directory
        return read_directory(path, fmt)
    _open_binary(path).close()
    fmt = fmt or detect_format(path)
    if fmt == "jsonl":
        return read_jsonl(path)
    from agentrm.traces.formats import READERS
    if fmt not in READERS:
        raise InputError(f"unknown trace format {fmt!r} (jsonl, {', '.join(READERS)})", path=str(path))
    return READERS[fmt](path)
