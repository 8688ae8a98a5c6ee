"""Vectorised group machinery shared by the estimators: deterministic group codes, per-group
statistics with both std conventions, a reverse scan over trajectory steps, anchor clustering.

No Python loop runs per row: grouping is np.unique / bincount; the only loops run over step
depth (≤ the longest trajectory) and, for similarity anchors, over distinct anchor texts.
"""

from __future__ import annotations

from dataclasses import dataclass
from difflib import SequenceMatcher

import numpy as np

from agentrm.advantages.rows import StepRows


def factorize(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(codes, uniques) with codes numbered in sorted order of the unique values, so group keys
    do not depend on row order. Integer and fixed-width string arrays go straight to np.unique;
    object arrays are first interned through a dict (sorting Python objects is ~10× slower)."""
    if values.dtype != object:
        uniques, codes = np.unique(values, return_inverse=True)
        return codes.reshape(-1).astype(np.int64), uniques
    table: dict = {}
    first = np.fromiter((table.setdefault(v, len(table)) for v in values), np.int64, len(values))
    keys = list(table)
    rank = np.empty(len(keys), np.int64)
    rank[sorted(range(len(keys)), key=keys.__getitem__)] = np.arange(len(keys))
    uniques = np.empty(len(keys), object)
    uniques[rank] = keys
    return rank[first], uniques


@dataclass
class Layout:
    """Row → group/trajectory codes and each row's place inside its trajectory."""

    uid: np.ndarray  # group code per row
    traj: np.ndarray  # trajectory code per row
    traj_uid: np.ndarray  # group code per trajectory
    n_groups: int
    n_traj: int
    next_row: np.ndarray  # index of the row's next step in its trajectory, −1 at the last step
    is_last: np.ndarray  # bool: the trajectory's last step
    depth_rows: list[np.ndarray]  # depth_rows[d] = rows with d steps after them (d = 0: last)

    @classmethod
    def build(cls, rows: StepRows) -> Layout:
        uid, _ = factorize(rows.uid)
        traj, _ = factorize(rows.traj_uid)
        n_traj = int(traj.max()) + 1 if len(traj) else 0
        traj_uid = np.zeros(n_traj, np.int64)
        traj_uid[traj] = uid
        order = np.lexsort((rows.step, traj))
        sorted_traj = traj[order]
        same_next = np.zeros(len(order), bool)
        same_next[:-1] = sorted_traj[1:] == sorted_traj[:-1]
        next_row = np.full(len(order), -1, np.int64)
        next_row[order[:-1][same_next[:-1]]] = order[1:][same_next[:-1]]
        # depth = steps after this one: count from the end of each sorted trajectory segment
        length = np.bincount(traj, minlength=n_traj)
        ends = np.cumsum(length)[sorted_traj] - 1
        depth = np.empty(len(order), np.int64)
        depth[order] = ends - np.arange(len(order))
        by_depth = np.argsort(depth, kind="stable")
        cuts = np.cumsum(np.bincount(depth)) if len(depth) else np.zeros(0, np.int64)
        return cls(uid, traj, traj_uid, int(uid.max()) + 1 if len(uid) else 0, n_traj, next_row,
                   depth == 0, np.split(by_depth, cuts[:-1]) if len(depth) else [])

    def reverse_scan(self, b: np.ndarray, a: np.ndarray | float) -> np.ndarray:
        """C_t = b_t + a_t · C_{t+1} within each trajectory (C after the last step = 0).

        With a = γ this is the discounted return G_t = r_t + γ·G_{t+1} (GiGPO §3.1)."""
        out = np.array(b, dtype=np.float64, copy=True)
        a_arr = np.broadcast_to(np.asarray(a, dtype=np.float64), out.shape)
        for rows in self.depth_rows[1:]:
            out[rows] = b[rows] + a_arr[rows] * out[self.next_row[rows]]
        return out

    def traj_sum(self, values: np.ndarray) -> np.ndarray:
        return np.bincount(self.traj, weights=values, minlength=self.n_traj)


def group_stats(values: np.ndarray, codes: np.ndarray, n: int, std: str, eps_var: float,
                weights: np.ndarray | None = None):
    """(count, mean, sigma) per group; sigma = sqrt(var + eps_var), var with ddof 1 ("sample",
    σ₁) or 0 ("population", σ₀). Groups too small for the chosen ddof get sigma NaN."""
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
    return count, mean, sigma


def cluster_exact(uid: np.ndarray, anchor: np.ndarray) -> np.ndarray:
    """Cluster code per row: rows of one group with identical anchors (None never matches)."""
    key = anchor.copy()
    missing = np.equal(key, None)
    key[missing] = ["\x01row:%d" % i for i in np.flatnonzero(missing)]
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
