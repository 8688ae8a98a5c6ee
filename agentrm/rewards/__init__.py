"""The rewards stage: stored scores → per-turn rewards.

Pure numpy: `aggregate` (step scores → one value), `transforms` (clip, delta, min-form, gate),
`combine` (a SPEC of weighted, transformed scorers → one reward per turn). `stored` turns the
combined table into `combined` Score rows in the trace store, keyed by the spec's hash, which is
what `agentrm advantages --reward SPEC` reads.
"""

from agentrm.rewards.combine import Spec, TrajectoryRewards, combine_scores, parse_spec

__all__ = ["Spec", "TrajectoryRewards", "combine_scores", "parse_spec"]
