"""Create + command + remove throughput with 1, 2 and 4 workers, against plain
`docker run --rm`-style containers (create, start, wait, remove) with the same workers.

    python bench/sandbox_throughput.py [--tasks 16]
"""

from __future__ import annotations

import argparse
import time
from concurrent.futures import ThreadPoolExecutor

from agentrm.sandboxes import SandboxConfig, SandboxPool, base_image
from agentrm.sandboxes.engine import client


def plain(image: str) -> None:
    api = client().api
    cid = api.create_container(image, ["echo", "hi"], labels={"agentrm": "1"})["Id"]
    api.start(cid)
    api.wait(cid)
    api.remove_container(cid, force=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tasks", type=int, default=16)
    args = ap.parse_args()
    image = base_image()
    cfg = SandboxConfig(image=image, run_id="bench")
    print(f"{'workers':>7} {'sandbox/s':>10} {'docker run/s':>13} {'ratio':>6}")
    for workers in (1, 2, 4):
        t = time.perf_counter()
        with SandboxPool(max_workers=workers, cfg=cfg, stagger_s=0) as pool:
            outs = pool.map(lambda box, i: box.exec("echo hi").stdout, range(args.tasks))
        ours = args.tasks / (time.perf_counter() - t)
        assert outs == ["hi\n"] * args.tasks
        t = time.perf_counter()
        with ThreadPoolExecutor(workers) as ex:
            list(ex.map(lambda _: plain(image), range(args.tasks)))
        base = args.tasks / (time.perf_counter() - t)
        print(f"{workers:>7} {ours:>10.2f} {base:>13.2f} {ours / base:>6.2f}")


if __name__ == "__main__":
    main()
