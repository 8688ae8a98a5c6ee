"""Results into the trace store: one task per instance, one trajectory per evaluated patch, and
a trajectory-level "tests" score. Infrastructure errors get value None (never 0) and say so."""

from __future__ import annotations

from typing import Any

from agentrm.evals.swebench.dataset import Instance
from agentrm.evals.swebench.report import InstanceResult
from agentrm.types import ExitStatus, Task, Trajectory
from agentrm.verifiers.tests_verifier import EMPTY, TestRun, TestSpec, TestVerifier


def trajectory_id(run_id: str, instance_id: str) -> str:
    return f"{run_id}/{instance_id}"


def _value(result: InstanceResult, run: TestRun | None) -> float | None:
    if run is not None:
        return run.reward
    return 0.0 if result.status == EMPTY else None  # no patch is the model's; the rest is not


def record(store: Any, run_id: str, inst: Instance, result: InstanceResult, patch: str | None,
           spec: TestSpec | None, run: TestRun | None) -> str:
    """Write the instance's task, trajectory and score; returns the trajectory id."""
    store.upsert_task(Task(
        id=inst.instance_id, instruction=inst.problem_statement, image=result.image,
        verifier={"kind": "tests"},
        metadata={"repo": inst.repo, "base_commit": inst.base_commit, "version": inst.version,
                  "benchmark": "swe-bench"}))
    value = _value(result, run)
    meta = {"swebench": {"instance_id": inst.instance_id, "status": result.status,
                         "resolved": result.resolved, "model_name_or_path": result.model,
                         "error": result.error},
            "model_patch": patch}
    if spec is not None:
        meta["tests_verifier"] = spec.to_dict()
    traj_id = result.trajectory_id
    if traj_id is None:
        traj_id = trajectory_id(run_id, inst.instance_id)
        store.begin_trajectory(Trajectory(traj_id, inst.instance_id, inst.instance_id,
                                          exit_status=ExitStatus.IMPORTED, policy=result.model,
                                          run_id=run_id, metadata=meta))
        status = ExitStatus.IMPORTED
    else:  # agent mode: the runtime wrote the turns; add the patch, spec and verdict
        existing = store.get_trajectory(traj_id)
        store.update_trajectory(traj_id, metadata={**existing.metadata, **meta})
        status = existing.exit_status
    store.end_trajectory(traj_id, status, value)
    details = run.details() if run is not None else {"status": result.status, "error": result.error,
                                                     "failure_kind": None if value is not None
                                                     else "infrastructure"}
    store.write_scores([TestVerifier().trajectory_score(traj_id, value, **details)])
    return traj_id
