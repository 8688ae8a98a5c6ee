"""Where units of work run: threads on this machine (default) or a Ray cluster.

Work is shipped as a function *name* ("module:function") plus a small JSON-able payload (task
ids, configs, a database URL), never as large objects or closures: a Ray worker on another host
imports the function itself and reads what it needs from the shared trace store. Results come
back in input order. Ray is imported only when the Ray executor is chosen.
"""

from __future__ import annotations

import importlib
import logging
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from typing import Any, Protocol

from agentrm.errors import InputError, PrerequisiteError

log = logging.getLogger("agentrm.executors")

OnResult = Callable[[int, Any], None]


@dataclass
class WorkFailure:
    """A unit that could not finish (worker lost, retries exhausted): infrastructure, not model."""

    index: int
    error: str


def portable(value: Any) -> Any:
    """Make a payload value mean the same on a worker whose working directory differs: relative
    paths that exist here, `sqlite:///relative.db` URLs and `scripted:FILE` specs become absolute."""
    if not isinstance(value, str) or not value:
        return value
    if value.startswith("sqlite:///") and not value.startswith("sqlite:////"):
        path = value[len("sqlite:///"):]
        return "sqlite:///" + os.path.abspath(path) if path and path != ":memory:" else value
    kind, sep, rest = value.partition(":")
    if sep and kind == "scripted" and rest and os.path.exists(rest.split("?")[0]):
        return f"{kind}:{os.path.abspath(rest)}"
    if os.path.exists(value) and not os.path.isabs(value):
        return os.path.abspath(value)
    return value


def resolve(target: str) -> Callable[..., Any]:
    module, _, name = target.partition(":")
    if not module or not name:
        raise InputError(f"work function {target!r} must look like 'package.module:function'")
    return getattr(importlib.import_module(module), name)


class Executor(Protocol):
    name: str

    def map(self, target: str, payloads: Sequence[dict[str, Any]],
            on_result: OnResult | None = None) -> list[Any]:
        """Run `target(**payload)` for each payload; results (or WorkFailure) in input order."""
        ...


class LocalExecutor:
    """Threads: units are I/O-bound (sandboxes, HTTP endpoints) or release the GIL (torch)."""

    name = "local"

    def __init__(self, max_workers: int = 1):
        self.max_workers = max(1, max_workers)

    def map(self, target, payloads, on_result=None):
        fn = resolve(target)
        results: list[Any] = [None] * len(payloads)
        if self.max_workers == 1:
            for i, payload in enumerate(payloads):
                results[i] = _call(fn, i, payload)
                if on_result:
                    on_result(i, results[i])
            return results
        with ThreadPoolExecutor(self.max_workers) as pool:
            futures = {pool.submit(_call, fn, i, p): i for i, p in enumerate(payloads)}
            for future in as_completed(futures):
                i = futures[future]
                results[i] = future.result()
                if on_result:
                    on_result(i, results[i])
        return results


def _call(fn: Callable[..., Any], index: int, payload: dict[str, Any]) -> Any:
    try:
        return fn(**payload)
    except Exception as exc:  # noqa: BLE001 - recorded per unit; the batch goes on
        log.exception("unit %d failed", index)
        return WorkFailure(index, f"{type(exc).__name__}: {exc}")


class RayExecutor:
    """Ray tasks; a task whose worker dies is retried (max_retries) on another worker.

    The functions it runs must be idempotent: they write through the trace store, whose writes
    are keyed (trajectory, turn) and (scorer, config, trajectory, turn), and they restart a
    half-finished unit from its beginning.
    """

    name = "ray"

    def __init__(self, address: str | None = None, max_retries: int = 3, num_cpus: float = 1.0):
        self.ray = connect_ray(address)
        self.max_retries = max_retries
        self.num_cpus = num_cpus

    def map(self, target, payloads, on_result=None):
        ray = self.ray
        remote = ray.remote(max_retries=self.max_retries, num_cpus=self.num_cpus,
                            retry_exceptions=False)(_run_remote)
        refs = [remote.remote(target, p) for p in payloads]
        index_of = {ref: i for i, ref in enumerate(refs)}
        results: list[Any] = [None] * len(refs)
        pending = list(refs)
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            for ref in done:
                i = index_of[ref]
                try:
                    results[i] = ray.get(ref)
                except Exception as exc:  # noqa: BLE001 - worker lost after every retry
                    results[i] = WorkFailure(i, f"{type(exc).__name__}: {str(exc).splitlines()[0]}")
                if on_result:
                    on_result(i, results[i])
        return results


def _run_remote(target: str, payload: dict[str, Any]) -> Any:
    return resolve(target)(**payload)


def connect_ray(address: str | None = None):
    """Connect to a running cluster (address, RAY_ADDRESS) or start a local one."""
    try:
        import ray
    except ImportError as exc:
        raise PrerequisiteError("--executor ray needs Ray: pip install 'agentrm[ray]'") from exc
    if not ray.is_initialized():
        address = address or os.environ.get("RAY_ADDRESS")
        try:
            ray.init(address=address or None, include_dashboard=False,
                     log_to_driver=False, ignore_reinit_error=True)
        except ConnectionError as exc:
            raise PrerequisiteError(f"no Ray cluster at {address}: {exc}") from exc
    return ray


def make_executor(kind: str = "local", *, max_workers: int = 1,
                  ray_address: str | None = None) -> Executor:
    if kind == "local":
        return LocalExecutor(max_workers)
    if kind == "ray":
        return RayExecutor(ray_address)
    raise InputError(f"unknown executor {kind!r} (--executor): choose local or ray")
