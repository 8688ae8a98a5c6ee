"""Reports in the SWE-bench harness shapes (FORMATS.md §1.5–1.6) and the run directory.

Per instance under runs/<run_id>/<model>/<instance_id>/: patch.diff, eval.sh, test_output.txt,
run_instance.log, report.json (only when the tests ran, as in SWE-bench) and result.json
(agentrm's record of every outcome, with the resume key). Files are written atomically (temp +
rename), so an interrupted run never leaves a partial result that counts as complete.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from agentrm.files import atomic_write as write_atomic
from agentrm.verifiers.tests_verifier import (
    EMPTY,
    ERROR,
    PATCH_FAILED,
    RESOLVED,
    TIMEOUT,
    UNRESOLVED,
    TestRun,
)

NO_PREDICTION = "no_prediction"


@dataclass
class InstanceResult:
    instance_id: str
    status: str  # resolved | unresolved | patch_failed | timeout | error | empty_patch | no_prediction
    model: str = "unknown"
    key: str | None = None  # resume key: hash of instance, patch and spec
    error: str | None = None
    duration_s: float = 0.0
    reused: bool = False
    image: str | None = None
    trajectory_id: str | None = None
    run: dict[str, Any] = field(default_factory=dict)  # TestRun.details()

    @property
    def resolved(self) -> bool:
        return self.status == RESOLVED

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def model_dir_name(model: str) -> str:
    """SWE-bench's `/` → `__`, and anything else unsafe in a file name → `_`."""
    return re.sub(r"[^A-Za-z0-9._+=-]", "_", model.replace("/", "__")).strip(".") or "unknown"


def instance_report(instance_id: str, patch: str | None, run: TestRun) -> dict[str, Any]:
    """report.json for one instance, in the SWE-bench shape."""
    return {instance_id: {
        "patch_is_None": patch is None,
        "patch_exists": bool(patch and patch.strip()),
        "patch_successfully_applied": run.patch_applied,
        "resolved": run.resolved,
        "tests_status": run.tests_status,
        "suspicious": run.suspicious,  # agentrm: reasons the patch reaches into the test runner
    }}


def write_instance(directory: Path, result: InstanceResult, patch: str | None,
                   run: TestRun | None, script: str | None) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    write_atomic(directory / "patch.diff", patch or "")
    if script:
        write_atomic(directory / "eval.sh", script)
    if run is not None:
        write_atomic(directory / "test_output.txt", run.log)
        if run.status in (RESOLVED, UNRESOLVED):
            write_atomic(directory / "report.json",
                         json.dumps(instance_report(result.instance_id, patch, run), indent=4))
    lines = [f"instance: {result.instance_id}", f"status: {result.status}",
             f"image: {result.image}", f"duration_s: {result.duration_s}"]
    if result.error:
        lines.append(f"error: {result.error}")
    if run is not None:
        lines += [f"apply_method: {run.apply_method}", f"exit_code: {run.exit_code}",
                  f"flags: {', '.join(run.flags) or '-'}",
                  f"suspicious: {', '.join(run.suspicious) or '-'}",
                  f"reset_files: {', '.join(run.reset_files) or '-'}"]
    write_atomic(directory / "run_instance.log", "\n".join(lines) + "\n")
    write_atomic(directory / "result.json", json.dumps(result.to_dict(), indent=2, default=str))


def read_result(directory: Path) -> InstanceResult | None:
    try:
        data = json.loads((directory / "result.json").read_text())
        return InstanceResult(**data)
    except (OSError, ValueError, TypeError):
        return None  # absent or unreadable: not complete


def summary(run_id: str, model: str, total: int, results: list[InstanceResult]) -> dict[str, Any]:
    """The run summary in the SWE-bench v2 shape, plus agentrm's outcome lists (ids the SWE-bench
    shape lumps into error_ids are split into patch_failed / timeout / infrastructure)."""
    by = {s: sorted(r.instance_id for r in results if r.status == s)
          for s in (RESOLVED, UNRESOLVED, PATCH_FAILED, TIMEOUT, ERROR, EMPTY, NO_PREDICTION)}
    submitted = sorted(r.instance_id for r in results if r.status != NO_PREDICTION)
    completed = sorted(by[RESOLVED] + by[UNRESOLVED])
    errors = sorted(by[PATCH_FAILED] + by[TIMEOUT] + by[ERROR])
    return {
        "total_instances": total,
        "submitted_instances": len(submitted),
        "completed_instances": len(completed),
        "resolved_instances": len(by[RESOLVED]),
        "unresolved_instances": len(by[UNRESOLVED]),
        "empty_patch_instances": len(by[EMPTY]),
        "error_instances": len(errors),
        "completed_ids": completed,
        "incomplete_ids": by[NO_PREDICTION],
        "empty_patch_ids": by[EMPTY],
        "submitted_ids": submitted,
        "resolved_ids": by[RESOLVED],
        "unresolved_ids": by[UNRESOLVED],
        "error_ids": errors,
        "patch_failed_ids": by[PATCH_FAILED],
        "timeout_ids": by[TIMEOUT],
        "infrastructure_error_ids": by[ERROR],
        # swebench 5's names for environment failures (ours are known, not guessed from logs)
        "infra_failure_instances": len(by[ERROR]),
        "infra_failure_ids": by[ERROR],
        "schema_version": 2,
        "run_id": run_id,
        "model_name_or_path": model,
    }


def _fraction(d: dict[str, list[str]]) -> str:
    if not d:
        return ""
    ok = len(d.get("success", []))
    return f"{ok}/{ok + len(d.get('failure', []))}"


def table_rows(results: list[InstanceResult]) -> list[list[Any]]:
    rows = []
    for r in sorted(results, key=lambda r: r.instance_id):
        ts = r.run.get("tests_status") or {}
        f2p = ts.get("FAIL_TO_PASS", {})
        p2p = ts.get("PASS_TO_PASS", {})
        note = r.error or ", ".join(r.run.get("flags") or [])
        rows.append([r.instance_id, r.status, _fraction(f2p), _fraction(p2p), f"{r.duration_s:.1f}",
                     "yes" if r.reused else "", note[:60]])
    return rows


TABLE_COLUMNS = ["instance", "status", "F2P", "P2P", "seconds", "reused", "note"]
