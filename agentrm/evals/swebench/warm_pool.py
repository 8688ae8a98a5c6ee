"""A warm pool of instance sandboxes: a sandbox factory for the rollout driver
(`agentrm.rollout.run(..., sandbox_factory=pool)`) whose sandboxes were started before the
agent asked for them.

Starting a DockerSandbox (container, persistent shell, control shell, workspace seeded from the
image or a snapshot) costs more than a bare `docker run`; an agent that waits for it pays that
per rollout. The pool is told what is coming (`expect(config)`, in run order) and keeps up to
`size` of those sandboxes started ahead; a request for a config it holds gets one at once, and
the next expected one starts in the background. A request it did not see coming waits for an
in-flight start of the same config, else starts one itself. Sandboxes are never reused: each is
handed out once, in the pristine state of its image (an instance image or a snapshot ref).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict
from typing import Any

from agentrm.hashing import stable_hash

log = logging.getLogger("agentrm.evals.swebench.warm_pool")


def agent_sandbox_config(image: Any, cfg: Any, run_id: str) -> Any:
    """The config the agent-mode driver asks the factory for (see agent.agent_sandbox_config):
    `image` is an agent.AgentImage (official layouts) or an agentrm instance image's name."""
    from agentrm.evals.swebench.agent import AgentImage
    from agentrm.evals.swebench.agent import agent_sandbox_config as config_of

    return config_of(image if isinstance(image, AgentImage) else AgentImage(image), cfg, run_id)


def config_key(config: Any) -> str:
    return stable_hash(asdict(config))


class WarmPool:
    """SandboxFactory with sandboxes started ahead of demand (see the module docstring)."""

    def __init__(self, size: int = 2, make: Callable[[Any], Any] | None = None,
                 max_idle_s: float = 300.0):
        if size < 1:
            from agentrm.errors import InputError

            raise InputError(f"warm pool size must be >= 1, got {size}")
        self.size = size
        self.max_idle_s = max_idle_s  # a sandbox's wall clock runs while it waits: older ones go
        self._make = make or _docker_sandbox
        self._lock = threading.RLock()  # a start that finishes at once calls back under it
        self._ready: dict[str, deque[Any]] = {}
        self._starting: dict[str, deque[Future]] = {}
        self._upcoming: deque[Any] = deque()
        self._executor = ThreadPoolExecutor(max_workers=size, thread_name_prefix="warm-pool")
        self._closed = False
        self.hits = self.waits = self.misses = 0

    # -- SandboxFactory ------------------------------------------------------------------
    def __call__(self, config: Any) -> Any:
        key = config_key(config)
        stale = []
        with self._lock:
            ready = self._ready.get(key)
            box = None
            while ready and box is None:
                box, since = ready.popleft()
                if time.monotonic() - since > self.max_idle_s:
                    stale.append(box)
                    box = None
            future = None
            if box is None and self._starting.get(key):
                future = self._starting[key].popleft()
            if box is None and future is None:
                self._drop_upcoming(key)
            kind = "hits" if box is not None else "waits" if future is not None else "misses"
            setattr(self, kind, getattr(self, kind) + 1)
        for old in stale:
            _close(old)
        self._fill()
        if box is not None:
            return box
        if future is not None:
            return self._claim(future)
        return self._make(config)

    # -- what is coming ------------------------------------------------------------------
    def expect(self, config: Any) -> None:
        """One more sandbox of `config` will be asked for (in order of calls)."""
        with self._lock:
            if self._closed:
                return
            self._upcoming.append(config)
        self._fill()

    def _fill(self) -> None:
        with self._lock:
            while not self._closed and self._upcoming and self._held() < self.size:
                config = self._upcoming.popleft()
                key = config_key(config)
                future = self._executor.submit(self._make, config)
                self._starting.setdefault(key, deque()).append(future)
                future.add_done_callback(lambda f, k=key: self._started(k, f))

    def _held(self) -> int:
        return sum(len(q) for q in self._ready.values()) + sum(len(q) for q in self._starting.values())

    def _started(self, key: str, future: Future) -> None:
        with self._lock:
            queue = self._starting.get(key)
            if queue is None or future not in queue:
                return  # claimed by a waiting request
            queue.remove(future)
            if future.exception() is not None:
                log.warning("warm pool: a sandbox did not start: %s", future.exception())
                return
            if self._closed:
                _close(future.result())
                return
            self._ready.setdefault(key, deque()).append((future.result(), time.monotonic()))
        self._fill()

    def _claim(self, future: Future) -> Any:
        box = future.result()  # raises what the start raised: the caller's infrastructure error
        return box

    def _drop_upcoming(self, key: str) -> None:
        for i, config in enumerate(self._upcoming):
            if config_key(config) == key:
                del self._upcoming[i]
                return

    # -- lifetime ------------------------------------------------------------------------
    def close(self) -> None:
        """Remove every sandbox not handed out; starts still running are removed when done."""
        with self._lock:
            self._closed = True
            self._upcoming.clear()
            boxes = [b for q in self._ready.values() for b, _ in q]
            self._ready.clear()
        for box in boxes:
            _close(box)
        self._executor.shutdown(wait=True, cancel_futures=True)
        with self._lock:
            leftover = [f for q in self._starting.values() for f in q]
            self._starting.clear()
        for future in leftover:
            if future.done() and future.exception() is None:
                _close(future.result())

    def __enter__(self) -> WarmPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _docker_sandbox(config: Any) -> Any:
    from agentrm.sandboxes import DockerSandbox

    return DockerSandbox(config)


def _close(box: Any) -> None:
    try:
        box.close()
    except Exception:  # noqa: BLE001 - already gone
        log.debug("warm pool: close failed", exc_info=True)
