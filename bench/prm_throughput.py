"""PRM scoring throughput: one pass per trajectory vs re-encoding every prefix.

    python bench/prm_throughput.py [--trajectories 4] [--steps 20] [--style token-cls]
                                   [--hidden 512] [--layers 4] [--threads N] [--model PATH]

Both paths use the same model, the same token ids and the same process:
  ours   PRMScorer.score: one forward pass per trajectory (bucketed batches), read every step
  naive  for every step k, a separate forward pass over the prefix ending at step k's separator
It prints steps scored per second for both and the ratio (goal ≥ 10×), checks that both give
the same scores, and reports the achieved FLOP/s of the scoring forward pass as a fraction of
a large fp32 torch matmul measured in the same run.

Batching (`--loop-compare`, on by default): `agentrm score`'s PRM at the CLI's batch size 8
vs a plain transformers loop, one unbatched forward per trajectory (same model, same ids, head
at the read-out positions), on trajectories of mixed lengths (--steps/2 … --steps turns).
Prints turns/s of both and the ratio (goal ≥ 1: agentrm at least as fast as the loop).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path


def matmul_flops(n: int = 2048, repeats: int = 5) -> float:
    import torch

    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b  # warm-up
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * n ** 3 * repeats / (time.perf_counter() - start)


def forward_flops(config, lengths: list[int]) -> float:
    """≈ 2·(non-embedding params)·T + causal attention 2·L·T²·d per sequence (Kaplan et al.)."""
    h, inter, layers = config.hidden_size, config.intermediate_size, config.num_hidden_layers
    kv = config.num_key_value_heads * (h // config.num_attention_heads)
    per_layer = h * h * 2 + 2 * h * kv + 3 * h * inter  # q, o, k, v, gate/up/down
    return sum(2 * layers * per_layer * t + 2 * layers * t * t * h for t in lengths)


def naive(scorer, trajs) -> tuple[list[float], float]:
    """Every prefix through the same backbone and head, one at a time."""
    import torch

    from agentrm.verifiers.prm_hf import readouts

    backbone, head = scorer._backend.backbone, scorer._backend.head
    encs = [scorer._formatter.encode(t) for t in trajs]
    out = []
    start = time.perf_counter()
    for enc in encs:
        for pos in enc.read_at:
            ids = torch.tensor([enc.ids[: pos + 1]], device=backbone.device)
            with torch.inference_mode():
                h = backbone.hidden(ids, torch.ones_like(ids))[0, -1:]
            out.append(readouts(head(h.float().cpu()), scorer.cfg.style)[0][0])
    return out, time.perf_counter() - start


def plain_loop(scorer, trajs) -> tuple[list[float], float]:
    """Per trajectory: tokenise (the same formatter), one unbatched transformers forward, the
    head at the read-out positions."""
    import torch

    from agentrm.verifiers.prm_hf import readouts

    backbone, head = scorer._backend.backbone, scorer._backend.head
    out = []
    start = time.perf_counter()
    for traj in trajs:  # tokenising is part of the loop's work, as it is of agentrm's
        enc = scorer._formatter.encode(traj)
        ids = torch.tensor([enc.ids], device=backbone.device)
        with torch.inference_mode():
            h = backbone.model(input_ids=ids).last_hidden_state[0]
            out.extend(v[0] for v in readouts(head(h[[p for p in enc.read_at]].float().cpu()),
                                              scorer.cfg.style))
    return out, time.perf_counter() - start


def loop_compare(model: str, style: str, n: int, steps: int, words: int, repeat: int = 3) -> None:
    from agentrm.verifiers.prm import make_scorer
    from agentrm.verifiers.prm_tiny import sample_trajectory

    trajs = [sample_trajectory(f"m{i}", steps // 2 + (i * 7919) % (steps - steps // 2 + 1), seed=i,
                               words=words) for i in range(n)]
    turns = sum(len(t.turns) for t in trajs)
    scorer = make_scorer(model=model, style=style, batch_size=8)  # the CLI's default
    scorer.load()
    scorer.score(trajs[:2])  # warm-up
    t_ours = t_loop = float("inf")
    for _ in range(repeat):  # interleaved, best of: the machine is shared
        start = time.perf_counter()
        rows = scorer.score(trajs)
        t_ours = min(t_ours, time.perf_counter() - start)
        ref, t = plain_loop(scorer, trajs)
        t_loop = min(t_loop, t)
    ours = [r.value for r in rows if r.turn_index is not None]
    diff = max(abs(a - b) for a, b in zip(ours, ref, strict=True))
    print(f"batching: {n} trajectories, {turns} turns, {steps // 2}-{steps} turns each")
    print(f"  agentrm PRM (batch 8, chosen by length) : {turns / t_ours:8.1f} turns/s")
    print(f"  plain loop, one forward per trajectory  : {turns / t_loop:8.1f} turns/s")
    print(f"  ratio agentrm / loop                    : {t_loop / t_ours:8.2f}x (goal >= 1); "
          f"max |diff| {diff:.1e}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trajectories", type=int, default=4)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--words", type=int, default=12, help="extra words per tool output")
    parser.add_argument("--context-words", type=int, default=0,
                        help="extra words in the system prompt (tool descriptions)")
    parser.add_argument("--style", default="token-cls", choices=["token-cls", "tag", "value"])
    parser.add_argument("--hidden", type=int, default=512)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--model", default=None, help="an existing checkpoint instead of a random one")
    parser.add_argument("--loop-trajectories", type=int, default=32,
                        help="trajectories for the batching comparison (0 = skip it)")
    parser.add_argument("--only-loop", action="store_true", help="run only the batching comparison")
    args = parser.parse_args()

    import torch

    from agentrm.verifiers.prm import make_scorer
    from agentrm.verifiers.prm_tiny import build_tiny_prm, sample_trajectory

    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        model = args.model or str(build_tiny_prm(Path(tmp) / "m", args.style, layers=args.layers,
                                                 hidden=args.hidden, heads=max(1, args.hidden // 64)))
        if args.loop_trajectories:
            loop_compare(model, args.style, args.loop_trajectories, args.steps, args.words)
        if args.only_loop:
            return
        scorer = make_scorer(model=model, style=args.style, batch_size=args.batch_size)
        trajs = [sample_trajectory(f"t{i}", args.steps, seed=i, words=args.words,
                                   context_words=args.context_words)
                 for i in range(args.trajectories)]
        scorer.load()
        scorer.score(trajs[:1])  # warm-up
        start = time.perf_counter()
        rows = scorer.score(trajs)
        before = time.perf_counter() - start
        reference, naive_s = naive(scorer, trajs)
        start = time.perf_counter()  # again after the baseline: a shared machine's load drifts
        scorer.score(trajs)
        ours_s = (before + time.perf_counter() - start) / 2
        peak = matmul_flops()
        config = scorer._backend.backbone.model.config
        encs = [scorer._formatter.encode(t) for t in trajs]
        lengths = [len(e.ids) for e in encs]
        prefix_tokens = sum(p + 1 for e in encs for p in e.read_at)

    ours = [r.value for r in rows if r.turn_index is not None]
    diff = max(abs(a - b) for a, b in zip(ours, reference, strict=False))
    steps = args.trajectories * args.steps
    achieved = forward_flops(config, lengths) / ours_s
    print(f"model: hidden {config.hidden_size}, {config.num_hidden_layers} layers, style {args.style}; "
          f"{args.trajectories} trajectories × {args.steps} steps, mean {sum(lengths) / len(lengths):.0f} "
          f"tokens; torch threads {torch.get_num_threads()}")
    print(f"one pass per trajectory : {steps / ours_s:10.1f} steps/s ({ours_s:.3f} s)")
    print(f"naive, every prefix     : {steps / naive_s:10.1f} steps/s ({naive_s:.3f} s)")
    print(f"speed-up                : {naive_s / ours_s:10.1f}x  (goal >= 10x); max |score diff| {diff:.2e}")
    print(f"token ratio (bound if linear cost): {prefix_tokens / sum(lengths):.1f}x "
          "(naive tokens / one-pass tokens; attention makes the bound lower)")
    print(f"scoring forward FLOP/s  : {achieved / 1e9:10.2f} GFLOP/s")
    print(f"matmul 2048² fp32       : {peak / 1e9:10.2f} GFLOP/s -> fraction {achieved / peak:.2f}")


if __name__ == "__main__":
    main()
