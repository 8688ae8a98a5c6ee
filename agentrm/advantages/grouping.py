"""Vectorised group machinery shared by the estimators: deterministic group codes, per-group
statistics with both std conventions, a reverse scan over trajectory steps, anchor clustering.

No Python loop runs per row: grouping is np.unique / bincount; the only loops run over step
depth (≤ the longest trajectory) and, for similarity anchors, over distinct anchor texts.
"""

from __future__ import annotations

from dataclasses import dataclass
from difflib import SequenceMatcher
from functools import cached_property

import numpy as np

from agentrm.advantages.rows import StepRows
from agentrm.errors import InputError


def factorize(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(codes, uniques) with codes numbered in sorted order of the unique values, so group keys
    do not depend on row order. Integer arrays go straight to np.unique. Strings are interned
    with a C-level `map(dict.setdefault, ...)` (first-occurrence index per row; ~3× faster than
    sorting the strings) and only the distinct values are sorted."""
    if values.dtype.kind in "iub":
        if len(values) and values.min() >= 0 and values.max() < 4 * len(values) + 4096:
            present = np.zeros(int(values.max()) + 1, bool)  # dense ids: O(n), no sort
            present[values] = True
            if present.all():  # already 0..k-1
                return values.astype(np.int64, copy=False), np.arange(len(present))
            rank = np.cumsum(present) - 1
            return rank[values].astype(np.int64), np.flatnonzero(present)
        uniques, codes = np.unique(values, return_inverse=True)
        return codes.reshape(-1).astype(np.int64), uniques
    items = values.tolist()
    table: dict = {}
    first = np.fromiter(map(table.setdefault, items, range(len(items))), np.int64, len(items))
    first_rows, inverse = np.unique(first, return_inverse=True)
    keys = [items[i] for i in first_rows.tolist()]
    order = sorted(range(len(keys)), key=lambda i: (type(keys[i]).__name__, keys[i]))
    rank = np.empty(len(keys), np.int64)
    rank[order] = np.arange(len(keys))
    uniques = np.empty(len(keys), object)
    uniques[rank] = keys
    return rank[inverse.reshape(-1)], uniques


@dataclass
class Layout:
    """Row → group/trajectory codes and each row's place inside its trajectory."""

    uid: np.ndarray  # group code per row
    traj: np.ndarray  # trajectory code per row
    traj_uid: np.ndarray  # group code per trajectory
    n_groups: int
    n_traj: int
    order: np.ndarray  # rows sorted by (trajectory, step)
    pos: np.ndarray  # position of order[k] inside its trajectory
    length: np.ndarray  # steps per trajectory
    in_order: bool = False  # rows were already sorted by (trajectory, step)

    @classmethod
    def build(cls, rows: StepRows) -> Layout:
        uid, _ = factorize(rows.uid)
        traj, _ = factorize(rows.traj_uid)
        n = len(traj)
        n_traj = int(traj.max()) + 1 if n else 0
        traj_uid = np.zeros(n_traj, np.int64)
        traj_uid[traj] = uid
        if n and np.any(traj_uid[traj] != uid):
            bad = rows.traj_uid[np.flatnonzero(traj_uid[traj] != uid)[0]]
            raise InputError(f"trajectory {bad!r} appears in more than one group (uid)")
        span = int(rows.step.max()) + 1 if n else 1
        if span * max(n_traj, 1) < 2**62:  # one int64 key instead of lexsort
            key = traj * span + rows.step
            in_order = n < 2 or bool(np.all(key[1:] > key[:-1]))  # files are usually written sorted
            order = None if in_order else np.argsort(key)
            if order is not None and np.any(np.diff(key[order]) == 0):
                dup = int(order[np.flatnonzero(np.diff(key[order]) == 0)[0]])
                raise InputError(f"duplicate step {rows.step[dup]} of trajectory {rows.traj_uid[dup]!r}")
        else:
            order = np.lexsort((rows.step, traj))
        length = np.bincount(traj, minlength=n_traj)
        starts = np.cumsum(length) - length
        pos = np.arange(n) - np.repeat(starts, length)  # sorted rows are contiguous per trajectory
        in_order = order is None
        return cls(uid, traj, traj_uid, int(uid.max()) + 1 if n else 0, n_traj,
                   np.arange(n) if in_order else order, pos, length, in_order)

    @cached_property
    def next_row(self) -> np.ndarray:
        """Index of each row's next step in its trajectory; −1 at the last step."""
        n = len(self.order)
        sorted_traj = self.traj[self.order]
        same_next = sorted_traj[1:] == sorted_traj[:-1]
        if self.in_order:
            return np.where(np.append(same_next, False), np.arange(1, n + 1), -1)
        next_row = np.full(n, -1, np.int64)
        next_row[self.order[:-1][same_next]] = self.order[1:][same_next]
        return next_row

    @cached_property
    def is_last(self) -> np.ndarray:
        """True on each trajectory's last step."""
        return self.next_row < 0

    @cached_property
    def depth_rows(self) -> list[np.ndarray]:
        """depth_rows[d] = rows with d steps after them (d = 0: the last steps)."""
        if not len(self.order):
            return []
        depth = np.empty(len(self.order), np.int64)
        depth[self.order] = self.length[self.traj[self.order]] - 1 - self.pos
        small = depth.astype(np.int16) if depth.max() < 2**15 else depth  # 16-bit: radix sort
        by_depth = np.argsort(small, kind="stable")
        return np.split(by_depth, np.cumsum(np.bincount(depth))[:-1])

    def reverse_scan(self, b: np.ndarray, a: np.ndarray | float) -> np.ndarray:
        """C_t = b_t + a_t · C_{t+1} within each trajectory (C after the last step = 0).

        With a = γ this is the discounted return G_t = r_t + γ·G_{t+1} (GiGPO §3.1). Runs as
        column sweeps over a [trajectory × step] matrix (contiguous, fast) when trajectories
        are of similar length, else as sweeps over rows grouped by depth."""
        b = np.asarray(b, dtype=np.float64)
        a_arr = np.broadcast_to(np.asarray(a, dtype=np.float64), b.shape)
        width = int(self.length.max()) if len(self.length) else 0
        if self.n_traj * width > 4 * len(b) + 4096:
            out = b.copy()
            for rows in self.depth_rows[1:]:
                out[rows] = b[rows] + a_arr[rows] * out[self.next_row[rows]]
            return out
        cell = self._cells  # step-major: each sweep reads one contiguous matrix row
        mb = np.zeros((width + 1) * self.n_traj)
        mb[cell] = b
        mb = mb.reshape(width + 1, self.n_traj)
        if np.ndim(a) == 0:
            for j in range(width - 1, -1, -1):
                mb[j] += float(a) * mb[j + 1]
        else:
            ma = np.zeros((width + 1) * self.n_traj)
            ma[cell] = a_arr
            ma = ma.reshape(width + 1, self.n_traj)
            for j in range(width - 1, -1, -1):
                mb[j] += ma[j] * mb[j + 1]
        return mb.reshape(-1)[cell]

    @cached_property
    def _cells(self) -> np.ndarray:
        """Flat [step position × trajectory] cell of every row (input order)."""
        if self.in_order:
            return self.pos * self.n_traj + self.traj
        cells = np.empty(len(self.order), np.int64)
        cells[self.order] = self.pos * self.n_traj + self.traj[self.order]
        return cells


    def traj_sum(self, values: np.ndarray) -> np.ndarray:
        return np.bincount(self.traj, weights=values, minlength=self.n_traj)


def group_stats(values: np.ndarray, codes: np.ndarray, n: int, std: str, eps_var: float,
                with_dev: bool = False):
    """(count, mean, sigma) per group; sigma = sqrt(var + eps_var), var with ddof 1 ("sample",
    σ₁) or 0 ("population", σ₀). Groups too small for the chosen ddof get sigma NaN.
    with_dev=True also returns each value minus its group mean (saves the caller a gather)."""
    count = np.bincount(codes, minlength=n).astype(np.float64)
    # Shift by the group minimum: a tied group then has a mean exactly equal to its members, so
    # tied scores give A ≡ 0 exactly (dynamic sampling and IGPO's "z = 0" tests rely on it).
    shift = np.full(n, np.inf)
    np.minimum.at(shift, codes, values)
    shift[~np.isfinite(shift)] = 0.0
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = shift + np.bincount(codes, weights=values - shift[codes], minlength=n) / count
        dev = values - mean[codes]
        ddof = 1.0 if std == "sample" else 0.0
        var = np.bincount(codes, weights=dev * dev, minlength=n) / (count - ddof)
        var[count - ddof <= 0] = np.nan
        sigma = np.sqrt(var + eps_var)
    if with_dev:
        return count, mean, sigma, dev
    return count, mean, sigma


def cluster_exact(uid: np.ndarray, anchor: np.ndarray) -> np.ndarray:
    """Cluster code per row: rows of one group with identical anchors (None never matches)."""
    if anchor.dtype.kind in "iu" and len(anchor) and anchor.min() >= 0:
        width = int(anchor.max()) + 1  # integer state ids: one combined key, one factorize
        if width * (int(uid.max()) + 1) < 2**62:
            return factorize(uid * width + anchor)[0]
    if anchor.dtype == object:
        key = anchor.copy()
        missing = np.equal(key, None)
        key[missing] = [f"\x01row:{i}" for i in np.flatnonzero(missing)]
    else:
        key = anchor  # numeric / fixed-width strings: no missing anchors possible
    codes, _ = factorize(key)
    combined = uid * (int(codes.max()) + 1 if len(codes) else 1) + codes
    return factorize(combined)[0]


def cluster_similar(layout: Layout, anchor: np.ndarray, step: np.ndarray, threshold: float) -> np.ndarray:
    """Greedy difflib clustering inside each group (ALGORITHMS.md §3.4): a text joins the first
    cluster whose representative (its first member) has ratio ≥ threshold, else starts one.

    The reference walks rows in batch order, which it shuffles; we walk the distinct texts in a
    canonical order (group, trajectory code, step) so results do not depend on row order.
    Identical texts always share a cluster, so looping over distinct texts equals the row loop."""
    pair = cluster_exact(layout.uid, anchor)
    order = np.lexsort((step, layout.traj, layout.uid))
    _, first_pos = np.unique(pair[order], return_index=True)
    firsts = order[np.sort(first_pos)]  # first row of each distinct (group, text), canonical order
    cluster_of_pair = np.empty(int(pair.max()) + 1 if len(pair) else 0, np.int64)
    next_cluster = 0
    reps: dict[int, list[tuple[str, int]]] = {}
    for row in firsts.tolist():
        text, group = anchor[row], int(layout.uid[row])
        found = None
        comparable = isinstance(text, str) and not text.startswith("\x00")  # text anchors only
        if comparable:
            for rep, cid in reps.get(group, ()):
                matcher = SequenceMatcher(None, text, rep)
                if (matcher.real_quick_ratio() >= threshold and matcher.quick_ratio() >= threshold
                        and matcher.ratio() >= threshold):
                    found = cid
                    break
        if found is None:
            found, next_cluster = next_cluster, next_cluster + 1
            if comparable:
                reps.setdefault(group, []).append((text, found))
        cluster_of_pair[pair[row]] = found
    return cluster_of_pair[pair]
