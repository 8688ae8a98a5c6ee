"""Which queued model calls the transformers backend decodes together (pick_batch), and the
common prefix it prefills once; pure functions, no model."""

from __future__ import annotations

from agentrm.rollout.policies.transformers import (
    MAX_PADDING,
    _Request,
    common_prefix_of,
    pick_batch,
)


def req(n: int, budget: int = 48) -> _Request:
    return _Request(list(range(n)), (), budget)


def test_the_oldest_call_is_always_served_and_the_batch_is_capped():
    pending = [req(500) for _ in range(20)]
    batch = pick_batch(pending, 16)
    assert batch[0] is pending[0] and len(batch) == 16
    assert pick_batch([], 16) == []


def test_one_long_prompt_does_not_pad_every_row():
    """A 4,000-token prompt (a big tool output) among 500-token ones: batched together, every
    row would be padded to 4,000 tokens; it goes alone, and the short ones go together."""
    long, short = req(4000), [req(500 + i) for i in range(10)]
    assert pick_batch([long, *short], 16) == [long]
    batch = pick_batch([*short, long], 16)
    assert long not in batch and len(batch) == 10
    rows = max(len(r.ids) for r in batch) * len(batch)
    assert rows <= MAX_PADDING * sum(len(r.ids) for r in batch)


def test_closest_lengths_join_first_and_budgets_never_mix():
    first, near, far, other_budget = req(500), req(540), req(800), req(505, budget=10)
    batch = pick_batch([first, far, other_budget, near], 16)
    assert batch == [first, near]  # 800 would pad both to 800: 2,400 slots for 1,840 tokens


def test_common_prefix_of_many_prompts():
    assert common_prefix_of([[1, 2, 3, 4], [1, 2, 3], [1, 2, 9, 4]]) == 2
    assert common_prefix_of([[5, 6]]) == 2
    assert common_prefix_of([[1, 2], [3]]) == 0
