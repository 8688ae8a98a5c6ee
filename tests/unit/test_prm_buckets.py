"""PRM forward batches chosen by length: one trajectory per forward on CPU; elsewhere sorted
buckets whose padding stays within MAX_PADDING of their real tokens; every item exactly once."""

from __future__ import annotations

import random

import pytest

from agentrm.verifiers.prm_hf import MAX_PADDING, _buckets


@pytest.mark.parametrize("seed", range(20))
def test_buckets_cover_each_item_once_and_bound_padding(seed):
    rng = random.Random(seed)
    lengths = [rng.randrange(1, 400) for _ in range(rng.randrange(1, 40))]
    for cpu in (True, False):
        buckets = _buckets(lengths, 8, cpu)
        assert sorted(i for b in buckets for i in b) == list(range(len(lengths)))
        assert all(1 <= len(b) <= (1 if cpu else 8) for b in buckets)
        for b in buckets:
            real = sum(lengths[i] for i in b)
            assert max(lengths[i] for i in b) * len(b) <= (1 + MAX_PADDING) * real + 1e-9
        flat = [lengths[i] for b in buckets for i in b]
        assert flat == sorted(flat)


def test_equal_lengths_share_a_batch_off_cpu():
    assert _buckets([100] * 10, 4, cpu=False) == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    assert _buckets([100, 300, 101], 8, cpu=False) == [[0, 2], [1]]
    assert _buckets([100] * 3, 8, cpu=True) == [[0], [1], [2]]
