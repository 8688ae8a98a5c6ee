"""`agentrm eval swe-bench`: evaluate predictions (or an agent) on SWE-bench instances.

Stages per instance: environment spec → instance image → (agent mode: roll out the policy in
the image and take `git diff`) → test verifier in a fresh container → report files → trace
store. Instances run in a bounded thread pool (default ≤ 0.75 × cores, EVAL_HARNESS_LESSONS §8).
A result is reused only when its resume key matches: the same instance, patch hash and spec
hash (§7), so re-running a run id with a new patch re-evaluates it.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from agentrm.errors import AgentrmError
from agentrm.evals.swebench import images, record
from agentrm.evals.swebench.dataset import (
    Instance,
    Prediction,
    load_instances,
    load_predictions,
    select,
)
from agentrm.evals.swebench.report import (
    NO_PREDICTION,
    InstanceResult,
    model_dir_name,
    read_result,
    summary,
    write_atomic,
    write_instance,
)
from agentrm.evals.swebench.repos import RepoSource
from agentrm.evals.swebench.specs import SpecTable, load_specs
from agentrm.hashing import stable_hash
from agentrm.verifiers.tests_verifier import EMPTY, ERROR, TIMEOUT, TestRun, TestSpec, run_tests

log = logging.getLogger("agentrm.evals.swebench")
RETRY = (ERROR, TIMEOUT)  # environment failures are never reused: a resume tries them again


def default_workers() -> int:
    return max(1, int(0.75 * (os.cpu_count() or 1)))


@dataclass
class EvalConfig:
    """Everything that shapes a run; stored with the run (run.json and the trace store)."""

    dataset: str = "bundled"
    predictions: str = "gold"  # FILE | gold | empty (ignored in agent mode)
    instance_ids: list[str] | None = None
    max_workers: int = field(default_factory=default_workers)
    timeout: float | None = None  # per test run; None = the spec's
    run_id: str | None = None
    run_dir: str = "runs"
    repos: str = "bundled"  # mirror directory | git URL template | bundled
    specs: str | None = None  # extra YAML spec table
    db: str | None = None
    redo: bool = False  # ignore stored results
    agent: bool = False
    policy: str | None = None
    max_turns: int = 20
    agent_timeout: float = 1800.0
    group_size: int = 1  # agent mode: rollouts per instance, one group (member 0 is the report's)
    executor: str = "local"  # local threads | ray (one Ray task per instance)
    ray_address: str | None = None


@dataclass
class EvalRun:
    run_id: str
    model: str
    summary: dict[str, Any]
    results: list[InstanceResult]
    summary_path: Path


def test_spec(instance: Instance, table: SpecTable, image: str, timeout: float | None) -> TestSpec:
    env = table.lookup(instance.repo, instance.version) if not instance.eval_script else None
    return TestSpec(
        image=image, fail_to_pass=instance.fail_to_pass, pass_to_pass=instance.pass_to_pass,
        test_patch=instance.test_patch, base_commit=instance.base_commit or "HEAD",
        test_cmd=env.test_cmd if env else "", log_parser=instance.log_parser or (env.log_parser if env else "pytest"),
        eval_script=instance.eval_script, workdir=images.WORKDIR,
        protected=list(env.protected) if env else TestSpec.__dataclass_fields__["protected"].default_factory(),
        timeout=float(timeout or (env.timeout if env else 1800.0)))


def resume_key(instance_id: str, patch: str | None, spec: TestSpec) -> str:
    patch_hash = hashlib.sha256((patch or "").encode()).hexdigest()
    return stable_hash({"instance": instance_id, "patch": patch_hash, "spec": spec.hash()})


class Harness:
    def __init__(self, config: EvalConfig, on_progress: Callable[[InstanceResult], None] | None = None):
        self.cfg = config
        self.on_progress = on_progress
        self.table = load_specs(config.specs)
        self.repos = RepoSource(config.repos)
        self.store = None
        self._store_lock = threading.Lock()
        self.policy = None

    # -- preparation ---------------------------------------------------------------------
    def prepare(self) -> tuple[list[Instance], dict[str, Prediction], str]:
        """Read and check every input before anything runs (one-line errors, nothing written)."""
        everything = load_instances(self.cfg.dataset)
        chosen = select(everything, self.cfg.instance_ids)
        if self.cfg.agent:
            model = self.cfg.policy or "transformers:smollm2"
            preds: dict[str, Prediction] = {}
        else:
            preds = load_predictions(self.cfg.predictions, everything)
            model = next(iter(preds.values())).model_name_or_path if preds else self.cfg.predictions
        return chosen, preds, model

    def run(self) -> EvalRun:
        instances, preds, model = self.prepare()
        images.check_docker()
        run_id = self.cfg.run_id or "swe-" + datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        root = Path(self.cfg.run_dir) / run_id
        write_atomic(root / "run.json", _json({"run_id": run_id, "model": model, "config": asdict(self.cfg)}))
        if self.cfg.db:
            from agentrm.traces import open_store

            self.store = open_store(self.cfg.db)
            self.store.begin_run({"kind": "swe-bench", **asdict(self.cfg)}, run_id=run_id, kind="eval")
        if self.cfg.agent:
            from agentrm.rollout.policies import make_policy

            self.policy = make_policy(self.cfg.policy)
        results = self._run_all(instances, preds, model, run_id, root / model_dir_name(model))
        report = summary(run_id, model, len(instances), results)
        path = root / f"{model_dir_name(model)}.{run_id}.json"
        write_atomic(path, _json(report))
        if self.store is not None:
            self.store.end_run(run_id, "finished")
        return EvalRun(run_id, model, report, results, path)

    def _run_all(self, instances, preds, model, run_id, out_dir) -> list[InstanceResult]:
        if self.cfg.executor == "ray":
            return self._run_on_ray(instances, model, run_id)
        results: list[InstanceResult] = []
        workers = max(1, min(self.cfg.max_workers, len(instances)))
        pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="swe")
        try:
            futures = {pool.submit(self._one, inst, preds.get(inst.instance_id), model, run_id,
                                   out_dir / inst.instance_id): inst for inst in instances}
            for future in as_completed(futures):
                result = future.result()
                results.append(result)
                if self.on_progress:
                    self.on_progress(result)
        except BaseException:
            # Ctrl-C: start nothing new; running instances finish or are reaped with their
            # sandboxes, and finished ones are on disk for a resume with the same --run-id
            pool.shutdown(wait=False, cancel_futures=True)
            if self.store is not None:
                self.store.end_run(run_id, "interrupted")
            raise
        pool.shutdown(wait=True)
        return sorted(results, key=lambda r: r.instance_id)

    def _run_on_ray(self, instances, model, run_id) -> list[InstanceResult]:
        """One Ray task per instance, on the worker's own Docker engine. Per-instance files go
        to the worker's --run-dir (a shared directory on a multi-host cluster); the summary and
        the store rows are the same as a local run's."""
        from agentrm.executors import RayExecutor, portable

        config = {k: portable(v) for k, v in asdict(self.cfg).items()}
        config.update(executor="local", instance_ids=None,
                      run_dir=os.path.abspath(self.cfg.run_dir))
        payloads = [{"config": config, "instance_id": inst.instance_id, "run_id": run_id}
                    for inst in instances]

        def finished(i: int, value: Any) -> None:
            if self.on_progress:
                self.on_progress(_as_result(instances[i].instance_id, model, value))

        values = RayExecutor(self.cfg.ray_address).map(
            "agentrm.evals.swebench.harness:instance_unit", payloads, on_result=finished)
        results = [_as_result(inst.instance_id, model, v) for inst, v in zip(instances, values, strict=True)]
        return sorted(results, key=lambda r: r.instance_id)

    # -- one instance --------------------------------------------------------------------
    def _one(self, inst: Instance, pred: Prediction | None, model: str, run_id: str,
             directory: Path) -> InstanceResult:
        started = time.monotonic()
        try:
            return self._evaluate(inst, pred, model, run_id, directory, started)
        except Exception as exc:  # noqa: BLE001 - one instance's failure never stops the run
            log.exception("instance %s failed", inst.instance_id)
            result = InstanceResult(inst.instance_id, ERROR, model, error=_one_line(exc),
                                    duration_s=round(time.monotonic() - started, 2))
            try:
                return self._finish(inst, directory, run_id, result, pred.model_patch if pred else None)
            except Exception:  # noqa: BLE001 - the result is still reported
                log.exception("could not record the failure of %s", inst.instance_id)
                return result

    def _finish(self, inst, directory, run_id, result: InstanceResult, patch: str | None,
                spec: TestSpec | None = None, run: TestRun | None = None) -> InstanceResult:
        """Write the instance's files and its store rows; return the result."""
        write_instance(directory, result, patch, run if run and run.status != EMPTY else None,
                       run.script if run else None)
        self._record(inst, result, patch, spec, run, run_id)
        return result

    def _evaluate(self, inst, pred, model, run_id, directory, started) -> InstanceResult:
        def elapsed() -> float:
            return round(time.monotonic() - started, 2)

        if pred is None and not self.cfg.agent:
            return InstanceResult(inst.instance_id, NO_PREDICTION, model)
        if pred is not None and not (pred.model_patch or "").strip():  # counted, not run
            return self._finish(inst, directory, run_id, InstanceResult(inst.instance_id, EMPTY, model),
                                pred.model_patch)
        try:
            image = self._image(inst)
            spec = test_spec(inst, self.table, image, self.cfg.timeout)
        except (KeyError, FileNotFoundError, RuntimeError, AgentrmError) as exc:
            result = InstanceResult(inst.instance_id, ERROR, model, error=_expected(exc),
                                    duration_s=elapsed())
            return self._finish(inst, directory, run_id, result, pred.model_patch if pred else None)
        if self.cfg.agent:
            previous = None if self.cfg.redo else read_result(directory)
            if (previous is not None and previous.trajectory_id and previous.image == image
                    and previous.status not in RETRY):  # a finished attempt of this run
                previous.reused = True
                return previous
            from agentrm.evals.swebench.agent import solve

            first, *others = solve(inst, image, self.policy, self.store, run_id, self.cfg)
            for k, other in enumerate(others, 1):  # the group's other members: graded and stored
                self._grade(inst, other, model, run_id, directory / "group" / str(k), spec, image, elapsed)
            return self._grade(inst, first, model, run_id, directory, spec, image, elapsed)
        patch = pred.model_patch
        key = resume_key(inst.instance_id, patch, spec)
        previous = None if self.cfg.redo else read_result(directory)
        if previous is not None and previous.key == key and previous.status not in RETRY:
            previous.reused = True
            return previous
        run = run_tests(spec, patch)
        result = InstanceResult(inst.instance_id, run.status, model, key=key, error=run.error,
                                duration_s=elapsed(), image=image, run=run.details())
        return self._finish(inst, directory, run_id, result, patch, spec, run)

    def _grade(self, inst, attempt, model, run_id, directory, spec, image, elapsed) -> InstanceResult:
        """One agent rollout's patch through the test verifier (an unknown rollout is an error)."""
        if attempt.infra:
            result = InstanceResult(inst.instance_id, ERROR, model, error=attempt.infra, image=image,
                                    trajectory_id=attempt.trajectory_id, duration_s=elapsed())
            return self._finish(inst, directory, run_id, result, attempt.patch, spec)
        run = run_tests(spec, attempt.patch)
        result = InstanceResult(inst.instance_id, run.status, model,
                                key=resume_key(inst.instance_id, attempt.patch, spec), error=run.error,
                                duration_s=elapsed(), image=image, trajectory_id=attempt.trajectory_id,
                                run=run.details())
        return self._finish(inst, directory, run_id, result, attempt.patch, spec, run)

    def _image(self, inst: Instance) -> str:
        env = None if inst.image else self.table.lookup(inst.repo, inst.version)
        return images.instance_image(inst, env, self.repos)

    def _record(self, inst, result, patch, spec, run: TestRun | None, run_id) -> None:
        if self.store is None:
            return
        with self._store_lock:
            record.record(self.store, run_id, inst, result, patch, spec, run)


