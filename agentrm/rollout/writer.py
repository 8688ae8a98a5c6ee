"""Turn writes off the loop's critical path.

A SQLite commit costs milliseconds, more than a persistent-shell command; the loop hands each
completed turn to a background thread that writes it at once, in order, while the graph routes
to the next step. The loop flushes before every model call, so a turn is committed before the
next action starts (a process killed at any point keeps every completed turn), and again before
the trajectory is closed, so a closed trajectory always has all its turns.
"""

from __future__ import annotations

import queue
import threading
from typing import Any

from agentrm.types import Turn

_STOP = object()


class TurnWriter:
    def __init__(self, store: Any):
        self.store = store
        self.error: BaseException | None = None
        self._queue: queue.Queue = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="turn-writer", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            try:
                if item is _STOP:
                    return
                if self.error is None:  # after a failure, later turns would leave a gap
                    self.store.append_turn(*item)
            except BaseException as exc:  # noqa: BLE001 - surfaced by flush()
                self.error = exc
            finally:
                self._queue.task_done()

    def append_turn(self, trajectory_id: str, turn: Turn) -> None:
        if self.error is not None:
            raise self.error
        self._queue.put((trajectory_id, turn))

    def flush(self) -> None:
        """Wait until every queued turn is written; raise the first write error."""
        self._queue.join()
        if self.error is not None:
            raise self.error

    def close(self) -> None:
        self._queue.put(_STOP)
        self._thread.join(timeout=60)
