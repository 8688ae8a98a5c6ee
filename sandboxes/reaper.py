"""Leaving nothing behind: live sandboxes are tracked and removed on normal exit, on exceptions
(context managers), on Ctrl-C (KeyboardInterrupt unwinds them) and on SIGTERM/SIGHUP (turned
into SystemExit so the same unwinding and atexit run). Not __del__: it may never run.
Leftovers from a killed process are found by label: `agentrm sandbox cleanup`."""

from __future__ import annotations

import atexit
import logging
import os
import signal
import socket
import threading

from docker.errors import APIError, NotFound

from agentrm.sandboxes.engine import LABEL, LABEL_PID, LABEL_RUN, client

log = logging.getLogger("agentrm.sandboxes")

_live: dict[str, object] = {}
_lock = threading.Lock()
_installed = False
_stopping = threading.Event()
HOST = socket.gethostname()


def register(sandbox) -> None:
    _install_handlers()
    with _lock:
        if _stopping.is_set():  # a worker thread starting a box after SIGTERM: not this one
            stopping = True
        else:
            stopping = False
            _live[sandbox.id] = sandbox
    if stopping:
        from agentrm.errors import SandboxGone

        remove_container(sandbox.id)
        raise SandboxGone("agentrm is stopping (signal): no new sandboxes")


def unregister(sandbox) -> None:
    with _lock:
        _live.pop(sandbox.id, None)


def close_all() -> None:
    """Close every sandbox this process still has (atexit and signal path)."""
    with _lock:
        boxes = list(_live.values())
    for box in boxes:
        try:
            box.close()
        except Exception:  # noqa: BLE001 - best effort at exit
            log.exception("closing sandbox %s at exit", getattr(box, "id", "?"))


def _on_signal(signum, frame):  # noqa: ARG001
    """Remove every sandbox now, whichever thread made it, then unwind the main thread. Worker
    threads' commands then fail fast (SandboxGone) instead of holding the interpreter's exit,
    which waits for them before atexit would run."""
    _stopping.set()
    close_all()
    raise SystemExit(128 + signum)


def _install_handlers() -> None:
    """atexit always; the signal handlers from the main thread only (Python's rule), which is
    why this also runs when the package is imported, not just at the first sandbox."""
    global _installed
    with _lock:
        if not _installed:
            _installed = True
            atexit.register(close_all)
    if threading.current_thread() is not threading.main_thread():
        return
    for sig in (signal.SIGTERM, signal.SIGHUP):
        try:
            if signal.getsignal(sig) in (signal.SIG_DFL, None):
                signal.signal(sig, _on_signal)
        except (ValueError, OSError):
            pass


def owner_labels(run_id: str | None) -> dict[str, str]:
    return {LABEL: "1", LABEL_RUN: run_id or "", LABEL_PID: f"{HOST}:{os.getpid()}"}


def _owner_alive(owner: str) -> bool:
    host, _, pid = owner.partition(":")
    if host != HOST or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_container(container_id: str) -> None:
    """Force-remove a container and its anonymous volumes; already gone is fine."""
    try:
        client().api.remove_container(container_id, force=True, v=True)
    except NotFound:
        pass
    except APIError as exc:
        if exc.status_code not in (404, 409):  # 409: removal already in progress
            raise


def cleanup(run_id: str | None = None, force: bool = False) -> list[str]:
    """Remove agentrm containers (of `run_id`, or all) whose owning process is gone; with
    force, also those of live processes. Returns the removed container names."""
    filters = {"label": [LABEL] + ([f"{LABEL_RUN}={run_id}"] if run_id else [])}
    removed = []
    for c in client().containers.list(all=True, filters=filters):
        owner = c.labels.get(LABEL_PID, "")
        if not force and _owner_alive(owner):
            continue
        remove_container(c.id)
        removed.append(c.name)
    return removed


_install_handlers()  # importing from the main thread is enough to be covered
