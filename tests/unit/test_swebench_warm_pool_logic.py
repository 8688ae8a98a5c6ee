"""The warm pool's bookkeeping, with a fake sandbox maker (the Docker side is in
tests/integration/test_swebench_warm_pool.py (Docker)): expected sandboxes start ahead up to the pool
size, a request takes a started one and the next expected one starts, an unexpected request
starts its own, nothing is handed out twice, and close removes what was never handed out."""

from __future__ import annotations

import threading
import time

import pytest

from agentrm.errors import InputError
from agentrm.evals.swebench.warm_pool import WarmPool
from agentrm.sandboxes.config import SandboxConfig


class Box:
    def __init__(self, config):
        self.config, self.closed = config, False

    def close(self):
        self.closed = True


class Maker:
    def __init__(self, delay: float = 0.0):
        self.delay, self.made, self.lock = delay, [], threading.Lock()

    def __call__(self, config):
        time.sleep(self.delay)
        box = Box(config)
        with self.lock:
            self.made.append(box)
        return box


def wait_for(cond, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_expected_sandboxes_start_ahead_and_refill():
    maker = Maker()
    a, b = SandboxConfig(image="img:a"), SandboxConfig(image="img:b")
    with WarmPool(size=2, make=maker) as pool:
        for config in (a, a, b):
            pool.expect(config)
        wait_for(lambda: len(maker.made) == 2)  # two ahead, the third waits for room
        first = pool(a)
        assert first.config == a and pool.hits == 1
        wait_for(lambda: len(maker.made) == 3)  # taking one made room for the next expected
        second, third = pool(a), pool(b)
        assert pool.hits + pool.waits == 3 and pool.misses == 0
        assert len({id(x) for x in (first, second, third)}) == 3  # never handed out twice
        other = pool(SandboxConfig(image="img:c"))  # not expected: started on demand
        assert pool.misses == 1 and other.config.image == "img:c"


def test_a_request_waits_for_an_expected_start_in_flight():
    maker = Maker(delay=0.3)
    config = SandboxConfig(image="img:a")
    with WarmPool(size=1, make=maker) as pool:
        pool.expect(config)
        box = pool(config)  # still starting: claimed, not started a second time
        assert box.config == config and pool.waits == 1 and len(maker.made) == 1


def test_close_removes_sandboxes_never_handed_out():
    maker = Maker()
    pool = WarmPool(size=3, make=maker)
    for _ in range(3):
        pool.expect(SandboxConfig(image="img:a"))
    wait_for(lambda: len(maker.made) == 3)
    taken = pool(SandboxConfig(image="img:a"))
    pool.close()
    assert not taken.closed and all(b.closed for b in maker.made if b is not taken)
    pool.expect(SandboxConfig(image="img:a"))  # closed: nothing starts any more
    time.sleep(0.05)
    assert len(maker.made) == 3


def test_size_must_be_positive():
    with pytest.raises(InputError, match="warm pool size"):
        WarmPool(size=0)


def test_sandboxes_that_waited_too_long_are_replaced():
    maker = Maker()
    config = SandboxConfig(image="img:a")
    with WarmPool(size=1, make=maker, max_idle_s=0.05) as pool:
        pool.expect(config)
        wait_for(lambda: len(maker.made) == 1)
        time.sleep(0.1)  # its wall clock ran while it waited
        box = pool(config)
        assert maker.made[0].closed and box is not maker.made[0] and pool.misses == 1
