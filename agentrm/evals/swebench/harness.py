"""`agentrm eval swe-bench`: evaluate predictions (or an agent) on SWE-bench instances.

Stages per (model, instance): image and test spec (resolve.py: official/pre-built or built
offline) → (agent mode: roll out the policy and take `git diff`) → test verifier in a fresh
container → report files → trace store. Work runs in a bounded thread pool (default ≤ 0.75 ×
cores). A result is reused only when its resume key matches: the same instance, patch hash and
spec hash, so re-running a run id with a new patch re-evaluates it. After the run, images are
kept or removed per --cache-level / --clean, and each model's summary names what is left over.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from agentrm.evals.swebench import images, record, retention
from agentrm.evals.swebench.dataset import (
    Instance,
    Prediction,
    load_instances,
    load_predictions_by_model,
    select,
)
from agentrm.evals.swebench.instance import InstanceRunner
from agentrm.evals.swebench.official import NONE, PULL_POLICIES
from agentrm.evals.swebench.report import InstanceResult, model_dir_name, summary, write_atomic
from agentrm.evals.swebench.repos import RepoSource
from agentrm.evals.swebench.resolve import AGENTRM_LAYOUT, ImageOptions
from agentrm.evals.swebench.resolve import test_spec as _test_spec
from agentrm.evals.swebench.specs import SpecTable, load_specs
from agentrm.hashing import stable_hash
from agentrm.verifiers.tests_verifier import TestSpec

log = logging.getLogger("agentrm.evals.swebench")


def default_workers() -> int:
    return max(1, int(0.75 * (os.cpu_count() or 1)))


@dataclass
class EvalConfig:
    """Everything that shapes a run; stored with the run (run.json and the trace store)."""

    dataset: str = "bundled"  # FILE | saved-dataset DIR | hub NAME | bundled
    split: str = "test"
    predictions: str | None = "gold"  # FILE | gold | empty (None in agent mode)
    instance_ids: list[str] | None = None
    max_workers: int = field(default_factory=default_workers)
    timeout: float | None = None  # per test run; None = the spec's
    run_id: str | None = None
    run_dir: str = "runs"
    report_dir: str | None = None  # where <model>.<run_id>.json go (default: the run directory)
    repos: str = "bundled"  # mirror directory | git URL template | bundled
    specs: str | None = None  # extra YAML spec table
    namespace: str = NONE  # none: agentrm builds images | local | a registry namespace
    instance_image_tag: str = "latest"
    pull: str = "missing"  # never | missing | always (pre-built images only)
    cache_level: str = "env"  # none | base | env | instance: images kept after the run
    clean: bool = False  # also remove images above the cache level that predate the run
    force_rebuild: bool = False
    db: str | None = None
    redo: bool = False  # ignore stored results
    agent: bool = False
    policy: str | None = None
    max_turns: int = 20
    agent_timeout: float = 1800.0
    group_size: int = 1  # agent mode: rollouts per instance, one group (member 0 is the report's)
    warm_pool: int = 0  # agent mode: instance sandboxes kept started ahead of the agent
    executor: str = "local"  # local threads | ray (one Ray task per instance)
    ray_address: str | None = None


@dataclass
class EvalRun:
    run_id: str
    model: str  # the first model; every model's summary is in `summaries`
    summary: dict[str, Any]
    results: list[InstanceResult]
    summary_path: Path
    summaries: dict[str, tuple[dict[str, Any], Path]] = field(default_factory=dict)
    all_results: list[InstanceResult] = field(default_factory=list)  # every model's


def test_spec(instance: Instance, table: SpecTable, image: str, timeout: float | None) -> TestSpec:
    """The test spec of an agentrm-built image (repository in /workspace)."""
    env = table.lookup(instance.repo, instance.version) if not instance.eval_script else None
    return _test_spec(instance, env, image, AGENTRM_LAYOUT, timeout)


def resume_key(instance_id: str, patch: str | None, spec: TestSpec) -> str:
    patch_hash = hashlib.sha256((patch or "").encode()).hexdigest()
    return stable_hash({"instance": instance_id, "patch": patch_hash, "spec": spec.hash()})


class Harness:
    """`policy` and `store`, when given, are used instead of making them from the config: a
    training loop rolls out the very policy it updates and writes to its own store."""

    def __init__(self, config: EvalConfig, on_progress: Callable[[InstanceResult], None] | None = None,
                 *, policy: Any = None, store: Any = None):
        from agentrm.errors import InputError

        self.cfg = config
        if config.pull not in PULL_POLICIES:
            raise InputError(f"unknown pull policy {config.pull!r} (--pull): choose "
                             f"{', '.join(PULL_POLICIES)}")
        retention.check_level(config.cache_level)
        self.on_progress = on_progress
        self.table = load_specs(config.specs)
        self.repos = RepoSource(config.repos)
        self.store = store
        self.policy = policy
        self.sandbox_factory: Any = None  # agent mode: a warm pool, when asked for
        self.tracker = retention.Tracker()
        self.builds: images.BuildLog | None = None

    # -- preparation ---------------------------------------------------------------------
    def prepare(self) -> tuple[list[Instance], dict[str, dict[str, Prediction]]]:
        """Read and check every input before anything runs (one-line errors, nothing written).
        Returns the chosen instances and model → instance id → prediction."""
        everything = load_instances(self.cfg.dataset, self.cfg.split)
        chosen = select(everything, self.cfg.instance_ids)
        if self.cfg.agent:
            return chosen, {self.cfg.policy or "transformers:smollm2": {}}
        return chosen, load_predictions_by_model(self.cfg.predictions or "gold", everything)

    def image_options(self) -> ImageOptions:
        return ImageOptions(self.cfg.namespace, self.cfg.instance_image_tag, self.cfg.pull)

    def run(self) -> EvalRun:
        instances, by_model = self.prepare()
        images.check_docker()
        run_id = self.cfg.run_id or "swe-" + datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        root = Path(self.cfg.run_dir) / run_id
        config = asdict(self.cfg)
        if self.cfg.agent:
            config["predictions"] = None  # the agent makes the patches
        models = list(by_model)
        write_atomic(root / "run.json", _json({"run_id": run_id, "models": models,
                                               "model": models[0], "config": config}))
        self.tracker = retention.Tracker.start(
            self.cfg.cache_level, self.cfg.clean,
            {i.instance_id: len(models) for i in instances})
        self.builds = images.BuildLog(root / "image_builds", self.cfg.force_rebuild)
        if self.store is None and self.cfg.db:
            from agentrm.traces import open_store

            self.store = open_store(self.cfg.db)
        if self.store is not None:
            self.store.begin_run({"kind": "swe-bench", **config}, run_id=run_id, kind="eval")
        if self.cfg.agent:
            self._start_agent(run_id)
        from agentrm.rollout.run import run_lease

        try:
            with run_lease(self.store, run_id, wait=False):  # one live harness per run id
                results = self._run_all(instances, by_model, run_id, root)
        finally:
            if self.sandbox_factory is not None:
                self.sandbox_factory.close()
        self.tracker.apply(self.cfg.cache_level, self.cfg.clean)
        leftovers = self.tracker.leftovers(run_id, {r.image for r in results if r.image})
        summaries = {}
        report_dir = Path(self.cfg.report_dir) if self.cfg.report_dir else root
        for model in models:
            mine = [r for r in results if r.model == model]
            report = {**summary(run_id, model, len(instances), mine), **leftovers}
            path = report_dir / f"{model_dir_name(model)}.{run_id}.json"
            write_atomic(path, _json(report))
            summaries[model] = (report, path)
        if self.store is not None:
            self.store.end_run(run_id, "finished")
        first, (report, path) = models[0], summaries[models[0]]
        return EvalRun(run_id, first, report, [r for r in results if r.model == first], path,
                       summaries, results)

    def _start_agent(self, run_id: str) -> None:
        from agentrm.rollout.policies import make_policy

        if self.policy is None:
            self.policy = make_policy(self.cfg.policy)
        if self.cfg.warm_pool > 0:
            from agentrm.evals.swebench.warm_pool import WarmPool

            self.sandbox_factory = WarmPool(size=self.cfg.warm_pool)

    def _run_all(self, instances, by_model, run_id, root) -> list[InstanceResult]:
        if self.cfg.executor == "ray":
            return self._run_on_ray(instances, by_model, run_id)
        runner = InstanceRunner(self, run_id)
        jobs = [(inst, preds.get(inst.instance_id), model, root / model_dir_name(model) / inst.instance_id)
                for model, preds in by_model.items() for inst in instances]
        results: list[InstanceResult] = []
        pool = ThreadPoolExecutor(max_workers=max(1, min(self.cfg.max_workers, len(jobs))),
                                  thread_name_prefix="swe")
        try:
            if self.sandbox_factory is not None:
                runner.prewarm([job[0] for job in jobs])
            futures = [pool.submit(runner.one, *job) for job in jobs]
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
        return sorted(results, key=lambda r: (r.model, r.instance_id))

    def _run_on_ray(self, instances, by_model, run_id) -> list[InstanceResult]:
        """One Ray task per (model, instance), on the worker's own Docker engine. Per-instance
        files go to the worker's --run-dir (a shared directory on a multi-host cluster); the
        summaries and the store rows are the same as a local run's."""
        from agentrm.executors import RayExecutor, portable

        config = {k: portable(v) for k, v in asdict(self.cfg).items()}
        config.update(executor="local", instance_ids=None, run_dir=os.path.abspath(self.cfg.run_dir))
        jobs = [(model, inst) for model in by_model for inst in instances]
        payloads = [{"config": config, "instance_id": inst.instance_id, "run_id": run_id,
                     "model": model} for model, inst in jobs]

        def finished(i: int, value: Any) -> None:
            if self.on_progress:
                self.on_progress(_as_result(jobs[i][1].instance_id, jobs[i][0], value))

        values = RayExecutor(self.cfg.ray_address).map(
            "agentrm.evals.swebench.harness:instance_unit", payloads, on_result=finished)
        results = [_as_result(inst.instance_id, model, v) for (model, inst), v in zip(jobs, values, strict=True)]
        return sorted(results, key=lambda r: (r.model, r.instance_id))

    def record(self, inst, result, patch, spec, run, run_id) -> None:
        if self.store is None:
            return
        with _store_lock:
            record.record(self.store, run_id, inst, result, patch, spec, run)


