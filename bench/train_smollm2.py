"""Does `agentrm train` make the embedded SmolLM2-135M better on held-out tasks, and does
GiGPO's step term help beside GRPO? The real loop in Docker sandboxes: tool calls decoded
under the tools' grammar, reward "outcome + 0.2*submitted", LoRA updates with verl's policy
loss. Training tasks: "Submit the word W as your answer." for four words
(bench/tasks/say_train.jsonl); held-out: the same instruction with four other words
(bench/tasks/say_heldout.jsonl), evaluated before training and every --eval-every iterations.
`--tasks read`: "Submit the word written in the file /workspace/note.txt as your answer." with
four words in training (bench/tasks/read_train.jsonl) and four others held out
(read_heldout.jsonl); the instruction is the same for all, so only reading the file (a tool
call, then `submit`) solves it: a multi-turn task, where GiGPO's step term can differ from GRPO.

Every (estimator, seed) is one training run in one store (default runs/train-smollm2/):
rerunning the bench resumes unfinished runs and reuses finished ones, so a long sweep can be
cut and continued. Runs go seed by seed, both estimators per seed, so a cut sweep still
compares them on the same seeds. The held-out curves of all runs go to OUT/heldout.png.

    python bench/train_smollm2.py [--tasks say|read] [--seeds 3] [--estimators gigpo,grpo]
        [--iterations 6] [--concurrency 16] [--json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from agentrm.rollout.tools import SUBMIT  # noqa: E402
from agentrm.traces import open_store  # noqa: E402
from agentrm.training.loop import TrainConfig, eval_run, train  # noqa: E402

POLICY = "transformers:smollm2?constrain=true&max_new_tokens=48&temperature=1.0"


# task files (training, held out), turn limit and run-id prefix of each bench
BENCHES = {"say": ("say_train.jsonl", "say_heldout.jsonl", 2, "smol"),
           "read": ("read_train.jsonl", "read_heldout.jsonl", 3, "read")}


def config(args: argparse.Namespace, estimator: str, seed: int, out: Path) -> TrainConfig:
    train_file, heldout_file, max_turns, prefix = BENCHES[args.tasks]
    return TrainConfig(tasks=str(ROOT / "bench/tasks" / train_file),
                       eval_tasks=str(ROOT / "bench/tasks" / heldout_file), policy=POLICY,
                       reward="outcome + 0.2*submitted", estimator=estimator,
                       iterations=args.iterations, group_size=args.group_size,
                       eval_group_size=args.group_size, max_turns=max_turns, lr=5e-4, lora_rank=16,
                       eval_every=args.eval_every, seed=seed, concurrency=args.concurrency,
                       run_id=f"{prefix}-{estimator}-s{seed}", out=out / f"ckpt-{estimator}-s{seed}")


def submitted_share(store: Any, run_id: str) -> float:
    """The share of the run's rollouts that called `submit` at least once."""
    trajs = list(store.iter_trajectories(run_id=run_id))
    called = sum(any(c.name == SUBMIT for turn in t.turns for c in turn.tool_calls) for t in trajs)
    return called / len(trajs) if trajs else float("nan")


def one(store: Any, args: argparse.Namespace, estimator: str, seed: int, out: Path) -> dict[str, Any]:
    cfg = config(args, estimator, seed, out)
    started = time.monotonic()
    result = train(store, cfg)
    evals = [{"after": e["after_iterations"], "success": e["success_rate"],
              "reward": e["train_reward_mean"], "valid": e["valid_tool_call_rate"],
              "submitted": submitted_share(store, eval_run(result.run_id, e["after_iterations"]))}
             for e in result.evaluations]
    stages = {name: [it["seconds"].get(name, 0.0) for it in result.iterations]
              for name in ("rollout", "score", "advantages", "update")}
    return {"estimator": estimator, "seed": seed, "run": result.run_id, "evaluations": evals,
            "iteration_s": {k: statistics.mean(v) for k, v in stages.items() if v},
            "eval_s": statistics.mean(e["seconds"] for e in result.evaluations),
            "train_reward": [it["train_reward_mean"] for it in result.iterations],
            "wall_s_this_call": time.monotonic() - started}


def plot(results: list[dict[str, Any]], path: Path) -> None:
    """Held-out success by iterations trained, one line per (estimator, seed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for r in results:
        style = "-" if r["estimator"] == "gigpo" else "--"
        ax.plot([e["after"] for e in r["evaluations"]], [e["success"] for e in r["evaluations"]],
                style, marker="o", color=f"C{r['seed']}", label=f"{r['estimator']} seed {r['seed']}")
    ax.set(xlabel="iterations trained", ylabel="held-out success rate", ylim=(-0.02, 1.02),
           title="SmolLM2-135M, held-out tasks")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", choices=sorted(BENCHES), default="say")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--estimators", default="gigpo,grpo", help="Comma-separated.")
    parser.add_argument("--iterations", type=int, default=6)
    parser.add_argument("--group-size", type=int, default=4)
    parser.add_argument("--eval-every", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=16,
                        help="Rollouts at a time (their model calls are decoded as one batch).")
    parser.add_argument("--out", type=Path, help="Default: runs/train-smollm2 (say), runs/train-read.")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    args.out = args.out or ROOT / ("runs/train-smollm2" if args.tasks == "say" else "runs/train-read")
    args.out.mkdir(parents=True, exist_ok=True)
    store = open_store(f"sqlite:///{args.out}/store.db")
    results = []
    for seed in range(args.seeds):
        for estimator in args.estimators.split(","):
            r = one(store, args, estimator, seed, args.out)
            results.append(r)
            (args.out / f"{r['run']}.json").write_text(json.dumps(r, indent=2))
            if not args.json:
                ev = "  ".join(f"{e['after']}:{e['success']:.3f}/{e['submitted']:.2f}" for e in r["evaluations"])
                s = r["iteration_s"]
                print(f"{estimator:6} seed {seed}  held-out success/submitted by iteration  {ev}", flush=True)
                print(f"{'':6} per iteration: rollout {s['rollout']:.0f} s, score {s['score']:.0f} s, "
                      f"update {s['update']:.0f} s; held-out evaluation {r['eval_s']:.0f} s", flush=True)
    plot(results, args.out / "heldout.png")
    if args.json:
        print(json.dumps(results, indent=2))
        return
    for estimator in args.estimators.split(","):
        mine = [r for r in results if r["estimator"] == estimator]
        before = [r["evaluations"][0]["success"] for r in mine]
        after = [r["evaluations"][-1]["success"] for r in mine]
        sub_b = [r["evaluations"][0]["submitted"] for r in mine]
        sub_a = [r["evaluations"][-1]["submitted"] for r in mine]
        gains = [a - b for a, b in zip(after, before, strict=True)]
        print(f"{estimator}: held-out success {statistics.mean(before):.3f} -> {statistics.mean(after):.3f} "
              f"(gain {statistics.mean(gains):+.3f}, min {min(gains):+.3f}, max {max(gains):+.3f} over "
              f"{len(mine)} seeds); submitted {statistics.mean(sub_b):.2f} -> {statistics.mean(sub_a):.2f}")


if __name__ == "__main__":
    main()
