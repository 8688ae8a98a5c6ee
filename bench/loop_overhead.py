"""The agent loop's own overhead: turns/s of run_trajectory with the scripted policy (LangGraph
graph, tool dispatch, anchor keys, a SQLite trace store write per turn — everything but the
model) against the same sandbox's raw command latency, interleaved in the same run.

    python bench/loop_overhead.py [--turns 40] [--rounds 5] [--command CMD ...]

For each command, prints the raw exec latency, the loop's per-turn time with both engines
(the LangGraph graph, and the same nodes and router in a plain loop), turns/s and the overhead
ratio (goal: the loop adds at most 20%). Needs a Docker engine.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

from agentrm.rollout.loop import Limits, run_trajectory
from agentrm.rollout.policies import ScriptedPolicy
from agentrm.rollout.policies.parsing import _call
from agentrm.sandboxes import DockerSandbox, SandboxConfig
from agentrm.traces import open_store
from agentrm.types import Task


def raw_round(sb, command: str, n: int) -> float:
    """Seconds per command when calling the sandbox directly."""
    t0 = time.perf_counter()
    for _ in range(n):
        sb.exec(command, timeout=30)
    return (time.perf_counter() - t0) / n


def loop_round(sb, store, command: str, n: int, k: str, engine: str) -> float:  # noqa: PLR0913
    """Seconds per turn of a whole trajectory of n bash turns (ending at the turn limit)."""
    actions = [{"role": "assistant", "content": "", "tool_calls": [_call("bash", {"command": command})]}
               for _ in range(n)]
    task = Task(id="bench", instruction="run the command", answer="x")
    t0 = time.perf_counter()
    traj = run_trajectory(task, ScriptedPolicy(actions), sb, store, Limits(max_turns=n),
                          trajectory_id=f"bench-{k}", run_id=store and "bench", engine=engine)
    elapsed = time.perf_counter() - t0
    assert len(traj.turns) == n and traj.exit_status.value == "turn_limit", traj.exit_status
    return elapsed / n


COMMANDS = ["echo hi", "ls -la /usr/bin | head -20", "python3 -c 'print(1)'"]


def measure(sb, store, command: str, turns: int, rounds: int) -> dict[str, list[float]]:
    raw_round(sb, command, 5)  # warm up the shell, the store and both engines
    variants = {"langgraph": (store, "langgraph"), "direct": (store, "direct"),
                "direct-nostore": (None, "direct")}
    for name, (st, engine) in variants.items():
        loop_round(sb, st, command, 5, f"warm-{name}-{command}", engine)
    out: dict[str, list[float]] = {"raw": [], **{name: [] for name in variants}}
    for k in range(rounds):  # interleaved: drift on a shared machine hits all alike
        out["raw"].append(raw_round(sb, command, turns))
        for name, (st, engine) in variants.items():
            out[name].append(loop_round(sb, st, command, turns, f"{name}-{command}-{k}", engine))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--turns", type=int, default=40)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--command", action="append", help=f"repeatable; default: {COMMANDS}")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp, DockerSandbox(SandboxConfig()) as sb:
        store = open_store(f"sqlite:///{tmp}/bench.db")
        store.begin_run({"bench": "loop_overhead"}, "bench")
        results = {c: measure(sb, store, c, args.turns, args.rounds) for c in args.command or COMMANDS}
        store.close()
    print(f"{args.rounds} rounds x {args.turns} turns per command, medians; goal: loop <= +20%")
    print("columns: ms per command/turn (overhead vs raw); graph = LangGraph engine + SQLite store,"
          " direct = same nodes in a plain loop + store, nostore = direct without the store")
    print(f"{'command':28} {'raw':>7} {'graph':>17} {'direct':>17} {'nostore':>17} {'graph turns/s':>13}")
    for command, res in results.items():
        raw = statistics.median(res["raw"])
        cells = []
        for name in ("langgraph", "direct", "direct-nostore"):
            m = statistics.median(res[name])
            cells.append(f"{m * 1e3:7.2f} ({m / raw - 1:+6.0%})")
        graph = statistics.median(res["langgraph"])
        print(f"{command[:28]:28} {raw * 1e3:7.2f} {' '.join(f'{c:>17}' for c in cells)} {1 / graph:13.1f}")


if __name__ == "__main__":
    main()
