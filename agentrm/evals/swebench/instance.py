"""One (model, instance) of a SWE-bench run: resolve its image and spec, get the patch (the
prediction, or the agent's rollouts), grade it in a fresh container, write its files and store
rows. One instance's failure never stops the run; an environment failure is an `error`
(infrastructure, reward None), never a 0.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Any

from agentrm.errors import AgentrmError
from agentrm.evals.swebench.dataset import Instance, Prediction
from agentrm.evals.swebench.report import NO_PREDICTION, InstanceResult, read_result, write_instance
from agentrm.evals.swebench.resolve import Resolved, resolve
from agentrm.verifiers.tests_verifier import EMPTY, ERROR, TIMEOUT, TestRun, TestSpec, run_tests

log = logging.getLogger("agentrm.evals.swebench")
RETRY = (ERROR, TIMEOUT)  # environment failures are never reused: a resume tries them again
PREWARM_WAIT_S = 180.0  # at most this long for the warm pool to be told (see _wait_told)


class InstanceRunner:
    def __init__(self, harness: Any, run_id: str):
        self.h = harness
        self.cfg = harness.cfg
        self.run_id = run_id
        self._told: dict[str, threading.Event] = {}  # agent mode: the warm pool knows it is coming

    def one(self, inst: Instance, pred: Prediction | None, model: str, directory: Path
            ) -> InstanceResult:
        result = self._one(inst, pred, model, directory)
        try:
            self.h.tracker.finished(inst.instance_id, result.image)
        except Exception:  # noqa: BLE001 - retention never fails an instance
            log.warning("could not release the image of %s", inst.instance_id, exc_info=True)
        return result

    def _one(self, inst: Instance, pred: Prediction | None, model: str, directory: Path
             ) -> InstanceResult:
        started = time.monotonic()
        try:
            return self._evaluate(inst, pred, model, directory, started)
        except Exception as exc:  # noqa: BLE001 - one instance's failure never stops the run
            log.exception("instance %s failed", inst.instance_id)
            result = InstanceResult(inst.instance_id, ERROR, model, error=_one_line(exc),
                                    duration_s=round(time.monotonic() - started, 2))
            try:
                return self._finish(inst, directory, result, pred.model_patch if pred else None)
            except Exception:  # noqa: BLE001 - the result is still reported
                log.exception("could not record the failure of %s", inst.instance_id)
                return result

    def resolve(self, inst: Instance) -> Resolved:
        resolved = resolve(inst, self.h.table, self.h.repos, self.h.image_options(),
                           self.cfg.timeout, self.h.builds)
        self.h.tracker.add(resolved.image)
        if self.h.builds is not None:
            self.h.tracker.add(*self.h.builds.built)
        return resolved

    def agent_image(self, resolved: Resolved) -> Any:
        """Where the agent works in this instance's image (an agent layer for official
        layouts, tracked for retention like the instance image)."""
        from agentrm.evals.swebench.agent import agent_image

        agent = agent_image(resolved.image, resolved.layout, self.h.builds)
        if agent.image != resolved.image:
            self.h.tracker.add(agent.image)
        return agent

    def prewarm(self, instances: list[Instance]) -> None:
        """Agent mode with a warm pool: tell the pool, in the order they will run, which
        instance sandboxes are coming (images resolved in the background)."""
        from agentrm.evals.swebench.warm_pool import agent_sandbox_config

        told = self._told = {inst.instance_id: threading.Event() for inst in instances}

        def ahead() -> None:
            for inst in instances:
                try:
                    agent = self.agent_image(self.resolve(inst))
                    config = agent_sandbox_config(agent, self.cfg, self.run_id)
                    for _ in range(max(1, self.cfg.group_size)):
                        self.h.sandbox_factory.expect(config)
                except Exception:  # noqa: BLE001 - the instance itself reports it
                    pass
                finally:
                    told[inst.instance_id].set()

        threading.Thread(target=ahead, name="swe-prewarm", daemon=True).start()

    def _wait_told(self, instance_id: str) -> None:
        """Before an instance asks the pool for its sandbox, the pool must have been told it
        is coming: on a busy machine the instance could otherwise get there first, miss, and
        start a sandbox of its own beside the one started for it. The wait is bounded: the
        background thread resolves the same image this instance has already resolved."""
        event = self._told.get(instance_id)
        if event is not None:
            event.wait(timeout=PREWARM_WAIT_S)

    def _finish(self, inst, directory, result: InstanceResult, patch: str | None,
                spec: TestSpec | None = None, run: TestRun | None = None) -> InstanceResult:
        """Write the instance's files and its store rows; return the result."""
        write_instance(directory, result, patch, run if run and run.status != EMPTY else None,
                       run.script if run else None)
        self.h.record(inst, result, patch, spec, run, self.run_id)
        return result

    def _evaluate(self, inst, pred, model, directory, started) -> InstanceResult:
        def elapsed() -> float:
            return round(time.monotonic() - started, 2)

        if pred is None and not self.cfg.agent:
            return InstanceResult(inst.instance_id, NO_PREDICTION, model)
        if pred is not None and not (pred.model_patch or "").strip():  # counted, not run
            return self._finish(inst, directory, InstanceResult(inst.instance_id, EMPTY, model),
                                pred.model_patch)
        try:
            resolved = self.resolve(inst)
        except (KeyError, FileNotFoundError, RuntimeError, AgentrmError) as exc:
            result = InstanceResult(inst.instance_id, ERROR, model, error=_expected(exc),
                                    duration_s=elapsed())
            return self._finish(inst, directory, result, pred.model_patch if pred else None)
        image, spec = resolved.image, resolved.spec
        if self.cfg.agent:
            return self._agent(inst, model, directory, spec, resolved, elapsed)
        from agentrm.evals.swebench.harness import resume_key

        assert pred is not None  # no prediction outside agent mode returned above
        patch = pred.model_patch
        key = resume_key(inst.instance_id, patch, spec)
        previous = None if self.cfg.redo else read_result(directory)
        if previous is not None and previous.key == key and previous.status not in RETRY:
            previous.reused = True
            return previous
        run = run_tests(spec, patch)
        result = InstanceResult(inst.instance_id, run.status, model, key=key, error=run.error,
                                duration_s=elapsed(), image=image, run=run.details())
        return self._finish(inst, directory, result, patch, spec, run)

    def _agent(self, inst, model, directory, spec, resolved, elapsed) -> InstanceResult:
        image = resolved.image
        previous = None if self.cfg.redo else read_result(directory)
        if (previous is not None and previous.trajectory_id and previous.image == image
                and previous.status not in RETRY  # a finished attempt of this run ...
                and self._stored(previous.trajectory_id)):  # ... whose rollout the store holds
            previous.reused = True
            return previous
        from agentrm.evals.swebench.agent import solve

        self._wait_told(inst.instance_id)
        first, *others = solve(inst, self.agent_image(resolved), self.h.policy, self.h.store, self.run_id, self.cfg,
                               sandbox_factory=self.h.sandbox_factory)
        for k, other in enumerate(others, 1):  # the group's other members: graded and stored
            self._grade(inst, other, model, directory / "group" / str(k), spec, image, elapsed)
        return self._grade(inst, first, model, directory, spec, image, elapsed)

    def _stored(self, trajectory_id: str) -> bool:
        """Whether the store (when there is one) holds the rollout: with a new database, an
        attempt on disk from an earlier run is run again, so scoring has trajectories to read."""
        if self.h.store is None:
            return True
        from agentrm.errors import NotFoundError

        try:
            self.h.store.get_trajectory(trajectory_id)
        except NotFoundError:
            return False
        return True

    def _grade(self, inst, attempt, model, directory, spec, image, elapsed) -> InstanceResult:
        """One agent rollout's patch through the test verifier (an unknown rollout is an error)."""
        from agentrm.evals.swebench.harness import resume_key

        if attempt.infra:
            result = InstanceResult(inst.instance_id, ERROR, model, error=attempt.infra, image=image,
                                    trajectory_id=attempt.trajectory_id, duration_s=elapsed())
            return self._finish(inst, directory, result, attempt.patch, spec)
        run = run_tests(spec, attempt.patch)
        result = InstanceResult(inst.instance_id, run.status, model,
                                key=resume_key(inst.instance_id, attempt.patch, spec), error=run.error,
                                duration_s=elapsed(), image=image, trajectory_id=attempt.trajectory_id,
                                run=run.details())
        return self._finish(inst, directory, result, attempt.patch, spec, run)


def _expected(exc: BaseException) -> str:
    """The message of an anticipated per-instance failure (missing repo, spec, image)."""
    text = str(exc.args[0] if isinstance(exc, KeyError) and exc.args else exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:300]


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"[:300]
