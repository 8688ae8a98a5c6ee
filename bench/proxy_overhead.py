"""What `agentrm proxy` adds per request, and its throughput, against calling the upstream
directly from the same client. The upstream is a canned OpenAI-compatible server (a reply with
token ids and log-probs, or the same as 12 SSE chunks) so that only the proxy's own work is
measured: parse, forward, record the turn in SQLite, strip what the client did not ask for.
Upstream and proxy (`agentrm proxy`) each run in their own process, as they would in use.
Direct and proxied requests alternate (a load change hits both alike). "added" is the
difference of the medians; "paired" the median of the per-pair differences. The proxy's CPU
time per request (all its threads, recording included) is printed beside them: unlike
latency, it hardly depends on what else the machine is doing.

    python bench/proxy_overhead.py [--requests 300] [--clients 32]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from agentrm.traces import open_store  # noqa: E402

IDS = list(range(100, 124))


def reply() -> dict:
    return {"id": "c", "object": "chat.completion", "model": "stub", "prompt_token_ids": list(range(60)),
            "choices": [{"index": 0, "finish_reason": "stop", "token_ids": IDS,
                         "message": {"role": "assistant", "content": "ls -la /workspace " * 3},
                         "logprobs": {"content": [{"token": "x", "logprob": -0.5} for _ in IDS]}}],
            "usage": {"prompt_tokens": 60, "completion_tokens": len(IDS)}}


async def completions(request: Request) -> Response:
    body = await request.json()
    if not body.get("stream"):
        return JSONResponse(reply())

    async def chunks():
        first = {"id": "c", "model": "stub", "prompt_token_ids": list(range(60)), "choices": [
            {"index": 0, "delta": {"role": "assistant", "content": ""}, "token_ids": []}]}
        yield f"data: {json.dumps(first)}\n\n"
        for k in range(0, len(IDS), 2):
            chunk = {"id": "c", "model": "stub", "choices": [
                {"index": 0, "delta": {"content": "ls "}, "token_ids": IDS[k:k + 2],
                 "logprobs": {"content": [{"token": "x", "logprob": -0.5}] * 2}}]}
            yield f"data: {json.dumps(chunk)}\n\n"
        yield "data: [DONE]\n\n"
    return StreamingResponse(chunks(), media_type="text/event-stream")


async def models(request: Request) -> Response:
    return JSONResponse({"data": [{"id": "stub"}]})


def body(stream: bool) -> dict:
    return {"model": "stub", "stream": stream, "max_tokens": 24,
            "messages": [{"role": "system", "content": "You are an agent."},
                         {"role": "user", "content": "How many lines does data.txt have?"}]}


def one(client: httpx.Client, url: str, stream: bool) -> float:
    t0 = time.perf_counter()
    if stream:
        with client.stream("POST", url, json=body(True)) as resp:
            for _ in resp.iter_lines():
                pass
    else:
        client.post(url, json=body(False)).raise_for_status()
    return (time.perf_counter() - t0) * 1000


def paired(client: httpx.Client, direct: str, via, n: int, stream: bool) -> tuple[list[float], list[float]]:
    """Direct and proxied requests alternate, so a change of machine load hits both alike."""
    base, prox = [], []
    for i in range(n):
        base.append(one(client, direct, stream))
        prox.append(one(client, via(i), stream))
    return base, prox


def throughput(url_of, clients: int, per_client: int) -> float:
    def work(c: int) -> None:
        with httpx.Client(timeout=60) as client:
            for i in range(per_client):
                client.post(url_of(c * per_client + i), json=body(False)).raise_for_status()

    t0 = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(work, range(clients)))
    return clients * per_client / (time.perf_counter() - t0)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait(url: str, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{proc.args[:4]} exited {proc.returncode}")
        try:
            if httpx.get(url, timeout=2).status_code < 500:
                return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise SystemExit(f"{url} did not come up")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--stub", type=int, help=argparse.SUPPRESS)  # run the upstream on this port
    args = parser.parse_args()
    app = Starlette(routes=[Route("/v1/chat/completions", completions, methods=["POST"]),
                            Route("/v1/models", models)])
    if args.stub:
        uvicorn.run(app, host="127.0.0.1", port=args.stub, log_level="error", backlog=512)
        return
    tmp = tempfile.mkdtemp(prefix="proxy-bench-")
    up_port, proxy_port = free_port(), free_port()
    upstream = f"http://127.0.0.1:{up_port}"
    procs = [subprocess.Popen([sys.executable, __file__, "--stub", str(up_port)])]
    try:
        wait(upstream + "/v1/models", procs[0])
        procs.append(subprocess.Popen([sys.executable, "-m", "agentrm.cli.main", "proxy", "--upstream",
                                       upstream + "/v1", "--port", str(proxy_port), "--run-id", "bench",
                                       "--db", f"sqlite:///{tmp}/bench.db"], stderr=subprocess.DEVNULL))
        proxy = f"http://127.0.0.1:{proxy_port}"
        wait(proxy + "/t/x/v1/models", procs[1])
        run(args, upstream, proxy, procs[0].pid, procs[1].pid)
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
            proc.wait(30)
    store = open_store(f"sqlite:///{tmp}/bench.db")
    print(f"recorded trajectories: {sum(1 for _ in store.iter_trajectories(run_id='bench'))}")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc), threads included."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run(args, upstream: str, proxy: str, upstream_pid: int, proxy_pid: int) -> None:
    direct = lambda i: f"{upstream}/v1/chat/completions"  # noqa: E731
    print(f"{'':28} {'direct ms':>10} {'proxy ms':>10} {'added ms':>9} {'paired ms':>9}")
    for stream in (False, True):
        via = lambda i, s=stream: f"{proxy}/t/{'s' if s else 'j'}-{i}/v1/chat/completions"  # noqa: E731
        with httpx.Client(timeout=60) as client:
            paired(client, direct(0), lambda i, v=via: v(10**6 + i), 20, stream)  # warm up
            cpu = cpu_seconds(upstream_pid), cpu_seconds(proxy_pid)
            base, prox = paired(client, direct(0), via, args.requests, stream)
            # CPU per proxied request does not depend on how busy the machine is; the upstream
            # serves every request twice (direct and proxied)
            up_ms = (cpu_seconds(upstream_pid) - cpu[0]) / (2 * args.requests) * 1000
            proxy_ms = (cpu_seconds(proxy_pid) - cpu[1]) / args.requests * 1000
        b, p = statistics.median(base), statistics.median(prox)
        diff = statistics.median(q - d for d, q in zip(base, prox, strict=True))
        print(f"{'streaming' if stream else 'non-streaming':28} {b:10.2f} {p:10.2f} {p - b:9.2f} "
              f"{diff:9.2f}   CPU per request: proxy {proxy_ms:.2f} ms, upstream {up_ms:.2f} ms")
    per = max(1, args.requests // args.clients)
    direct_rps = throughput(direct, args.clients, per)
    proxy_rps = throughput(lambda i: f"{proxy}/t/c-{i}/v1/chat/completions", args.clients, per)
    print(f"throughput, {args.clients} clients: direct {direct_rps:.0f} req/s, through the proxy "
          f"{proxy_rps:.0f} req/s (ratio {proxy_rps / direct_rps:.2f})")


if __name__ == "__main__":
    main()
