"""`agentrm serve` as a process: SIGTERM drains (a request in flight is answered, new
connections are refused, exit 0), the token comes from AGENTRM_TOKEN, and a public address
without a token is refused with one line."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest

BODY = json.dumps({"trajectories": [{
    "id": "a", "task_id": "add", "group_id": "g", "answer": "4", "metadata": {},
    "messages": [{"role": "user", "content": "2 + 2?"},
                 {"role": "assistant", "content": "", "tool_calls": [{"id": "c", "type": "function",
                  "function": {"name": "submit", "arguments": "{\"answer\": \"4\"}"}}]},
                 {"role": "tool", "tool_call_id": "c", "content": "submitted"}]}]}).encode()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve(*args: str, token: str | None = None) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k != "AGENTRM_TOKEN"}
    if token:
        env["AGENTRM_TOKEN"] = token
    return subprocess.Popen([sys.executable, "-m", "agentrm.cli.main", "serve", "--scorer",
                             "answer?mode=numeric", *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def health(port: int, token: str | None) -> int:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    request = urllib.request.Request(f"http://127.0.0.1:{port}/health", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as err:
        return err.code


@pytest.fixture
def server():
    port = free_port()
    proc = serve("--port", str(port), token="tok")
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        try:
            if health(port, "tok") == 200:
                break
        except OSError:
            if proc.poll() is not None:
                pytest.fail(f"server exited: {proc.stderr.read()}")
            time.sleep(0.3)
    yield port, proc
    if proc.poll() is None:
        proc.kill()
        proc.wait()


def test_sigterm_drains_the_request_in_flight(server):
    port, proc = server
    assert health(port, None) == 401 and health(port, "tok") == 200  # AGENTRM_TOKEN applies
    sock = socket.create_connection(("127.0.0.1", port), timeout=60)
    head = (b"POST /score HTTP/1.0\r\nAuthorization: Bearer tok\r\nContent-Length: %d\r\n\r\n"
            % len(BODY))
    sock.sendall(head + BODY[:10])  # in flight: headers read, body still coming
    time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)
    refused = False
    for _ in range(300):  # the listening socket closes: no new work is taken on
        try:
            socket.create_connection(("127.0.0.1", port), timeout=2).close()
        except (ConnectionRefusedError, ConnectionResetError):  # reset: closed as we connected
            refused = True
            break
        time.sleep(0.1)
    assert refused
    assert proc.poll() is None  # still running: the request in flight is not dropped
    sock.sendall(BODY[10:])
    answer = b""
    while chunk := sock.recv(65536):
        answer += chunk
    sock.close()
    assert answer.startswith(b"HTTP/1.0 200"), answer[:300]
    payload = json.loads(answer.split(b"\r\n\r\n", 1)[1])
    assert payload["trajectories"][0]["trajectory_scores"]["answer"] == 1.0
    assert proc.wait(60) == 0 and "drained" in proc.stderr.read()


def test_public_address_needs_a_token():
    proc = serve("--host", "0.0.0.0", "--port", str(free_port()))
    _, err = proc.communicate(timeout=180)
    assert proc.returncode == 2
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and "without a token" in lines[0]