_store_lock = threading.Lock()


def instance_unit(config: dict[str, Any], instance_id: str, run_id: str,
                  model: str | None = None) -> dict[str, Any]:
    """Evaluate one (model, instance) where this unit runs (a Ray worker): same steps as a
    local run."""
    harness = Harness(EvalConfig(**{**config, "instance_ids": [instance_id]}))
    instances, by_model = harness.prepare()
    model = model or next(iter(by_model))
    if harness.cfg.db:
        from agentrm.traces import open_store

        harness.store = open_store(harness.cfg.db)
    if harness.cfg.agent:
        from agentrm.rollout.policies import make_policy

        harness.policy = make_policy(harness.cfg.policy)
    directory = Path(harness.cfg.run_dir) / run_id / model_dir_name(model) / instance_id
    runner = InstanceRunner(harness, run_id)
    return runner.one(instances[0], by_model[model].get(instance_id), model, directory).to_dict()


def _as_result(instance_id: str, model: str, value: Any) -> InstanceResult:
    from agentrm.executors import WorkFailure
    from agentrm.verifiers.tests_verifier import ERROR

    if isinstance(value, WorkFailure):  # the worker was lost: infrastructure, never "unresolved"
        return InstanceResult(instance_id, ERROR, model, error=f"worker lost: {value.error}"[:300])
    return InstanceResult(**value)


def _json(obj: Any) -> str:
    import json

    return json.dumps(obj, indent=2, default=str) + "\n"


def evaluate(config: EvalConfig, on_progress: Callable[[InstanceResult], None] | None = None, *,
             policy: Any = None, store: Any = None) -> EvalRun:
    return Harness(config, on_progress, policy=policy, store=store).run()
