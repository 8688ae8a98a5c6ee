"""Benchmark: information-gain beliefs on 10-turn trajectories, fast path vs naive.

Fast = one KV cache per trajectory walked along the turns (each conversation token encoded
once, LM head only on the answer rows); naive = T independent forward passes per trajectory,
both as a plain forward (LM head on every position) and with the LM head restricted to the
answer rows (the stricter baseline). Same model, same process, same probes; the beliefs must
agree. Prints wall-clock seconds, tokens run and the speed-ups.

    python bench/info_gain.py [--model smollm2] [--trajectories 4] [--turns 10] [--obs-lines 12]
"""

from __future__ import annotations

import argparse
import json
import random
import time

from agentrm.types import ExitStatus, Trajectory, Turn


def synthetic_trajectory(index: int, turns: int, obs_lines: int, seed: int = 0) -> Trajectory:
    """A plausible research-agent rollout: shell commands and their (deterministic) output."""
    rng = random.Random(seed * 1000 + index)
    words = "alpha beta gamma delta file config test error result value path module import".split()
    obs = [{"role": "system", "content": "You are an agent with a bash tool. Answer inside <answer></answer>."},
           {"role": "user", "content": f"Task {index}: which module defines the value used by the failing test?"}]
    out = []
    for t in range(turns):
        command = f"grep -rn {rng.choice(words)} src/ | head -{obs_lines}"
        call = {"id": f"c{t}", "type": "function", "function": {"name": "bash", "arguments": json.dumps({"command": command})}}
        thought = " ".join(rng.choice(words) for _ in range(20))
        out.append(Turn(t, obs, {"role": "assistant", "content": f"Thinking: {thought}", "tool_calls": [call]}))
        lines = [f"src/{rng.choice(words)}/{rng.choice(words)}.py:{rng.randint(1, 400)}: "
                 + " ".join(rng.choice(words) for _ in range(8)) for _ in range(obs_lines)]
        obs = [{"role": "tool", "tool_call_id": f"c{t}", "content": "\n".join(lines)}]
    return Trajectory(f"bench-{index}", "bench", "g", turns=out, tail=obs, exit_status=ExitStatus.SUBMITTED,
                      answer="src/config/value.py", reward=1.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2")
    parser.add_argument("--device", default=None)
    parser.add_argument("--trajectories", type=int, default=4)
    parser.add_argument("--turns", type=int, default=10)
    parser.add_argument("--obs-lines", type=int, default=12)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (1: two threads spin-wait on a busy 2-core machine)")
    args = parser.parse_args()

    import torch

    from agentrm.verifiers.info_gain import InfoGainConfig, build_probe, contexts
    from agentrm.verifiers.info_gain_backends import TransformersBeliefs

    torch.set_num_threads(args.threads)
    fast = TransformersBeliefs.load(args.model, args.device, fast=True)
    naive = TransformersBeliefs(fast.model, fast.tokenizer, fast=False)
    plain = TransformersBeliefs(fast.model, fast.tokenizer, fast=False, full_logits=True)
    cfg = InfoGainConfig()
    trajs = [synthetic_trajectory(i, args.turns, args.obs_lines) for i in range(args.trajectories)]
    probes = [[build_probe(fast.tokenizer, c, t.answer, cfg) for c in contexts(t)] for t in trajs]
    conv_tokens = sum(len(p[-1].ids) for p in probes)

    timings = {"fast": [], "naive": [], "plain": []}
    results = {}
    for backend in (plain, naive, fast):  # warm-up (allocator, kernels) on two short probes
        backend.mean_logprobs([probes[0][:2]])
    for _ in range(args.repeats):
        for name, backend in (("plain", plain), ("naive", naive), ("fast", fast)):
            backend.tokens_run = 0
            start = time.perf_counter()
            results[name] = backend.mean_logprobs(probes)
            timings[name].append(time.perf_counter() - start)
    worst = max(abs(a - b) for other in ("naive", "plain")
                for ra, rb in zip(results["fast"], results[other], strict=True) for a, b in zip(ra, rb, strict=True))
    t_fast, t_naive, t_plain = min(timings["fast"]), min(timings["naive"]), min(timings["plain"])
    print(f"model={args.model} trajectories={args.trajectories} turns={args.turns} "
          f"tokens/trajectory≈{conv_tokens // len(trajs)} threads={torch.get_num_threads()}")
    print(f"naive, plain forward (all logits): {t_plain:.2f} s, {plain.tokens_run} tokens run")
    print(f"naive, answer logits only        : {t_naive:.2f} s, {naive.tokens_run} tokens run")
    print(f"fast (shared-prefix KV cache)    : {t_fast:.2f} s, {fast.tokens_run} tokens run")
    print(f"max |belief fast − naive| = {worst:.2e}")
    print(f"speed-up vs plain T passes: {t_plain / t_fast:.2f}x; vs answer-logits T passes: "
          f"{t_naive / t_fast:.2f}x (tokens {naive.tokens_run / fast.tokens_run:.2f}x)")


if __name__ == "__main__":
    main()
