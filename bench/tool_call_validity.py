"""Benchmark: share of SmolLM2-135M turns on the builtin tasks that are valid tool calls.

    python bench/tool_call_validity.py [--samples 2] [--max-new-tokens 256] [--threads 1]

Each builtin task's opening conversation (the rollout's own system prompt and the task) goes to
the transformers policy, `--samples` times per mode, sampling at the policy's default
temperature. A turn is valid when it has at least one tool call and every call would run
(`agentrm.rollout.tools.call_error` is None: known tool, JSON object arguments, required keys,
right types). Modes, all in one process on one loaded model:
  before        tool_call format, free decoding (today's default)
  constrained   tool_call format, xgrammar-constrained (constrain=true)
  bash          mini-swe-agent's one-bash-block format, free decoding
  bash+grammar  the bash-block format, constrained
Only opening turns are measured: later turns need the sandbox's real output (no Docker here).
"""

from __future__ import annotations

import argparse
import time

from agentrm.rollout.loop import initial_messages
from agentrm.rollout.policies.transformers import TransformersPolicy
from agentrm.rollout.tools import TOOL_SCHEMAS, call_error
from agentrm.tasks import load_tasks
from agentrm.types import ToolCall

MODES = {"before": {}, "constrained": {"constrain": True},
         "bash": {"action_format": "bash_block"},
         "bash+grammar": {"action_format": "bash_block", "constrain": True}}


def problem(message: dict) -> str | None:
    """Why the turn is not a valid tool call (None: it is)."""
    calls = [ToolCall.from_message(c) for c in message.get("tool_calls") or []]
    if not calls:
        return "no tool call"
    return next((e for e in map(call_error, calls) if e), None)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=2, help="generations per task and mode")
    ap.add_argument("--max-new-tokens", type=int, default=256)  # the policy's default
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--modes", default=",".join(MODES))
    ap.add_argument("--show-failures", action="store_true")
    args = ap.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    from importlib.resources import files

    tasks = load_tasks(str(files("agentrm.tasks") / "builtin.yaml"))
    base = TransformersPolicy("smollm2", max_new_tokens=args.max_new_tokens, seed=0)
    base._load()
    results = {}
    for mode in args.modes.split(","):
        policy = TransformersPolicy("smollm2", max_new_tokens=args.max_new_tokens, seed=0, **MODES[mode])
        policy._model, policy._tokenizer, policy.max_context = base._model, base._tokenizer, base.max_context
        ok = n = 0
        start = time.perf_counter()
        example = ""
        for task in tasks:
            for _ in range(args.samples):
                out = policy.act(initial_messages(task), TOOL_SCHEMAS)
                why = problem(out.message)
                ok, n = ok + (why is None), n + 1
                if why is None and not example:
                    example = out.raw["text"][:90]
                if why is not None and args.show_failures:
                    cut = " (token budget reached)" if out.completion_tokens >= args.max_new_tokens else ""
                    print(f"    {mode} {task.id}: {why}{cut}: {out.raw['text'][:100]!r}", flush=True)
        results[mode] = (ok, n, time.perf_counter() - start)
        print(f"{mode:<13} {ok:3d}/{n:<3d} valid = {ok / n:6.1%}   ({results[mode][2]:.0f} s)  e.g. {example!r}",
              flush=True)
    if "before" in results and "constrained" in results:
        before, after = (results[m][0] / results[m][1] for m in ("before", "constrained"))
        print(f"valid tool calls: before {before:.1%} -> constrained {after:.1%} (goal >= 95%)")


if __name__ == "__main__":
    main()
