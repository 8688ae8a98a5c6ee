"""Does `agentrm train` learn what its reward says? A controlled run where the signal exists:
a tiny random-weight policy, a reward it earns about half the time by chance (`token-parity`:
the first token id it samples is even), N iterations of the real loop
(rollouts, scoring, advantages, dynamic sampling, verl's policy loss on the stored ids), and
the held-out reward (other sampling seeds, same tasks) before and after, for GiGPO and GRPO
over several seeds. The baseline is the untrained policy on the same held-out seeds.

Sandboxes are local directories (agentrm.testing.DirSandbox): the sandbox is not what is
measured here; `agentrm train` runs the same loop in Docker.

    python bench/train_learns.py [--iterations 10] [--seeds 3] [--estimators gigpo,grpo]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "data" / "rollout"))
from tiny_model import build_tiny_model  # noqa: E402

from agentrm.testing import DirSandbox  # noqa: E402
from agentrm.traces import open_store  # noqa: E402
from agentrm.training.loop import TrainConfig, train  # noqa: E402
from agentrm.verifiers.registry import register  # noqa: E402


def one(model: Path, tmp: Path, estimator: str, seed: int, iterations: int) -> dict:
    tasks = tmp / "tasks.jsonl"
    tasks.write_text("".join(json.dumps({"id": f"t{i}", "instruction": f"Count the lines of file {i}.",
                                         "answer": "3"}) + "\n" for i in range(4)))
    store = open_store(f"sqlite:///{tmp}/{estimator}-{seed}.db")
    config = TrainConfig(tasks=str(tasks), eval_tasks=str(tasks), eval_group_size=8,
                         eval_every=iterations, policy=f"transformers:{model}?max_new_tokens=8&temperature=1.0",
                         iterations=iterations, group_size=4, max_turns=1, reward="token-parity",
                         estimator=estimator, lr=1e-3, lora_rank=0, epochs=4, seed=seed,
                         run_id=f"learn-{estimator}-{seed}", out=tmp / f"ckpt-{estimator}-{seed}")
    started = time.monotonic()
    result = train(store, config, sandbox_factory=lambda c: DirSandbox(tmp / "ws" / uuid.uuid4().hex))
    before, after = result.evaluations[0], result.evaluations[-1]
    per_iteration = [it["seconds"] for it in result.iterations]
    return {"before": before["train_reward_mean"], "after": after["train_reward_mean"],
            "curve": [it["train_reward_mean"] for it in result.iterations],
            "seconds": time.monotonic() - started,
            "update_s": statistics.mean(s["update"] for s in per_iteration),
            "rollout_s": statistics.mean(s["rollout"] for s in per_iteration)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--iterations", type=int, default=10)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--estimators", default="gigpo,grpo", help="Comma-separated.")
    args = parser.parse_args()
    register("token-parity", "agentrm.testing:make_token_parity_scorer", (), "bench reward")
    tmp = Path(tempfile.mkdtemp(prefix="train-learns-"))
    model = build_tiny_model(tmp / "model")
    print(f"{'estimator':9} {'seed':>4} {'held-out before':>15} {'after':>6} {'s':>6}  training curve")
    summary: dict[str, list[tuple[float, float]]] = {}
    for estimator in args.estimators.split(","):
        for seed in range(args.seeds):
            r = one(model, tmp, estimator, seed, args.iterations)
            summary.setdefault(estimator, []).append((r["before"], r["after"]))
            curve = " ".join(f"{v:.2f}" for v in r["curve"])
            print(f"{estimator:9} {seed:>4} {r['before']:15.3f} {r['after']:6.3f} {r['seconds']:6.0f}  {curve}")
    for estimator, pairs in summary.items():
        gains = [a - b for b, a in pairs]
        print(f"{estimator}: held-out reward {statistics.mean(b for b, _ in pairs):.3f} -> "
              f"{statistics.mean(a for _, a in pairs):.3f} (gain {statistics.mean(gains):+.3f}, "
              f"min {min(gains):+.3f}, max {max(gains):+.3f} over {len(pairs)} seeds; "
              f"ratio after/before {statistics.mean(a for _, a in pairs) / max(1e-9, statistics.mean(b for b, _ in pairs)):.2f})")


if __name__ == "__main__":
    main()
