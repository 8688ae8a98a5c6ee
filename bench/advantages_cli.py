"""Benchmark: `agentrm advantages` on ~1M step rows in Parquet vs the library call, same run.

    python bench/advantages_cli.py [--groups 10000] [--rollouts 8] [--anchors str|int] [--repeat 2]

Times, best of --repeat, on one batch (bench/gigpo.py's generator: 10,000 groups × 8 rollouts ×
~12 steps, string ids and string anchors as in a real export):
  library   compute(StepRows, AdvantageConfig()) on column arrays already in memory
  file      agentrm.advantages.io: read_rows(in.parquet) → compute → write_rows(out.parquet)
  cli       `agentrm advantages in.parquet -o out.parquet` through the CLI entry point, in
            this process (skipped, with the reason, if the CLI does not take Parquet yet)
Prints each and the ratios to the library call (goal: cli ≤ 2×).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).parent))
from gigpo import make_batch  # noqa: E402

from agentrm.advantages import AdvantageConfig, StepRows, compute  # noqa: E402
from agentrm.advantages.io import read_rows, write_rows  # noqa: E402


def best(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def run_cli(args: list[str]) -> None:
    from agentrm.cli.main import main

    saved = sys.argv
    sys.argv = ["agentrm", *args]
    try:
        main()
    except SystemExit as exc:
        if exc.code not in (0, None):
            raise RuntimeError(f"agentrm exited {exc.code}") from None
    finally:
        sys.argv = saved


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--groups", type=int, default=10_000)
    ap.add_argument("--rollouts", type=int, default=8)
    ap.add_argument("--anchors", choices=["str", "int"], default="str")
    ap.add_argument("--repeat", type=int, default=2)
    args = ap.parse_args(argv)
    uid, traj, step, reward, valid, anchor = make_batch(args.groups, args.rollouts, 0, args.anchors == "str")
    uid_s, traj_s = np.char.add("task-", uid.astype(str)), np.char.add("traj-", traj.astype(str))
    config = AdvantageConfig()
    n = len(step)
    with tempfile.TemporaryDirectory() as tmp:
        src, out = Path(tmp) / "in.parquet", Path(tmp) / "out.parquet"
        pq.write_table(pa.table({"uid": uid_s, "traj_uid": traj_s, "step": step, "anchor": anchor,
                                 "reward": reward, "valid": valid}), src)

        def library():
            compute(StepRows.from_columns(uid_s, traj_s, step, reward, valid, anchor), config)

        def file_path():
            rows = read_rows(src)
            result = compute(rows.rows, config)
            write_rows(out, rows, result.columns, meta=result.metadata)

        t_lib = best(library, args.repeat)
        t_file = best(file_path, args.repeat)
        ref = compute(StepRows.from_columns(uid_s, traj_s, step, reward, valid, anchor), config).advantage
        got = pq.read_table(out, columns=["advantage"]).column("advantage").to_numpy(zero_copy_only=False)
        np.testing.assert_allclose(got, ref, rtol=0, atol=1e-12)
        try:
            t_cli = best(lambda: run_cli(["advantages", str(src), "-o", str(out), "--json"]), args.repeat)
        except Exception as exc:  # noqa: BLE001 - report why the CLI could not run
            t_cli, why = None, f"{type(exc).__name__}: {str(exc).splitlines()[0][:120]}"
    print(f"{n:,} step rows, {args.anchors} anchors, GiGPO defaults")
    print(f"  library  compute(StepRows)                       {t_lib:6.2f} s")
    print(f"  file     read_rows → compute → write_rows         {t_file:6.2f} s   {t_file / t_lib:5.2f}x")
    if t_cli is not None:
        print(f"  cli      agentrm advantages in.parquet -o out.parquet {t_cli:6.2f} s   {t_cli / t_lib:5.2f}x"
              " (goal <= 2x)")
    else:
        print(f"  cli      not run: {why}", file=sys.stderr)


if __name__ == "__main__":
    main()
