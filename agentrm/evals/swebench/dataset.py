"""SWE-bench instances and predictions (FORMATS.md §1.1–1.2), read strictly.

Instances come from JSON (a list), JSONL, parquet, a `datasets.save_to_disk` directory, a
hub dataset name (`princeton-nlp/SWE-bench_Verified`, through `datasets`, from its cache when the
cache has it), or "bundled" (the package's own instances). FAIL_TO_PASS / PASS_TO_PASS may be JSON strings or
lists. Every row keeps all its fields; v5 rows may name their own `image`, `eval_script` and
`log_parser`. A bad row is an InputError naming file:line and the field, before anything runs.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agentrm.errors import InputError
from agentrm.evals.swebench.hub import looks_like_hub_name, rows_from_hub
from agentrm.evals.swebench.repos import DATA

BUNDLED = DATA / "instances.jsonl"
REQUIRED = ("instance_id", "repo", "FAIL_TO_PASS", "PASS_TO_PASS")


@dataclass
class Instance:
    instance_id: str
    repo: str
    base_commit: str
    patch: str
    test_patch: str
    problem_statement: str
    version: str
    fail_to_pass: list[str]
    pass_to_pass: list[str]
    row: dict[str, Any] = field(repr=False, default_factory=dict)  # every field, as read

    @property
    def image(self) -> str | None:
        return self.row.get("image") or None

    @property
    def eval_script(self) -> str | None:
        return self.row.get("eval_script") or None

    @property
    def log_parser(self) -> str | None:
        return self.row.get("log_parser") or None


@dataclass
class Prediction:
    instance_id: str
    model_name_or_path: str
    model_patch: str | None
    where: str = ""  # file:line, for messages


def _test_list(value: Any, name: str, where: str) -> list[str]:
    if isinstance(value, str):
        try:
            value = json.loads(value) if value.strip() else []
        except json.JSONDecodeError as exc:
            raise InputError(f"{name} is not a JSON list: {exc}", path=where) from None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InputError(f"{name} must be a list of test ids (or a JSON string of one)", path=where)
    return list(value)


def instance_from_row(row: Any, where: str) -> Instance:
    if not isinstance(row, dict):
        raise InputError(f"instance row is not an object ({type(row).__name__})", path=where)
    missing = [k for k in REQUIRED if row.get(k) in (None, "")]
    if not row.get("image") and not row.get("base_commit"):
        missing.append("base_commit")
    if missing:
        raise InputError(f"instance row lacks {', '.join(missing)}", path=where)
    for key in ("instance_id", "repo", "base_commit", "patch", "test_patch", "version"):
        if row.get(key) is not None and not isinstance(row[key], (str, int, float)):
            raise InputError(f"field {key} must be a string", path=where)
    row = dict(row)
    return Instance(
        instance_id=str(row["instance_id"]), repo=str(row["repo"]),
        base_commit=str(row.get("base_commit") or ""), patch=row.get("patch") or "",
        test_patch=row.get("test_patch") or "", problem_statement=row.get("problem_statement") or "",
        version=str(row.get("version") or ""),
        fail_to_pass=_test_list(row["FAIL_TO_PASS"], "FAIL_TO_PASS", where),
        pass_to_pass=_test_list(row["PASS_TO_PASS"], "PASS_TO_PASS", where), row=row)


def _rows(path: Path, split: str = "test") -> list[tuple[Any, str]]:
    """(row, "file:line") pairs from any supported container format."""
    if path.is_dir():
        return _rows_from_saved_dataset(path, split)
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        import pyarrow.parquet as pq

        try:
            table = pq.read_table(path)
        except Exception as exc:  # noqa: BLE001 - pyarrow raises several kinds
            raise InputError(f"cannot read parquet: {exc}", path=str(path)) from None
        return [(row, f"{path}:row {i + 1}") for i, row in enumerate(table.to_pylist())]
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise InputError("not UTF-8 text (expected JSON, JSONL or parquet)", path=str(path)) from None
    if suffix == ".json" or text.lstrip().startswith("["):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InputError(f"invalid JSON: {exc.msg}", path=str(path), line=exc.lineno) from None
        if isinstance(data, dict):
            data = data.get("instances", data.get("test", [data]))
        if not isinstance(data, list):
            raise InputError("expected a list of instance rows", path=str(path))
        return [(row, f"{path}:item {i + 1}") for i, row in enumerate(data)]
    return _jsonl(path, text)


def _jsonl(path: Path, text: str) -> list[tuple[Any, str]]:
    rows = []
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            rows.append((json.loads(line), f"{path}:{lineno}"))
        except json.JSONDecodeError as exc:
            raise InputError(f"invalid JSON: {exc.msg}", path=str(path), line=lineno) from None
    return rows


def _rows_from_saved_dataset(path: Path, split: str = "test") -> list[tuple[Any, str]]:
    if not any((path / n).exists() for n in ("dataset_info.json", "state.json", "dataset_dict.json")):
        raise InputError("directory is not a saved dataset (no dataset_info.json / dataset_dict.json)",
                         path=str(path))
    from datasets import DatasetDict, load_from_disk

    data = load_from_disk(str(path))
    if isinstance(data, DatasetDict):
        if split not in data:
            raise InputError(f"no split {split!r} (--split): the dataset has "
                             f"{', '.join(map(str, data.keys()))}", path=str(path))
        data = data[split]
    return [(row, f"{path}:row {i + 1}") for i, row in enumerate(data)]


def load_instances(source: str | Path = "bundled", split: str = "test") -> list[Instance]:
    """All instances of a dataset (file, saved directory or hub name), in order; duplicate ids
    are an error."""
    path = BUNDLED if str(source) == "bundled" else Path(source).expanduser()
    if path.exists():
        rows = _rows(path, split)
    elif looks_like_hub_name(str(source)):
        rows = rows_from_hub(str(source), split)
    else:
        raise InputError("dataset not found (--dataset PATH, a hub NAME or 'bundled')", path=str(path))
    out: dict[str, Instance] = {}
    for row, where in rows:
        inst = instance_from_row(row, where)
        if inst.instance_id in out:
            raise InputError(f"duplicate instance_id {inst.instance_id}", path=where)
        out[inst.instance_id] = inst
    if not out:
        raise InputError("dataset has no instances", path=str(path))
    return list(out.values())


def select(instances: list[Instance], ids: list[str] | None) -> list[Instance]:
    if not ids:
        return instances
    known = {i.instance_id: i for i in instances}
    unknown = [i for i in ids if i not in known]
    if unknown:
        raise InputError(f"unknown instance id(s) (--instance-ids): {', '.join(unknown[:5])}"
                         + (f" and {len(unknown) - 5} more" if len(unknown) > 5 else ""))
    return [known[i] for i in dict.fromkeys(ids)]


def load_predictions(source: str, instances: list[Instance]) -> dict[str, Prediction]:
    """Predictions of one model keyed by instance id (see load_predictions_by_model)."""
    by_model = load_predictions_by_model(source, instances)
    if len(by_model) > 1:
        raise InputError(f"predictions of {len(by_model)} models; one expected", path=source)
    return next(iter(by_model.values()), {})


def load_predictions_by_model(source: str, instances: list[Instance]
                              ) -> dict[str, dict[str, Prediction]]:
    """model_name_or_path → instance id → prediction, models in file order: a file (JSONL, JSON
    list, or dict keyed by id), "gold" (the dataset's patches) or "empty" (no patch at all)."""
    if source in ("gold", "empty"):
        return {source: {i.instance_id: Prediction(i.instance_id, source,
                                                   i.patch if source == "gold" else "")
                         for i in instances}}
    path = Path(source).expanduser()
    if not path.is_file():
        raise InputError("predictions file not found (--predictions FILE|gold|empty)", path=str(path))
    text = path.read_text(encoding="utf-8", errors="replace")
    data: Any = None
    if path.suffix.lower() != ".jsonl":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            if path.suffix.lower() == ".json":
                raise InputError(f"invalid JSON: {exc.msg}", path=str(path), line=exc.lineno) from None
    if data is None:
        rows = _jsonl(path, text)
    else:
        if isinstance(data, dict) and "instance_id" not in data:  # {id: prediction} (preds.json)
            data = [{"instance_id": k, **(v if isinstance(v, dict) else {"model_patch": v})}
                    for k, v in data.items()]
        elif isinstance(data, dict):
            data = [data]
        if not isinstance(data, list):
            raise InputError("expected a list or a dict of predictions", path=str(path))
        rows = [(row, f"{path}:item {i + 1}") for i, row in enumerate(data)]
    return _check_predictions(rows, {i.instance_id for i in instances})


def _check_predictions(rows: list[tuple[Any, str]], known: set[str]
                       ) -> dict[str, dict[str, Prediction]]:
    out: dict[str, dict[str, Prediction]] = {}
    for row, where in rows:
        if not isinstance(row, dict) or not isinstance(row.get("instance_id"), str):
            raise InputError("prediction lacks a string instance_id", path=where)
        iid = row["instance_id"]
        patch = row.get("model_patch")
        if patch is not None and not isinstance(patch, str):
            raise InputError(f"model_patch of {iid} must be a string or null", path=where)
        model = str(row.get("model_name_or_path") or "unknown")
        mine = out.setdefault(model, {})
        if iid in mine:
            raise InputError(f"duplicate prediction of {model} for {iid} (first at "
                             f"{mine[iid].where})", path=where)
        if iid not in known:
            raise InputError(f"prediction for unknown instance {iid} (not in the dataset)", path=where)
        mine[iid] = Prediction(iid, model, patch, where)
    return out
