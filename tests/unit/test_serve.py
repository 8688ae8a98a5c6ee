"""The HTTP reward server, over a real socket on 127.0.0.1 with the answer verifier: routes,
then what one client may not take from the others (deadlines, caps, slots, a token)."""

from __future__ import annotations

import json
import select
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request

import pytest

from agentrm.errors import InputError
from agentrm.serve import RewardService, ServerLimits, make_server


def record(tid: str, answer: str, truth: str = "4") -> dict:
    call = {"id": "c1", "type": "function",
            "function": {"name": "submit", "arguments": json.dumps({"answer": answer})}}
    return {"id": tid, "task_id": "add", "group_id": "g", "reward": None, "answer": truth,
            "metadata": {},
            "messages": [{"role": "user", "content": "What is 2 + 2?"},
                         {"role": "assistant", "content": "", "tool_calls": [call]},
                         {"role": "tool", "tool_call_id": "c1", "content": "submitted"}]}


def start(token=None, host="127.0.0.1", **limits):
    service = RewardService([{"name": "answer", "options": {"mode": "numeric"}}],
                            advantage={"estimator": "grpo", "norm": "mean"})
    srv = make_server(service, host, 0, token=token, limits=ServerLimits(**limits))
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv


@pytest.fixture(scope="module")
def server():
    srv = start(large_body=0)
    yield f"http://127.0.0.1:{srv.server_port}"
    srv.drain()


@pytest.fixture
def strict():
    """A server with small limits; yields it (its port: strict.server_port)."""
    made = []

    def make(**kw):
        made.append(start(**{"large_body": 0, **kw}))
        return made[-1]
    yield make
    for srv in made:
        srv.drain()


def post(url: str, payload, headers: dict | None = None) -> tuple[int, dict]:
    data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json",
                                                              **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def test_score_returns_trajectory_scores_and_group_advantages(server):
    status, body = post(server + "/score", {"trajectories": [record("a", "4"), record("b", "5"),
                                                             record("c", "4"), record("d", "x")]})
    assert status == 200
    by_id = {t["id"]: t for t in body["trajectories"]}
    rewards = {tid: by_id[tid]["trajectory_scores"]["answer"] for tid in "abcd"}
    assert rewards == {"a": 1.0, "b": 0.0, "c": 1.0, "d": 0.0}
    # GRPO mean form, one turn per trajectory: A = R - mean(R) = ±0.5 (hand-computed)
    assert {tid: by_id[tid]["advantages"] for tid in "abcd"} == {
        "a": [0.5], "b": [-0.5], "c": [0.5], "d": [-0.5]}


def test_openrlhf_get_reward_shape(server):
    status, body = post(server + "/get_reward", {
        "query": ["Q: 2+2? A: 4", "Q: 2+2? A: 5"], "prompts": ["Q: 2+2? A:", "Q: 2+2? A:"],
        "labels": ["4", "4"]})
    assert status == 200
    assert body["rewards"] == [1.0, 0.0] and body["scores"] == [1.0, 0.0]
    assert body["extra_logs"]["answer"] == [1.0, 0.0]


def test_bad_requests_get_one_line_errors(server):
    status, body = post(server + "/score", b"{not json")
    assert status == 400 and "malformed JSON" in body["error"]
    status, body = post(server + "/score", {"trajectories": "nope"})
    assert status == 400 and "trajectories" in body["error"]
    status, body = post(server + "/get_reward", {"query": ["a"], "labels": ["1", "2"]})
    assert status == 400 and "as long as" in body["error"]
    status, body = post(server + "/nowhere", {})
    assert status == 404
    with urllib.request.urlopen(server + "/health", timeout=10) as response:
        assert json.loads(response.read()) == {"status": "ok", "scorers": ["answer"]}


SCORE = {"trajectories": [record("a", "4"), record("b", "5")]}


