"""Concurrent rollouts sharing one local model: the transformers backend decodes the calls
that arrive together as one batch and prefills their common prefix (system prompt and tool
list) once. Baseline, in the same process: the same calls one at a time (max_batch=1), which
is how the backend served them before.

N threads each ask the embedded SmolLM2 (tool grammar on) for a first turn on a different
builtin-style instruction, then a second turn with a tool output of their own, as a group of
rollouts does.

    python bench/policy_batching.py [--rows 8] [--repeat 2] [--max-new-tokens 48]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from agentrm.rollout.policies.transformers import TransformersPolicy  # noqa: E402
from agentrm.rollout.tools import TOOL_SCHEMAS  # noqa: E402

WORDS = "apple river stone cloud maple tiger piano ocean lemon cedar amber delta flint grove haven ivory".split()


def conversation(i: int, turn: int) -> list[dict]:
    messages = [{"role": "system", "content": "You are an agent in a Linux sandbox. Use the tools."},
                {"role": "user", "content": f"Submit the word {WORDS[i % len(WORDS)]} as your answer."}]
    if turn:
        call = {"id": "c0", "type": "function", "function": {"name": "bash", "arguments": '{"command": "ls"}'}}
        messages += [{"role": "assistant", "content": "", "tool_calls": [call]},
                     {"role": "tool", "tool_call_id": "c0", "content": "\n".join(f"file{j}.txt" for j in range(i + 1))}]
    return messages


def round_trip(policy: TransformersPolicy, rows: int) -> tuple[float, int]:
    """Seconds for `rows` concurrent rollouts' two turns; completion tokens."""
    tokens = [0] * rows

    def rollout(i: int) -> None:
        for turn in (0, 1):
            tokens[i] += policy.act(conversation(i, turn), TOOL_SCHEMAS).completion_tokens or 0

    started = time.perf_counter()
    threads = [threading.Thread(target=rollout, args=(i,)) for i in range(rows)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.perf_counter() - started, sum(tokens)


def arguments(doc: str | None) -> argparse.Namespace:
    """--rows, --repeat, --max-new-tokens (shared with bench/policy_vllm.py)."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=8, help="Concurrent rollouts.")
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--max-new-tokens", type=int, default=48)
    return parser.parse_args()


def main() -> None:
    args = arguments(__doc__)
    policies = {name: TransformersPolicy("smollm2", constrain=True, temperature=1.0, seed=0,
                                         max_new_tokens=args.max_new_tokens, max_batch=batch)
                for name, batch in (("one at a time", 1), ("batched", args.rows))}
    for policy in policies.values():
        policy.act(conversation(0, 0), TOOL_SCHEMAS)  # load and warm up
    times: dict[str, list[float]] = {name: [] for name in policies}
    for _ in range(args.repeat):  # alternate, so machine load hits both alike
        for name, policy in policies.items():
            seconds, tokens = round_trip(policy, args.rows)
            times[name].append(seconds)
            print(f"{name:14} {seconds:6.1f} s  {tokens} tokens  {tokens / seconds:5.1f} tok/s", flush=True)
    base, new = statistics.median(times["one at a time"]), statistics.median(times["batched"])
    print(f"{args.rows} rollouts x 2 turns: one at a time {base:.1f} s, batched {new:.1f} s "
          f"(median of {args.repeat}): {base / new:.2f}x")


if __name__ == "__main__":
    main()
