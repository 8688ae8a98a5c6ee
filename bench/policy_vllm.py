"""Concurrent rollouts sharing one in-process vLLM engine: calls that arrive while the engine
is busy are generated as one batch. Baseline, in the same process and on the same engine: the
same calls one at a time (a lock around `act`), which is how the vLLM policy served them before.
For reference, the transformers backend's own batching on the same calls.

N threads each ask the embedded SmolLM2 (tool grammar on, float32) for a first turn and then a
second turn with a tool output of their own, as a group of rollouts does.

    VLLM_CPU_KVCACHE_SPACE=2 python bench/policy_vllm.py [--rows 8] [--repeat 2]
"""

from __future__ import annotations

import os
import statistics
import sys
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "2")  # GiB, not a share of the free memory

from policy_batching import arguments, conversation, round_trip  # noqa: E402

from agentrm.rollout.policies import make_policy  # noqa: E402
from agentrm.rollout.tools import TOOL_SCHEMAS  # noqa: E402


class OneAtATime:
    """The policy with its calls serialised: one request per engine call."""

    def __init__(self, policy):
        self.policy, self.lock = policy, threading.Lock()

    def act(self, messages, tools):
        with self.lock:
            return self.policy.act(messages, tools)


def main() -> None:
    args = arguments(__doc__)
    options = f"constrain=true&temperature=1.0&max_new_tokens={args.max_new_tokens}"
    vllm = make_policy(f"vllm:smollm2?{options}&dtype=float32&max_model_len=4096&seed=0")
    local = make_policy(f"transformers:smollm2?{options}&max_batch={args.rows}&seed=0")
    policies = {"vLLM one at a time": OneAtATime(vllm), "vLLM batched": vllm, "transformers batched": local}
    for policy in (vllm, local):
        policy.act(conversation(0, 0), TOOL_SCHEMAS)  # load and warm up
    times: dict[str, list[float]] = {name: [] for name in policies}
    for _ in range(args.repeat):  # alternate, so machine load hits all alike
        for name, policy in policies.items():
            seconds, tokens = round_trip(policy, args.rows)  # type: ignore[arg-type]
            times[name].append(seconds)
            print(f"{name:21} {seconds:6.1f} s  {tokens} tokens  {tokens / seconds:5.1f} tok/s", flush=True)
    med = {name: statistics.median(t) for name, t in times.items()}
    print(f"{args.rows} rollouts x 2 turns (median of {args.repeat}): vLLM one at a time "
          f"{med['vLLM one at a time']:.1f} s, batched {med['vLLM batched']:.1f} s: "
          f"{med['vLLM one at a time'] / med['vLLM batched']:.2f}x; transformers batched "
          f"{med['transformers batched']:.1f} s (vLLM batched is "
          f"{med['transformers batched'] / med['vLLM batched']:.2f}x of its speed)")
    vllm.close()


if __name__ == "__main__":
    main()
