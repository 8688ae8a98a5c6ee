"""Forks and a bounded pool. The engine is the bottleneck (EVAL_HARNESS_LESSONS §8), so
parallel sandboxes go through a semaphore and starts are slightly staggered."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any, TypeVar

from agentrm.errors import InputError
from agentrm.sandboxes.config import SandboxConfig
from agentrm.sandboxes.sandbox import DockerSandbox

T = TypeVar("T")


def fork(ref: str, n: int, cfg: SandboxConfig | None = None, max_parallel: int = 4
         ) -> list[DockerSandbox]:
    """Start `n` sandboxes from snapshot `ref` (same limits as `cfg`); all or none."""
    if n < 1:
        raise InputError(f"fork: n must be >= 1, got {n}")
    child_cfg = (cfg or SandboxConfig()).with_(image=ref)
    started: list[DockerSandbox] = []
    lock = threading.Lock()

    def one(_: int) -> None:
        box = DockerSandbox(child_cfg)
        with lock:
            started.append(box)

    try:
        with ThreadPoolExecutor(min(n, max_parallel)) as ex:
            list(ex.map(one, range(n)))
    except BaseException:
        for box in started:
            box.close()
        raise
    return started


class SandboxPool:
    """At most `max_workers` sandboxes alive at once through this pool."""

    def __init__(self, max_workers: int = 2, cfg: SandboxConfig | None = None,
                 stagger_s: float = 0.05):
        if max_workers < 1:
            raise InputError(f"max_workers must be >= 1, got {max_workers}")
        self.max_workers = max_workers
        self.cfg = cfg or SandboxConfig()
        self.stagger_s = stagger_s
        self._slots = threading.BoundedSemaphore(max_workers)
        self._executor = ThreadPoolExecutor(max_workers, thread_name_prefix="sandbox-pool")

    @contextmanager
    def sandbox(self, cfg: SandboxConfig | None = None):
        """Wait for a slot, then yield a fresh sandbox (removed on exit)."""
        with self._slots:
            if self.stagger_s:
                time.sleep(random.uniform(0, self.stagger_s))
            with DockerSandbox(cfg or self.cfg) as box:
                yield box

    def submit(self, fn: Callable[[DockerSandbox], T], cfg: SandboxConfig | None = None
               ) -> Future[T]:
        """Run fn(sandbox) in a fresh sandbox on a pool thread."""
        def job() -> T:
            with self.sandbox(cfg) as box:
                return fn(box)
        return self._executor.submit(job)

    def map(self, fn: Callable[[DockerSandbox, Any], T], items: Iterable[Any],
            cfg: SandboxConfig | None = None) -> list[T]:
        """fn(sandbox, item) for each item, in order; the first exception is raised."""
        futures = [self.submit(lambda box, it=it: fn(box, it), cfg) for it in items]
        return [f.result() for f in futures]

    def close(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> SandboxPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
