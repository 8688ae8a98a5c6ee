"""Create-to-first-output of a sandbox vs a plain `docker run` of the same image, same run.

    python bench/sandbox_startup.py [--n 10]

Both measure from the create call to the first byte of `echo hi` output (removal excluded).
Goal (issue 3): within 1.2x of plain docker run.
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time

from agentrm.sandboxes import DockerSandbox, SandboxConfig, base_image
from agentrm.sandboxes.engine import client


def sandbox_once(image: str) -> float:
    first = threading.Event()
    t = time.perf_counter()
    box = DockerSandbox(SandboxConfig(image=image, run_id="bench"))
    box.exec("echo hi", on_output=lambda fd, data: first.set())
    elapsed = time.perf_counter() - t
    box.close()
    assert first.is_set()
    return elapsed


def docker_run_once(image: str) -> float:
    api = client().api
    t = time.perf_counter()
    cid = api.create_container(image, ["echo", "hi"], labels={"agentrm": "1"})["Id"]
    sock = api.attach_socket(cid, params={"stdout": 1, "stream": 1})
    api.start(cid)
    raw = getattr(sock, "_sock", sock)
    data = raw.recv(64)
    elapsed = time.perf_counter() - t
    assert data
    raw.close()
    api.remove_container(cid, force=True)
    return elapsed


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=10)
    args = ap.parse_args()
    image = base_image()
    sandbox_once(image), docker_run_once(image)  # warm up
    ours, base = [], []
    for _ in range(args.n):  # interleaved so load changes hit both alike
        ours.append(sandbox_once(image))
        base.append(docker_run_once(image))
    mo, mb = statistics.median(ours), statistics.median(base)
    print(f"sandbox create -> first output   n={args.n}  median {mo * 1e3:7.1f} ms  min {min(ours) * 1e3:7.1f} ms")
    print(f"plain docker run -> first output n={args.n}  median {mb * 1e3:7.1f} ms  min {min(base) * 1e3:7.1f} ms")
    print(f"ratio sandbox / docker run (median): {mo / mb:.2f}x   goal <= 1.2x: {'met' if mo / mb <= 1.2 else 'NOT met'}")


if __name__ == "__main__":
    main()
