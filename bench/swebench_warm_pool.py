"""Agent-mode sandbox start-up per rollout with the warm pool, against a bare `docker run`.

Baseline: `docker run --rm --network none <instance image> true` (the least a rollout could
wait for a container of its instance). Measured: what a rollout waits for before its first
command has run: the pool's sandbox for the request (started ahead while the previous rollout
worked) plus that first command (`git status`) in it. Also shown: a cold DockerSandbox start
(what a rollout waits without the pool). The three are interleaved in one process on the same
image; rollouts "work" for --work seconds (the policy's time) while the pool refills. Prints
the ratio of medians, warm / docker run (goal ≤ 1.2).

    python bench/swebench_warm_pool.py [--rollouts 8] [--work 2] [--size 2] [--official]

`--official`: the same on an official-layout image (built offline, /testbed, activation): the
pool serves sandboxes of its agent layer (agent.agent_image, prepared once before the run as
the harness does while resolving); the baseline runs the official image itself.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import time

from agentrm.evals.swebench.dataset import load_instances
from agentrm.evals.swebench.harness import EvalConfig
from agentrm.evals.swebench.images import instance_image
from agentrm.evals.swebench.repos import RepoSource
from agentrm.evals.swebench.specs import load_specs
from agentrm.evals.swebench.warm_pool import WarmPool, agent_sandbox_config


def docker_run(image: str) -> float:
    started = time.perf_counter()
    subprocess.run(["docker", "run", "--rm", "--network", "none", image, "true"], check=True,
                   capture_output=True, timeout=300)
    return time.perf_counter() - started


def first_command(box) -> None:
    result = box.exec("git status --porcelain", timeout=120)
    assert result.ok, result.stdout


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rollouts", type=int, default=8)
    ap.add_argument("--work", type=float, default=2.0, help="seconds each rollout works")
    ap.add_argument("--size", type=int, default=2, help="warm pool size")
    ap.add_argument("--official", action="store_true", help="an official-layout image")
    args = ap.parse_args()
    from agentrm.sandboxes import DockerSandbox

    inst = next(i for i in load_instances("bundled") if i.instance_id == "agentrm__textkit-1")
    spec = load_specs().lookup(inst.repo, inst.version)
    agent: object
    if args.official:
        from agentrm.evals.swebench.agent import agent_image
        from agentrm.evals.swebench.local_official import build_official_style
        from agentrm.evals.swebench.official import official_layout

        image = build_official_style(inst, spec, RepoSource("bundled"))
        started = time.perf_counter()
        agent = agent_image(image, official_layout())
        print(f"agent layer and activated environment: {time.perf_counter() - started:.2f}s "
              f"(once per image)")
    else:
        image = agent = instance_image(inst, spec, RepoSource("bundled"))
    config = agent_sandbox_config(agent, EvalConfig(agent=True, agent_timeout=600), "bench-warm")
    docker_run(image)  # warm the engine's caches for every contender alike
    bare, warm, cold = [], [], []
    with WarmPool(size=args.size) as pool:
        for _ in range(args.rollouts):
            pool.expect(config)
        time.sleep(args.work)  # the run's first moments (image resolution, policy load)
        for i in range(args.rollouts):
            bare.append(docker_run(image))
            started = time.perf_counter()
            box = pool(config)
            first_command(box)
            warm.append(time.perf_counter() - started)
            started = time.perf_counter()
            with DockerSandbox(config) as fresh:
                first_command(fresh)
                cold.append(time.perf_counter() - started)
            time.sleep(max(0.0, args.work - cold[-1] - bare[-1]))  # the rest of the agent's work
            box.close()
            print(f"rollout {i + 1}: docker run {bare[-1]:.2f}s  warm pool {warm[-1]:.3f}s  "
                  f"cold sandbox {cold[-1]:.2f}s", flush=True)
        hits, waits, misses = pool.hits, pool.waits, pool.misses
    b, w, c = (statistics.median(x) for x in (bare, warm, cold))
    print(f"median start-up per rollout: docker run {b:.3f}s, warm pool {w:.3f}s, "
          f"cold sandbox {c:.3f}s (pool hits {hits}, waits {waits}, misses {misses})")
    print(f"ratio warm pool / docker run = {w / b:.2f} (goal <= 1.2); "
          f"cold sandbox / docker run = {c / b:.2f}")


if __name__ == "__main__":
    main()
