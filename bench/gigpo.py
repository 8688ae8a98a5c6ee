"""GiGPO over ~1,000,000 step rows (10,000 groups × 8 rollouts × ~12 steps): agentrm's
vectorised estimator vs a straightforward per-group Python implementation, in the same run.

    python bench/gigpo.py [--groups 10000] [--rollouts 8] [--norm mean_std] [--anchors int|str]

Prints both timings, the speed-up (goal ≥ 20×), max |difference| (asserted allclose) and peak
memory (tracemalloc peaks measured in separate passes, so timings are not slowed by tracing).
"""

from __future__ import annotations

import argparse
import math
import resource
import time
import tracemalloc
from collections import defaultdict

import numpy as np

from agentrm.advantages import AdvantageConfig, StepRows, compute


def make_batch(groups: int, rollouts: int, seed: int, str_anchors: bool):
    """Trajectories of 6–18 steps (mean 12); states recur across rollouts of a group at the same
    step with 3 variants; 5% invalid actions; success reward 1 on the last step for ~40%."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(6, 19, size=groups * rollouts)
    traj = np.repeat(np.arange(groups * rollouts), lengths)
    uid = traj // rollouts
    starts = np.repeat(np.cumsum(lengths) - lengths, lengths)
    step = np.arange(len(traj)) - starts
    last = step == np.repeat(lengths - 1, lengths)
    success = rng.random(groups * rollouts) < 0.4
    reward = np.where(last & success[traj], 1.0, 0.0) + np.where(rng.random(len(traj)) < 0.05, 0.1, 0.0)
    valid = rng.random(len(traj)) > 0.05
    anchor = step * 4 + rng.integers(0, 3, size=len(traj))
    if str_anchors:
        anchor = np.char.add("state-", anchor.astype(str))
    return uid, traj, step, reward, valid, anchor


def python_gigpo(uid, traj, step, reward, valid, anchor, gamma, omega, penalty, norm, eps=1e-6):
    """Per-group loops over plain lists and dicts (ALGORITHMS.md §3, trajectory pool)."""
    n = len(uid)
    by_group = defaultdict(lambda: defaultdict(list))
    for i in range(n):
        by_group[uid[i]][traj[i]].append(i)
    out = [0.0] * n

    def stats(values):
        mu = sum(values) / len(values)
        sd = math.sqrt(sum((v - mu) ** 2 for v in values) / (len(values) - 1))
        return mu, sd

    for trajs in by_group.values():
        score, ret = {}, {}
        entries = []
        for rows in trajs.values():
            rows.sort(key=lambda i: step[i])
            total = sum(reward[i] for i in rows)
            g = 0.0
            for i in reversed(rows):
                g = reward[i] + gamma * g
                pen = 0.0 if valid[i] else penalty
                ret[i] = g - pen
                score[i] = total - pen
            entries.append(sum(score[i] for i in rows) / len(rows))
        if len(entries) == 1:
            mu, sd = 0.0, 1.0
        else:
            mu, sd = stats(entries)
        clusters = defaultdict(list)
        for rows in trajs.values():
            for i in rows:
                clusters[anchor[i]].append(i)
        for members in clusters.values():
            if len(members) > 1:
                cm, cs = stats([ret[i] for i in members])
            for i in members:
                a_e = score[i] - mu
                a_s = 0.0 if len(members) == 1 else ret[i] - cm
                if norm == "mean_std":
                    a_e /= sd + eps
                    a_s = a_s / (cs + eps) if len(members) > 1 else 0.0
                out[i] = a_e + omega * a_s
    return out


def timed(fn):
    """(value, (wall seconds, CPU seconds of this process)). On a shared machine the CPU time
    is the steadier figure: wall time also counts the time other processes held the cores."""
    wall, cpu = time.perf_counter(), time.process_time()
    value = fn()
    return value, (time.perf_counter() - wall, time.process_time() - cpu)


def best(fn, runs: int):
    value, (wall, cpu) = timed(fn)
    for _ in range(runs - 1):
        _, (w, c) = timed(fn)
        wall, cpu = min(wall, w), min(cpu, c)
    return value, wall, cpu


def peak_mib(fn) -> float:
    tracemalloc.start()
    fn()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak / 2**20


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--groups", type=int, default=10_000)
    ap.add_argument("--rollouts", type=int, default=8)
    ap.add_argument("--norm", default="mean", choices=["mean", "mean_std"])
    ap.add_argument("--anchors", default="int", choices=["int", "str"])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--repeat", type=int, default=5, help="vectorised runs (best is reported)")
    ap.add_argument("--baseline-repeat", type=int, default=2, help="baseline runs (best is reported)")
    ap.add_argument("--shuffle", action="store_true", help="rows in random order (both sides)")
    ap.add_argument("--no-memory", action="store_true", help="skip the tracemalloc passes")
    args = ap.parse_args()
    gamma, omega, penalty = 0.95, 1.0, 0.1
    cols = make_batch(args.groups, args.rollouts, args.seed, args.anchors == "str")
    if args.shuffle:
        perm = np.random.default_rng(args.seed + 1).permutation(len(cols[0]))
        cols = tuple(c[perm] for c in cols)
    lists = [c.tolist() for c in cols]
    cfg = AdvantageConfig(estimator="gigpo", gamma=gamma, omega=omega, norm=args.norm, invalid_penalty=penalty)

    def vectorised():
        return compute(StepRows.from_columns(*cols), cfg).advantage

    def baseline():
        return python_gigpo(*lists, gamma, omega, penalty, args.norm)

    # best of N for each side: the machine may be shared, the minimum is the least disturbed run
    fast, t_fast, c_fast = best(vectorised, args.repeat)
    slow, t_slow, c_slow = best(baseline, args.baseline_repeat)
    diff = float(np.max(np.abs(fast - np.asarray(slow))))
    np.testing.assert_allclose(fast, slow, rtol=1e-9, atol=1e-9)
    print(f"rows {len(cols[0]):,}  groups {args.groups:,}  rollouts {args.rollouts}  norm {args.norm}  "
          f"anchors {args.anchors}  shuffled {args.shuffle}")
    print(f"vectorised (agentrm.advantages): wall {t_fast:7.3f} s  cpu {c_fast:7.3f} s  (best of {args.repeat})")
    print(f"per-group Python baseline:       wall {t_slow:7.3f} s  cpu {c_slow:7.3f} s  (best of {args.baseline_repeat})")
    print(f"speed-up: wall {t_slow / t_fast:.1f}x  cpu {c_slow / c_fast:.1f}x   max |diff| {diff:.2e}  (allclose: ok)")
    if not args.no_memory:
        print(f"peak traced memory: vectorised {peak_mib(vectorised):.0f} MiB, "
              f"baseline {peak_mib(baseline):.0f} MiB (inputs excluded)")
    print(f"process max RSS: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")


if __name__ == "__main__":
    main()
