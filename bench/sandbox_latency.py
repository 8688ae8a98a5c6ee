"""Persistent-shell command latency vs `exec_run` of the same command, same container, same run.

    python bench/sandbox_latency.py [--n 300]

Goal (issue 3): <= 5 ms median in the shell; exec_run was ~75 ms here.
"""

from __future__ import annotations

import argparse
import statistics
import time

from agentrm.sandboxes import DockerSandbox, SandboxConfig


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=300, help="shell commands (exec_run: n/5)")
    ap.add_argument("--cmd", default="echo hi")
    args = ap.parse_args()
    with DockerSandbox(SandboxConfig(run_id="bench")) as box:
        for _ in range(10):
            box.exec(args.cmd)  # warm up
        shell = []
        for _ in range(args.n):
            t = time.perf_counter()
            r = box.exec(args.cmd)
            shell.append(time.perf_counter() - t)
            assert r.exit_code == 0
        base = []
        for _ in range(max(10, args.n // 5)):
            t = time.perf_counter()
            out = box.container.exec_run(["bash", "-c", args.cmd], user="agent")
            base.append(time.perf_counter() - t)
            assert out.exit_code == 0
    ms = lambda x: f"{x * 1e3:7.2f} ms"  # noqa: E731
    print(f"command: {args.cmd!r}")
    print(f"persistent shell  n={len(shell):4d}  median {ms(statistics.median(shell))}  p90 {ms(pct(shell, .9))}")
    print(f"exec_run baseline n={len(base):4d}  median {ms(statistics.median(base))}  p90 {ms(pct(base, .9))}")
    ratio = statistics.median(base) / statistics.median(shell)
    goal = "met" if statistics.median(shell) <= 0.005 else "NOT met"
    print(f"speed-up (exec_run / shell median): {ratio:.1f}x   goal <= 5 ms median: {goal}")


if __name__ == "__main__":
    main()
