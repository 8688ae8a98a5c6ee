"""Directories of trajectories: other harnesses' output folders (Harbor trial and job directories,
Agent Lightning store dumps) and folders of ATIF documents, read as one import; and the ATIF
export, one document per trajectory.

Files in, Trajectory objects out: the store is touched only by `atif_documents`, which reads the
scores an exported step reward comes from.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

from agentrm.errors import InputError
from agentrm.types import Trajectory

HARNESS_FORMATS = ("harbor", "agentlightning")
_FILE_SUFFIXES = (".json", ".jsonl", ".traj")


def atif_file_name(trajectory_id: str) -> str:
    """A file name for one trajectory's ATIF document: the id percent-encoded (ids hold `/`),
    so two ids never share a file and the id can be read back from the name."""
    return quote(trajectory_id, safe="-_.") + ".atif.json"


def atif_documents(store: Any, trajs: Iterable[Trajectory], limit: int | None = None
                   ) -> Iterator[tuple[str, dict[str, Any]]]:
    """(id, ATIF document) per trajectory; step rewards come from the trajectory's `atif`
    scores in `store`, so a rescored step exports its new value."""
    from itertools import islice

    from agentrm.traces.formats import ATIF_SCORER, write_atif

    trajs = iter(trajs) if limit is None else islice(trajs, limit)
    while batch := list(islice(trajs, 256)):  # one score query per batch, not per trajectory
        scores: dict[str, list[Any]] = {}
        for score in store.get_scores([t.id for t in batch], scorer=ATIF_SCORER):
            scores.setdefault(score.trajectory_id, []).append(score)
        for traj in batch:
            yield traj.id, write_atif(traj, scores.get(traj.id, []))


def write_atif_directory(docs: Iterable[tuple[str, dict[str, Any]]], output: Path) -> int:
    """One `ID.atif.json` per document in a new directory `output`, all or nothing: written in a
    temporary directory beside it and renamed into place once every document is written."""
    from agentrm.files import atomic_path

    if output.exists() and not (output.is_dir() and not any(output.iterdir())):
        raise InputError("exists and is not an empty directory (ATIF export writes a new one)",
                         path=str(output))
    n = 0
    try:
        with atomic_path(output, directory=True, parents=False) as tmp:
            for traj_id, doc in docs:
                target = tmp / atif_file_name(traj_id)
                target.write_text(json.dumps(doc, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
                n += 1
    except OSError as exc:
        raise InputError(f"cannot write: {exc.strerror}", path=str(output)) from None
    return n


def detect_directory(path: Path) -> str:
    """'harbor' for a trial or job directory (a result.json beside config.json, or in a
    subdirectory); 'agentlightning' for a folder of Agent Lightning spans; else 'files'."""
    from agentrm.traces.import_agentlightning import looks_like_agentlightning
    from agentrm.traces.import_harbor import is_job_dir, is_trial_dir

    if is_trial_dir(path) or is_job_dir(path):
        return "harbor"
    if any(looks_like_agentlightning(p) for p in _files(path)):
        return "agentlightning"
    return "files"


def _files(path: Path) -> list[Path]:
    return sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith(".")
                  and p.name.lower().endswith(_FILE_SUFFIXES))


def read_directory(path: Path, fmt: str | None) -> Iterator[Trajectory]:
    """Every trajectory under `path`: a harness's own layout, or each trace file in it (not
    recursive, sorted by name) read as if imported alone. Checked at the call: an empty or
    unreadable directory fails before a store is opened."""
    from agentrm.traces.io import read_trajectories

    fmt = fmt or detect_directory(path)
    if fmt == "harbor":
        from agentrm.traces.import_harbor import read_harbor

        return read_harbor(path)
    if fmt == "agentlightning":
        from agentrm.traces.import_agentlightning import read_agentlightning

        return read_agentlightning(path)
    files = _files(path)
    if not files:
        raise InputError("is a directory with no .json, .jsonl or .traj file in it (nor a Harbor "
                         "trial/job or Agent Lightning data)", path=str(path))
    chosen = None if fmt == "files" else fmt
    return _chain(read_trajectories(f, chosen) for f in files)


def _chain(readers: Iterable[Iterable[Trajectory]]) -> Iterator[Trajectory]:
    seen: set[str] = set()
    for reader in readers:
        for traj in reader:
            if traj.id in seen:
                raise InputError(f"duplicate trajectory id {traj.id!r} in the directory")
            seen.add(traj.id)
            yield traj
