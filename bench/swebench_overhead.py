"""Harness overhead of `agentrm eval swe-bench` per instance, against a plain `docker run`.

Baseline: one `docker run --rm` of the same instance image that applies the same gold and test
patches and runs the same test command (pytest with the same flags), nothing else. Harness: the
test verifier (fresh sandbox, patch fallbacks, protected-file reset, junit read-back, grading).
Both run interleaved in the same process on every bundled instance, `--repeat` times; the ratio
of medians is printed (goal ≤ 1.10). Then the whole harness run (gold, all bundled instances,
store + reports) is timed with 1 and 2 workers.

    python bench/swebench_overhead.py [--repeat 3] [--skip-workers] [--probe-cost N]

`--probe-cost N`: on one instance, N interleaved runs of the test verifier with its pre-patch
runner probe and with the probe left out (the witness still on), and the plain `docker run`:
what the probe costs per instance.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from agentrm.evals.swebench.dataset import load_instances
from agentrm.evals.swebench.harness import EvalConfig, evaluate, test_spec
from agentrm.evals.swebench.images import instance_image
from agentrm.evals.swebench.repos import RepoSource
from agentrm.evals.swebench.specs import load_specs
from agentrm.verifiers.tests_script import test_command
from agentrm.verifiers.tests_verifier import run_tests


def baseline_script(spec, patch: str) -> str:
    """The same test command without agentrm's grading witness plugin (it lives in the
    grader's script only)."""
    cmd = test_command(spec, "/tmp/junit.xml")
    try:
        from agentrm.verifiers.tests_guard import MODULE

        cmd = cmd.replace(f" -p {MODULE}", "")
    except ImportError:  # a verifier without the witness
        pass
    return (f"set -e\ncd {spec.workdir}\n"
            f"git apply - <<'AGENTRM_GOLD'\n{patch}AGENTRM_GOLD\n"
            f"git apply - <<'AGENTRM_TEST'\n{spec.test_patch}AGENTRM_TEST\n"
            f"set +e\n{cmd} </dev/null\n")


def plain_docker_run(spec, patch: str) -> tuple[float, int]:
    started = time.perf_counter()
    proc = subprocess.run(["docker", "run", "--rm", "-i", "--network", "none", "-u", "agent",
                           "--cpus", str(spec.cpus), "--memory", spec.memory, spec.image,
                           "bash", "-s"], input=baseline_script(spec, patch), text=True,
                          capture_output=True, timeout=spec.timeout + 60)
    return time.perf_counter() - started, proc.returncode


def per_instance(repeat: int) -> None:
    table, repos = load_specs(), RepoSource("bundled")
    cases = []
    for inst in load_instances("bundled"):
        image = instance_image(inst, table.lookup(inst.repo, inst.version), repos)
        cases.append((inst, test_spec(inst, table, image, timeout=300)))
    base_t: list[float] = []
    harness_t: list[float] = []
    print(f"{'instance':24} {'docker run s':>12} {'harness s':>10} {'ratio':>6}")
    for inst, spec in cases:
        b, h = [], []
        for _ in range(repeat):
            seconds, rc = plain_docker_run(spec, inst.patch)
            if rc != 0:
                sys.exit(f"baseline failed for {inst.instance_id} (exit {rc})")
            b.append(seconds)
            started = time.perf_counter()
            run = run_tests(spec, inst.patch)
            h.append(time.perf_counter() - started)
            if not run.resolved:
                sys.exit(f"harness did not resolve {inst.instance_id}: {run.status} {run.error}")
        mb, mh = statistics.median(b), statistics.median(h)
        base_t.append(mb)
        harness_t.append(mh)
        print(f"{inst.instance_id:24} {mb:12.2f} {mh:10.2f} {mh / mb:6.2f}")
    total_b, total_h = sum(base_t), sum(harness_t)
    print(f"per-instance median: docker run {statistics.median(base_t):.2f}s, harness "
          f"{statistics.median(harness_t):.2f}s; total ratio harness/docker-run = "
          f"{total_h / total_b:.3f} (overhead {100 * (total_h / total_b - 1):+.1f}%, goal ≤ +10%)")


def probe_cost(repeat: int) -> None:
    import agentrm.verifiers.tests_script as script
    from agentrm.verifiers.tests_guard import MODULE

    table, repos = load_specs(), RepoSource("bundled")
    inst = load_instances("bundled")[0]
    spec = test_spec(inst, table, instance_image(inst, table.lookup(inst.repo, inst.version), repos),
                     timeout=300)
    real = script._probes
    times: dict[str, list[float]] = {"with probe": [], "without probe": [], "docker run": []}
    try:
        for _ in range(repeat):
            for label, probes in (("with probe", real),
                                  ("without probe", lambda _spec: f'G="-p {MODULE}"\n')):
                script._probes = probes
                started = time.perf_counter()
                run = run_tests(spec, inst.patch)
                times[label].append(time.perf_counter() - started)
                if not run.resolved:
                    sys.exit(f"harness did not resolve {inst.instance_id}: {run.status} {run.error}")
            times["docker run"].append(plain_docker_run(spec, inst.patch)[0])
    finally:
        script._probes = real
    medians = {k: statistics.median(v) for k, v in times.items()}
    print(f"{inst.instance_id}, {repeat} runs each (medians): " + ", ".join(
        f"{k} {v:.3f}s" for k, v in medians.items())
        + f"; the probe costs {medians['with probe'] - medians['without probe']:.3f}s per instance")


def workers() -> None:
    n = len(load_instances("bundled"))
    for k in (1, 2):
        with tempfile.TemporaryDirectory() as tmp:
            started = time.perf_counter()
            run = evaluate(EvalConfig(predictions="gold", max_workers=k, run_dir=str(Path(tmp) / "runs"),
                                      db=f"sqlite:///{tmp}/bench.db", redo=True))
            wall = time.perf_counter() - started
            print(f"workers={k}: {n} instances in {wall:.1f}s wall ({wall / n:.2f}s/instance), "
                  f"resolved {run.summary['resolved_instances']}/{n}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--skip-workers", action="store_true")
    parser.add_argument("--probe-cost", type=int, default=0, metavar="N")
    args = parser.parse_args()
    if args.probe_cost:
        probe_cost(args.probe_cost)
        return
    per_instance(args.repeat)
    if not args.skip_workers:
        workers()


if __name__ == "__main__":
    main()