def raw(port: int, data: bytes, timeout: float = 30.0) -> bytes:
    """Send `data` on a fresh connection and read the whole answer (b"" if none)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)
        out = b""
        while chunk := sock.recv(65536):
            out += chunk
        return out


def status_of(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1])


def test_malformed_requests_get_400_411_and_413(strict):
    srv = strict(max_body=1024)
    port = srv.server_port
    head = b"POST /score HTTP/1.0\r\nContent-Type: application/json\r\n"
    assert status_of(raw(port, head + b"Content-Length: lots\r\n\r\n{}")) == 400
    assert status_of(raw(port, head + b"Content-Length: -5\r\n\r\n{}")) == 400
    assert status_of(raw(port, head + b"\r\n{}")) == 411
    assert status_of(raw(port, head + b"Transfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n")) == 411
    assert status_of(raw(port, b"NONSENSE\r\n\r\n")) == 400
    for body in (b"[1, 2]", b"\xff\xfe", b'{"trajectories": [' * 100000):
        answer = raw(port, head + b"Content-Length: %d\r\n\r\n" % len(body) + body)
        assert status_of(answer) in (400, 413), answer[:200]


def test_an_oversized_body_is_answered_413_not_reset(strict):
    srv = strict(max_body=64 << 10)
    body = b"x" * (8 << 20)  # sent in full by the client: the server must still answer first
    status, payload = post(f"http://127.0.0.1:{srv.server_port}/score", body)
    assert status == 413 and "limit" in payload["error"]


def test_a_slow_body_ends_its_own_request_only(strict):
    srv = strict(body_timeout=8)
    port = srv.server_port
    with socket.create_connection(("127.0.0.1", port), timeout=60) as slow:
        slow.sendall(b"POST /score HTTP/1.0\r\nContent-Length: 1000\r\n\r\n{")  # then nothing
        status, _ = post(f"http://127.0.0.1:{port}/score", SCORE)
        assert status == 200  # served while the slow one is still sending ...
        assert select.select([slow], [], [], 0)[0] == []  # ... and still unanswered
        answer = b""
        while chunk := slow.recv(65536):
            answer += chunk
    assert status_of(answer) == 408 and b"1 of 1000 bytes" in answer


def test_slow_headers_are_cut_off(strict):
    srv = strict(header_timeout=1.0)
    with socket.create_connection(("127.0.0.1", srv.server_port), timeout=60) as slow:
        slow.sendall(b"POST /score HTTP/1.0\r\n")
        closed = False
        for _ in range(200):  # a header byte now and then keeps every single read alive
            if select.select([slow], [], [], 0.3)[0]:
                closed = True  # the server answered (400) or closed: the deadline did it
                break
            try:
                slow.sendall(b"X")
            except OSError:
                closed = True
                break
        assert closed


def test_busy_scorers_and_full_slots_get_503_with_retry_after(strict):
    srv = strict(busy_timeout=0.3, max_concurrency=1)
    url = f"http://127.0.0.1:{srv.server_port}/score"
    srv.slots.acquire()  # a request in flight holds the only slot
    try:
        status, payload = post(url, SCORE)
        assert status == 503 and "in flight" in payload["error"]
    finally:
        srv.slots.release()
    srv.RequestHandlerClass.service._lock.acquire()  # the scorers are busy
    try:
        answer = raw(srv.server_port, b"POST /score HTTP/1.0\r\nContent-Length: %d\r\n\r\n"
                     % len(json.dumps(SCORE)) + json.dumps(SCORE).encode())
        assert status_of(answer) == 503 and b"Retry-After: 1" in answer
    finally:
        srv.RequestHandlerClass.service._lock.release()
    assert post(url, SCORE)[0] == 200


def test_too_many_connections_get_503_not_a_reset(strict):
    srv = strict(max_connections=2, header_timeout=30)
    idle = [socket.create_connection(("127.0.0.1", srv.server_port), timeout=30) for _ in range(2)]
    try:
        deadline = time.monotonic() + 60
        while srv._connections._value > 0 and time.monotonic() < deadline:
            time.sleep(0.05)  # until both are accepted and waiting for their headers
        answer = raw(srv.server_port, b"GET /health HTTP/1.0\r\n\r\n")
        assert status_of(answer) == 503 and b"too many connections" in answer
    finally:
        for sock in idle:
            sock.close()


def test_listen_backlog_is_at_least_128(server):
    port = server.rsplit(":", 1)[1]
    out = subprocess.run(["ss", "-ltnH", f"sport = :{port}"], capture_output=True, text=True).stdout
    assert int(out.split()[2]) >= 128, out  # Send-Q of a listening socket is its backlog


def test_bearer_token(strict):
    srv = strict(token="s3cret")
    url = f"http://127.0.0.1:{srv.server_port}"
    assert post(url + "/score", SCORE)[0] == 401
    assert post(url + "/score", SCORE, {"Authorization": "Bearer nope"})[0] == 401
    assert post(url + "/score", SCORE, {"Authorization": "Bearer s3cret"})[0] == 200
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(url + "/health", timeout=10)
    assert err.value.code == 401


def test_no_public_address_without_a_token(strict):
    with pytest.raises(InputError, match="without a token"):
        start(host="0.0.0.0")
    srv = strict(host="0.0.0.0", token="t")  # with one it binds
    assert srv.server_address[0] == "0.0.0.0"
    with pytest.raises(InputError, match="0-65535"):
        make_server(RewardService([{"name": "answer"}]), port=-1, limits=ServerLimits(large_body=0))


def test_large_bodies_are_scored_by_the_second_process_alike(strict):
    srv = start(large_body=1024)  # everything over 1 KiB goes to the large-body process
    try:
        url = f"http://127.0.0.1:{srv.server_port}/score"
        body = {"trajectories": [record("a", "4"), record("b", "5"), record("c", "4")]}
        assert len(json.dumps(body)) > 1024
        status, payload = post(url, body)
        assert status == 200 and srv.lane is not None and srv.lane._proc.poll() is None
        rewards = {t["id"]: t["trajectory_scores"]["answer"] for t in payload["trajectories"]}
        assert rewards == {"a": 1.0, "b": 0.0, "c": 1.0}
        status, payload = post(url, b"{" + b" " * 2000)  # errors come back the same way
        assert status == 400 and "malformed JSON" in payload["error"]
    finally:
        srv.drain()
    assert srv.lane._proc is None  # the drain stopped it
