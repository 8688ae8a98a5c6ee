"""One live driver per run id. Two processes on one run id would both run every trajectory and
splice turns from two sandboxes into one; the driver holds a lease in the store instead, kept
alive by a heartbeat, and a second driver refuses with one line (or waits, `--wait`).

A holder is `host:pid:nonce`. A lease is taken over when its heartbeat is older than its ttl,
or at once when its holder is a process on this host that no longer exists (a rerun right
after `kill -9` need not wait out the ttl).
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from agentrm.errors import RunBusy

log = logging.getLogger("agentrm.rollout.lease")
TTL_S = 30.0


def holder_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def holder_is_dead(holder: str) -> bool:
    """True only when the holder is a process on this host that is gone (unknown: alive)."""
    host, _, rest = holder.partition(":")
    pid = rest.partition(":")[0]
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # exists, another user's
        return False
    return _zombie(int(pid))


def _zombie(pid: int) -> bool:
    """A killed process stays a zombie until its parent reaps it (a container's init may take
    its time): it answers signals but will never beat again."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:  # no /proc (macOS) or already reaped
        return False
    return stat.rpartition(")")[2].split()[:1] in (["Z"], ["X"])


@contextlib.contextmanager
def hold_run(store: Any, run_id: str, *, wait: bool = False, ttl_s: float = TTL_S,
             lost: threading.Event | None = None, poll_s: float = 1.0) -> Iterator[str]:
    """Hold `run_id`'s lease for the block. Refuses (RunBusy) when another live driver holds
    it, unless `wait`. `lost` is set if the lease is taken over while held (the heartbeat
    stalled past the ttl), so the caller can stop rather than splice."""
    me = holder_name()
    while True:
        current = store.take_lease(run_id, me, ttl_s, holder_is_dead)
        if current is None:
            break
        if not wait:
            age = time.time() - float(current.get("heartbeat_at", time.time()))
            raise RunBusy(f"run {run_id} is being driven by another process ({current.get('holder')}, "
                          f"heartbeat {age:.0f} s ago): wait for it with --wait, or pick another "
                          f"--run-id")
        time.sleep(poll_s)
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(ttl_s / 3):
            try:
                if not store.renew_lease(run_id, me):
                    log.error("run %s: the lease was taken over by another process", run_id)
                    if lost is not None:
                        lost.set()
                    return
            except Exception as exc:  # noqa: BLE001 - a missed beat is retried; the ttl is 3 beats
                log.warning("run %s: lease heartbeat failed: %s", run_id, exc)

    thread = threading.Thread(target=beat, name=f"lease-{run_id}", daemon=True)
    thread.start()
    try:
        yield me
    finally:
        stop.set()
        thread.join(timeout=5)
        try:
            store.release_lease(run_id, me)
        except Exception as exc:  # noqa: BLE001 - a stale lease expires by itself
            log.warning("run %s: could not release the lease: %s", run_id, exc)