def instance_unit(config: dict[str, Any], instance_id: str, run_id: str) -> dict[str, Any]:
    """Evaluate one instance where this unit runs (a Ray worker): same steps as a local run."""
    harness = Harness(EvalConfig(**{**config, "instance_ids": [instance_id]}))
    instances, preds, model = harness.prepare()
    if harness.cfg.db:
        from agentrm.traces import open_store

        harness.store = open_store(harness.cfg.db)
    if harness.cfg.agent:
        from agentrm.rollout.policies import make_policy

        harness.policy = make_policy(harness.cfg.policy)
    directory = Path(harness.cfg.run_dir) / run_id / model_dir_name(model) / instance_id
    return harness._one(instances[0], preds.get(instance_id), model, run_id, directory).to_dict()


def _as_result(instance_id: str, model: str, value: Any) -> InstanceResult:
    from agentrm.executors import WorkFailure

    if isinstance(value, WorkFailure):  # the worker was lost: infrastructure, never "unresolved"
        return InstanceResult(instance_id, ERROR, model, error=f"worker lost: {value.error}"[:300])
    return InstanceResult(**value)


def _expected(exc: BaseException) -> str:
    """The message of an anticipated per-instance failure (missing repo, spec, image)."""
    text = str(exc.args[0] if isinstance(exc, KeyError) and exc.args else exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:300]


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"[:300]


def _json(obj: Any) -> str:
    import json

    return json.dumps(obj, indent=2, default=str) + "\n"


def evaluate(config: EvalConfig, on_progress: Callable[[InstanceResult], None] | None = None) -> EvalRun:
    return Harness(config, on_progress).run()
