"""Reward server under a mixed load: do small requests keep their latency while one client
sends a 56 MiB body?

`agentrm serve` runs as a subprocess on 127.0.0.1 (answer scorer). Baseline: 199 small /score
requests (4 trajectories each) from 4 client threads on an idle server. Then the same 199 plus
one 56 MiB /score body (a trajectory with one huge tool output) started early in the run.
Prints p50/p99/max of the small requests in both runs and the ratio of their p99s (goal ≤ 2).

    python3 bench/serve_load.py [--small 199] [--clients 4] [--big-mib 56] [--rounds 3]
                                [--large-body-mb 4]   (0: everything in one process, for contrast)
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor


def record(tid: str, answer: str, observation: str = "submitted") -> dict:
    call = {"id": "c1", "type": "function",
            "function": {"name": "submit", "arguments": json.dumps({"answer": answer})}}
    return {"id": tid, "task_id": "add", "group_id": "g", "reward": None, "answer": "4", "metadata": {},
            "messages": [{"role": "user", "content": "What is 2 + 2?"},
                         {"role": "assistant", "content": "", "tool_calls": [call]},
                         {"role": "tool", "tool_call_id": "c1", "content": observation}]}


SMALL = json.dumps({"trajectories": [record(f"t{i}", str(3 + i % 2)) for i in range(4)]}).encode()


def big_body(mib: float) -> bytes:
    filler = "x" * int(mib * (1 << 20))
    return json.dumps({"trajectories": [record("big", "4", filler)]}).encode()


def post(port: int, body: bytes, timeout: float = 120.0) -> tuple[int, float]:
    start = time.perf_counter()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("POST", "/score", body=body, headers={"Content-Type": "application/json"})
        response = conn.getresponse()
        response.read()
        return response.status, time.perf_counter() - start
    finally:
        conn.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(port: int, large_body_mb: float) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-m", "agentrm.cli.main", "serve", "--scorer",
                             "answer?mode=numeric", "--port", str(port),
                             "--large-body-mb", str(large_body_mb)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=dict(os.environ))
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/health")
            if conn.getresponse().status == 200:
                return proc
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise SystemExit(f"server did not start: {proc.stderr.read().decode()[-2000:]}")


def run(port: int, small: int, clients: int, big: bytes | None) -> tuple[list[float], tuple | None]:
    """Latencies of the small requests; (status, seconds) of the big one."""
    latencies: list[float] = []
    big_result: list[tuple[int, float]] = []
    started = threading.Event()

    def send_big():
        started.wait()
        big_result.append(post(port, big))

    thread = threading.Thread(target=send_big) if big is not None else None
    if thread:
        thread.start()

    def one(i: int) -> float:
        if i == small // 10:
            started.set()  # the big body starts once the small ones are flowing
        status, seconds = post(port, SMALL)
        if status != 200:
            raise RuntimeError(f"small request got {status}")
        return seconds

    with ThreadPoolExecutor(clients) as pool:
        latencies = list(pool.map(one, range(small)))
    if thread:
        started.set()
        thread.join()
    return latencies, (big_result[0] if big_result else None)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--small", type=int, default=199)
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--big-mib", type=float, default=56.0)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--large-body-mb", type=float, default=4.0)
    args = ap.parse_args()
    port = free_port()
    proc = start_server(port, args.large_body_mb)
    big = big_body(args.big_mib)
    try:
        run(port, 40, args.clients, None)  # warm-up
        idle_p99, loaded_p99 = [], []
        for r in range(args.rounds):
            idle, _ = run(port, args.small, args.clients, None)
            loaded, (status, seconds) = run(port, args.small, args.clients, big)
            idle_p99.append(pct(idle, 0.99))
            loaded_p99.append(pct(loaded, 0.99))
            print(f"round {r + 1}: idle p50 {statistics.median(idle) * 1e3:.1f} ms "
                  f"p99 {pct(idle, 0.99) * 1e3:.1f} ms max {max(idle) * 1e3:.1f} ms | "
                  f"with {len(big) / (1 << 20):.0f} MiB body: p50 {statistics.median(loaded) * 1e3:.1f} ms "
                  f"p99 {pct(loaded, 0.99) * 1e3:.1f} ms max {max(loaded) * 1e3:.1f} ms | "
                  f"big: HTTP {status} in {seconds:.2f} s")
        ratio = statistics.median(loaded_p99) / statistics.median(idle_p99)
        print(f"{args.small} small + 1 big request, {args.clients} clients, median of {args.rounds} rounds: "
              f"p99 idle {statistics.median(idle_p99) * 1e3:.1f} ms, with the big body "
              f"{statistics.median(loaded_p99) * 1e3:.1f} ms, ratio {ratio:.2f} (goal <= 2)")
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()


if __name__ == "__main__":
    main()
