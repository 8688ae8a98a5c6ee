"""Step-row files in and out, chosen by extension: JSONL (`.jsonl`, `.json`), Parquet
(`.parquet`, `.pq`) or Arrow IPC (`.arrow`, `.feather`, `.ipc`).

    src = read_rows("steps.parquet")          # src.rows: StepRows (validated)
    result = compute(src.rows, config)
    write_rows("adv.parquet", src, result.columns, meta=result.metadata)
    write_rows("kept.parquet", src, keep=mask)  # a filter: the kept input rows

Columnar files never become Python dicts: columns are checked with vectorised kernels, ids are
dictionary-encoded into integer codes numbered in sorted id order (so results equal the JSONL
path's, which numbers string ids in sorted order too), and the input table is written back
with the result columns appended. Errors name `FILE:ROW` (1-based) like JSONL's `FILE:LINE`.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from agentrm.advantages.rows import (
    StepRows,
    anchor_text,
    read_step_rows,
    write_jsonl_atomic,
)
from agentrm.errors import InputError
from agentrm.files import atomic_path

COLUMNAR = {".parquet": "parquet", ".pq": "parquet", ".arrow": "arrow", ".feather": "arrow",
            ".ipc": "arrow"}


def file_format(path: str | os.PathLike) -> str:
    return COLUMNAR.get(Path(path).suffix.lower(), "jsonl")


@dataclass
class RowFile:
    """Validated step rows plus the input as read: an Arrow table (columnar) or records (JSONL)."""

    rows: StepRows
    path: str
    table: Any = None  # pyarrow.Table
    records: list[dict] | None = None

    def __len__(self) -> int:
        return len(self.rows)

    def extra(self, key: str, kind: type) -> list | None:
        """An optional per-row column (`verified`, `text`) or None when no row has it."""
        if self.records is not None:
            if not any(key in r for r in self.records):
                return None
            return [r.get(key) for r in self.records]
        if key not in self.table.column_names:
            return None
        return self.table.column(key).to_pylist()


def read_rows(path: str | os.PathLike) -> RowFile:
    """Read and validate a step-row file (format by extension); bad input raises InputError."""
    if file_format(path) == "jsonl":
        rows, records = read_step_rows(path)
        return RowFile(rows, str(path), records=records)
    table = _read_table(path)
    return RowFile(rows_from_table(table, str(path)), str(path), table=table)


def _read_table(path: str | os.PathLike):
    import pyarrow as pa
    import pyarrow.feather as feather
    import pyarrow.parquet as pq

    try:
        if file_format(path) == "parquet":
            return pq.read_table(path)
        return feather.read_table(path)
    except FileNotFoundError:
        raise InputError("cannot read: no such file", path=str(path)) from None
    except (OSError, pa.ArrowInvalid) as exc:
        raise InputError(f"not a {file_format(path)} file ({str(exc).splitlines()[0]})",
                         path=str(path)) from None


def _fail(message: str, path: str, index: int | None = None) -> InputError:
    return InputError(message, path=path, line=None if index is None else int(index) + 1)


def _first(mask) -> int:
    return int(np.flatnonzero(np.asarray(mask))[0])


def _codes(column, name: str, path: str) -> np.ndarray:
    """Integer codes of an id column, numbered in sorted order of the ids as strings."""
    import pyarrow as pa
    import pyarrow.compute as pc

    t = column.type
    if not (pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_integer(t)
            or pa.types.is_dictionary(t)):
        raise _fail(f"{name!r} must be a string or integer column, not {t}", path)
    if column.null_count:
        raise _fail(f"missing field {name!r}", path, _first(column.is_null().to_numpy(zero_copy_only=False)))
    if pa.types.is_dictionary(t):
        column = column.cast(t.value_type)
    if not (pa.types.is_string(column.type) or pa.types.is_large_string(column.type)):
        column = pc.cast(column, pa.string())
    encoded = column.combine_chunks().dictionary_encode() if isinstance(column, pa.ChunkedArray) \
        else column.dictionary_encode()
    order = pc.sort_indices(encoded.dictionary).to_numpy()
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = np.arange(len(order))
    return rank[encoded.indices.to_numpy(zero_copy_only=False)]


def _numbers(table, name: str, path: str, required: bool) -> np.ndarray:
    import pyarrow as pa

    if name not in table.column_names:
        if required:
            raise _fail(f"missing field {name!r}", path)
        return np.full(table.num_rows, np.nan)
    column = table.column(name)
    if not (pa.types.is_integer(column.type) or pa.types.is_floating(column.type)
            or pa.types.is_null(column.type)):
        raise _fail(f"{name!r} must be a finite number or null, not {column.type}", path)
    values = column.to_numpy(zero_copy_only=False).astype(np.float64)  # nulls → NaN
    if pa.types.is_floating(column.type):
        bad = ~np.isfinite(values) & ~column.is_null().to_numpy(zero_copy_only=False)
        if bad.any():
            i = _first(bad)
            raise _fail(f"{name!r} must be a finite number or null, got {values[i]!r}", path, i)
    return values


def _anchors(table, path: str) -> np.ndarray:
    import pyarrow as pa
    import pyarrow.compute as pc

    n = table.num_rows
    if "anchor" not in table.column_names:
        return np.full(n, None, object)
    column = table.column("anchor")
    if pa.types.is_dictionary(column.type):
        column = column.cast(column.type.value_type)
    if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
        if not column.null_count:  # integer codes in sorted text order: C-level grouping
            return _codes(column, "anchor", path)
        out = np.empty(n, dtype=object)
        out[:] = column.to_pylist()
        return out
    if pa.types.is_integer(column.type) and not column.null_count:
        out = np.empty(n, dtype=object)  # canonical JSON of an integer is its decimal text
        out[:] = ["\x00" + s for s in pc.cast(column, pa.string()).to_pylist()]
        return out
    out = np.empty(n, dtype=object)
    values = column.to_pylist()
    for i, value in enumerate(values):
        if isinstance(value, float) and not math.isfinite(value):
            raise _fail("'anchor' must not be NaN", path, i)
        out[i] = anchor_text(value)
    return out


def rows_from_table(table, path: str = "<table>") -> StepRows:
    """Validate an Arrow table of step rows into StepRows, vectorised."""
    import pyarrow as pa

    for key in ("uid", "traj_uid", "step", "reward"):
        if key not in table.column_names:
            raise _fail(f"missing field {key!r}", path)
    uid, traj = _codes(table.column("uid"), "uid", path), _codes(table.column("traj_uid"), "traj_uid", path)
    step_col = table.column("step")
    if not pa.types.is_integer(step_col.type):
        raise _fail(f"'step' must be a non-negative integer column, not {step_col.type}", path)
    if step_col.null_count:
        raise _fail("'step' must be a non-negative integer, got None", path,
                    _first(step_col.is_null().to_numpy(zero_copy_only=False)))
    step = step_col.to_numpy(zero_copy_only=False).astype(np.int64)
    if len(step) and step.min() < 0:
        i = _first(step < 0)
        raise _fail(f"'step' must be a non-negative integer, got {int(step[i])}", path, i)
    reward = _numbers(table, "reward", path, required=True)
    turn_reward = _numbers(table, "turn_reward", path, required=False)
    valid = np.ones(len(step), bool)
    if "valid" in table.column_names:
        col = table.column("valid")
        if not pa.types.is_boolean(col.type) or col.null_count:
            raise _fail("'valid' must be true or false", path,
                        _first(col.is_null().to_numpy(zero_copy_only=False)) if col.null_count else None)
        valid = col.to_numpy(zero_copy_only=False).astype(bool)
    _check_keys(uid, traj, step, path)
    return StepRows.from_columns(uid, traj, step, reward, valid, _anchors(table, path), turn_reward)


def _check_keys(uid: np.ndarray, traj: np.ndarray, step: np.ndarray, path: str) -> None:
    """No duplicate (traj_uid, step); no trajectory in two groups — without a Python loop."""
    if not len(step):
        raise _fail("no step rows in the file", path)
    order = np.lexsort((step, traj))
    t, s = traj[order], step[order]
    dup = (t[1:] == t[:-1]) & (s[1:] == s[:-1])
    if dup.any():
        i = int(order[1:][dup][0])
        raise _fail(f"duplicate step {int(step[i])} of trajectory #{int(traj[i])}", path, i)
    u = uid[order]
    split = (t[1:] == t[:-1]) & (u[1:] != u[:-1])
    if split.any():
        i = int(order[1:][split][0])
        raise _fail("a trajectory appears in two groups", path, i)


def write_rows(path: str | os.PathLike, source: RowFile, columns: Mapping[str, np.ndarray] | None = None,
               keep: np.ndarray | None = None, meta: dict[str, Any] | None = None) -> int:
    """Write `source`'s rows (only `keep` ones when given) with `columns` appended (NaN → null),
    atomically, in the format of `path`'s extension; `meta` also goes to `PATH.meta.json`
    (and into Parquet's schema metadata under b"agentrm"). Returns the number of rows."""
    columns = dict(columns or {})
    index = None if keep is None else np.flatnonzero(np.asarray(keep, bool))
    fmt = file_format(path)
    if fmt == "jsonl":
        count = write_jsonl_atomic(_records(source, columns, index), path)
    else:
        table = _table(source, columns, index)
        if meta is not None:
            table = table.replace_schema_metadata({**(table.schema.metadata or {}),
                                                   b"agentrm": json.dumps(meta).encode()})
        count = _write_table(path, table)
    if meta is not None:
        write_jsonl_atomic([meta], Path(f"{path}.meta.json"))
    return count


def write_records(path: str | os.PathLike, records: list[dict[str, Any]]) -> int:
    """Plain records (a stored run's rows) in the format of `path`'s extension, atomically."""
    if file_format(path) == "jsonl":
        return write_jsonl_atomic(records, path)
    import pyarrow as pa

    return _write_table(path, pa.Table.from_pylist(records))


def _write_table(path: str | os.PathLike, table) -> int:
    with atomic_path(path) as tmp:
        if file_format(path) == "parquet":
            import pyarrow.parquet as pq

            pq.write_table(table, tmp)
        else:
            import pyarrow.feather as feather

            feather.write_feather(table, tmp)
    return table.num_rows


def _records(source: RowFile, columns: dict[str, np.ndarray], index: np.ndarray | None):
    records = source.records if source.records is not None else source.table.to_pylist()
    cols = {k: np.asarray(v).tolist() for k, v in columns.items()}
    picks = range(len(records)) if index is None else index.tolist()
    for i in picks:
        extra = {k: (None if isinstance(v[i], float) and not math.isfinite(v[i]) else v[i])
                 for k, v in cols.items()}
        yield {**records[i], **extra}


def _table(source: RowFile, columns: dict[str, np.ndarray], index: np.ndarray | None):
    import pyarrow as pa

    table = source.table if source.table is not None else pa.Table.from_pylist(source.records)
    if index is not None:
        table = table.take(pa.array(index))
    for name, values in columns.items():
        values = np.asarray(values)
        if index is not None:
            values = values[index]
        array = pa.array(values, from_pandas=values.dtype.kind == "f")  # NaN → null
        if name in table.column_names:
            table = table.set_column(table.column_names.index(name), name, array)
        else:
            table = table.append_column(name, array)
    return table


def advantages_file(input_path: str | os.PathLike, output_path: str | os.PathLike | None,
                    config) -> Any:
    """`agentrm advantages IN -o OUT` for any of the formats: read, compute, write (with
    OUT.meta.json). Returns the AdvantageResult."""
    from agentrm.advantages.registry import compute

    if output_path is None:
        raise InputError("-o OUT is required with an input file (.jsonl, .parquet or .arrow)")
    src = read_rows(input_path)
    if not len(src):
        raise InputError("no step rows in the file", path=str(input_path))
    result = compute(src.rows, config)
    write_rows(output_path, src, result.columns, meta=result.metadata)
    return result


def read_advantage_map(path: str | os.PathLike) -> dict[tuple[str, int], float]:
    """{(traj_uid, step): advantage} from `agentrm advantages` output (null → NaN)."""
    if file_format(path) == "jsonl":
        from agentrm.advantages.rows import iter_jsonl

        out: dict[tuple[str, int], float] = {}
        for rec, (name, line) in iter_jsonl(path):
            if not isinstance(rec, dict) or not {"traj_uid", "step", "advantage"} <= rec.keys():
                raise InputError("need traj_uid, step and advantage (output of `agentrm advantages`)",
                                 path=name, line=line)
            value = rec["advantage"]
            out[(str(rec["traj_uid"]), int(rec["step"]))] = math.nan if value is None else float(value)
        return out
    table = _read_table(path)
    missing = {"traj_uid", "step", "advantage"} - set(table.column_names)
    if missing:
        raise InputError(f"need traj_uid, step and advantage (output of `agentrm advantages`); "
                         f"missing {', '.join(sorted(missing))}", path=str(path))
    traj = [str(t) for t in table.column("traj_uid").to_pylist()]
    steps = table.column("step").to_pylist()
    values = table.column("advantage").to_numpy(zero_copy_only=False).astype(np.float64)
    return dict(zip(zip(traj, map(int, steps), strict=True), values.tolist(), strict=True))
