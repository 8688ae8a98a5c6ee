"""Image retention after a run, as the SWE-bench harness does it, and the leftovers report.

Levels: base < env < instance. `--cache-level L` keeps images up to L; images above it that this
run built or pulled are removed, and with `--clean` also the ones that were already here: an
instance image as soon as every model is done with its instance (disk stays bounded on long
runs), environment images at the end. agentrm's base images are shared with every other sandbox and are never removed here.
The summary then names what is still around: containers of this run or process
(`unstopped_containers`) and the run's instance images (`unremoved_images`).
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field

log = logging.getLogger("agentrm.evals.swebench.retention")

LEVELS = ("none", "base", "env", "instance")


def check_level(level: str) -> str:
    from agentrm.errors import InputError

    if level not in LEVELS:
        raise InputError(f"unknown cache level {level!r} (--cache-level): choose {', '.join(LEVELS)}")
    return level


def image_level(tag: str) -> str:
    if tag.startswith("agentrm/swe-env:"):
        return "env"
    if tag.startswith(("agentrm/swe-inst:", "agentrm/swe-official:", "agentrm/swe-agent:")) \
            or "sweb.eval." in tag:
        return "instance"
    return "base"


@dataclass
class Tracker:
    """Images a run used, and which of them existed before it started."""

    before: set[str] = field(default_factory=set)
    used: set[str] = field(default_factory=set)
    cache_level: str = "instance"
    clean: bool = False
    pending: dict[str, int] = field(default_factory=dict)  # instance id → jobs still to finish
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @classmethod
    def start(cls, cache_level: str = "instance", clean: bool = False,
              pending: dict[str, int] | None = None) -> Tracker:
        return cls(before=_tags(), cache_level=cache_level, clean=clean, pending=dict(pending or {}))

    def add(self, *tags: str) -> None:
        with self._lock:
            self.used.update(t for t in tags if t)

    def _doomed(self, tag: str) -> bool:
        level = image_level(tag)
        return (level != "base" and LEVELS.index(level) > LEVELS.index(self.cache_level)
                and (self.clean or tag not in self.before))

    def finished(self, instance_id: str, image: str | None) -> None:
        """One job of `instance_id` is done; its instance image goes once all of them are."""
        with self._lock:
            left = self.pending.get(instance_id, 1) - 1
            self.pending[instance_id] = left
        if left <= 0 and image and image_level(image) == "instance" and self._doomed(image):
            _remove(image)

    def apply(self, cache_level: str | None = None, clean: bool | None = None) -> list[str]:
        """Remove this run's images above the cache level (and earlier ones too with `clean`);
        instance images first, so environment images have no children left."""
        self.cache_level = cache_level or self.cache_level
        self.clean = self.clean if clean is None else clean
        doomed = [t for t in self.used if self._doomed(t) and t in _tags()]
        removed = []
        for tag in sorted(doomed, key=lambda t: image_level(t) != "instance"):
            if _remove(tag):
                removed.append(tag)
        return removed

    def leftovers(self, run_id: str, instance_images: set[str]) -> dict[str, object]:
        """The summary's unstopped_instances / unstopped_containers / unremoved_images."""
        from agentrm.sandboxes.engine import LABEL_PID, LABEL_RUN, client
        from agentrm.sandboxes.reaper import owner_labels

        me = owner_labels(run_id)[LABEL_PID]
        names = set()
        for row in client().api.containers(all=True):  # one call: others' containers come and go
            labels, name = row.get("Labels") or {}, (row.get("Names") or ["?"])[0].lstrip("/")
            if labels.get(LABEL_RUN) == run_id or labels.get(LABEL_PID) == me or run_id in name:
                names.add(name)
        present = _tags()
        return {"unstopped_instances": len(names), "unstopped_containers": sorted(names),
                "unremoved_images": sorted(t for t in instance_images if t in present)}


def _tags() -> set[str]:
    from agentrm.sandboxes.engine import client

    return {tag for row in client().api.images() for tag in (row.get("RepoTags") or [])}


def _remove(tag: str) -> bool:
    from agentrm.sandboxes.engine import client

    try:
        client().images.remove(tag)
        return True
    except Exception as exc:  # noqa: BLE001 - in use or gone: reported as unremoved
        log.info("kept %s: %s", tag, str(exc).splitlines()[0][:120])
        return False
