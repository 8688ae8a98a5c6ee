"""The reward server's HTTP transport: deadlines, caps, a token and a drain (see agentrm.serve).

Request lifecycle: the accept loop hands each connection to a thread unless `max_connections`
are open (then 503 at once). The thread has `header_timeout` for the request line and headers
and `body_timeout` for the body (a watchdog shuts the reading side when they pass: 408); a
declared body over `max_body` gets 413 unread, and is then discarded briefly so the client reads
the answer, not a reset. Small bodies are scored here within `max_concurrency` slots; large ones
go to the service's second process.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import logging
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from agentrm.errors import InputError
from agentrm.serve import LargeLane, RewardService, ServerLimits, encode

log = logging.getLogger("agentrm.serve")


class _Watchdog:
    """One thread that shuts the reading side of connections whose deadline has passed, so a
    client that sends slowly (or not at all) ends its own request and nobody else's."""

    def __init__(self) -> None:
        self._deadlines: dict[socket.socket, float] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        threading.Thread(target=self._run, name="serve-watchdog", daemon=True).start()

    def arm(self, sock: socket.socket, seconds: float) -> None:
        with self._lock:
            self._deadlines[sock] = time.monotonic() + seconds

    def disarm(self, sock: socket.socket) -> None:
        with self._lock:
            self._deadlines.pop(sock, None)

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.wait(0.2):
            now = time.monotonic()
            with self._lock:
                late = [s for s, t in self._deadlines.items() if t <= now]
                for s in late:
                    del self._deadlines[s]
            for s in late:
                try:
                    s.shutdown(socket.SHUT_RD)  # its blocked read returns EOF
                except OSError:
                    pass


def _reply(sock: socket.socket, status: int, reason: str, payload: dict[str, Any],
           extra: dict[str, str] | None = None) -> None:
    """A whole response on a raw socket, then a close that does not reset the client."""
    data = json.dumps(payload).encode()
    head = [f"HTTP/1.0 {status} {reason}", "Content-Type: application/json",
            f"Content-Length: {len(data)}", "Connection: close",
            *(f"{k}: {v}" for k, v in (extra or {}).items())]
    try:
        sock.settimeout(2.0)
        sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode() + data)
        sock.shutdown(socket.SHUT_WR)
        sock.recv(65536)  # let the request arrive, so closing does not send a reset
    except OSError:
        pass


def _discard(sock: socket.socket, seconds: float = 2.0, limit: int = 256 << 20) -> None:
    """Read and drop what the client still sends (briefly), so closing does not reset it."""
    deadline, seen = time.monotonic() + seconds, 0
    try:
        sock.shutdown(socket.SHUT_WR)
        while seen < limit and (left := deadline - time.monotonic()) > 0:
            sock.settimeout(left)
            chunk = sock.recv(1 << 20)
            if not chunk:
                break
            seen += len(chunk)
    except OSError:
        pass


class _Handler(BaseHTTPRequestHandler):
    service: RewardService  # set on the subclass made by make_server
    server: RewardServer

    def setup(self) -> None:
        super().setup()
        self.connection.settimeout(self.server.limits.header_timeout)
        self.server.watchdog.arm(self.connection, self.server.limits.header_timeout)

    def finish(self) -> None:
        self.server.watchdog.disarm(self.connection)
        super().finish()
        if getattr(self, "_unread", False):
            _discard(self.connection)

    default_request_version = "HTTP/1.0"  # a garbled request line still gets a status line

    def send_error(self, code, message=None, explain=None):  # http.server's own errors, as JSON
        self.close_connection = True
        self._unread = True
        self._send(code, {"error": message or explain or self.responses.get(code, ("error",))[0]})

    def log_message(self, fmt, *args):  # route http.server's stderr chatter to logging
        log.info("%s " + fmt, self.address_string(), *args)

    def _send(self, status: int, payload: dict[str, Any] | bytes,
              extra: dict[str, str] | None = None) -> None:
        data = payload if isinstance(payload, bytes) else encode(payload)
        if status == 503:
            extra = {"Retry-After": "1", **(extra or {})}
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for key, value in (extra or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)

    def _refuse(self, status: int, message: str, extra: dict[str, str] | None = None) -> None:
        """An error reply before the body was read; the body is discarded after it, so the
        client reads this answer instead of a connection reset."""
        self._unread = True
        self._send(status, {"error": message}, extra)

    def _authorised(self) -> bool:
        token = self.server.token
        if token is None:
            return True
        given = self.headers.get("Authorization", "")
        if given.startswith("Bearer ") and hmac.compare_digest(given[7:].encode(), token.encode()):
            return True
        self._refuse(401, "missing or wrong bearer token", {"WWW-Authenticate": "Bearer"})
        return False

    def do_GET(self):  # noqa: N802 - http.server's naming
        self.server.watchdog.disarm(self.connection)
        if not self._authorised():
            return
        if self.path.rstrip("/") == "/health":
            self._send(200, {"status": "ok", "scorers": [s.name for s in self.service.scorers]})
        else:
            self._send(404, {"error": f"no route GET {self.path}"})

    def do_POST(self):  # noqa: N802
        self.close_connection = True
        if not self._authorised():
            return
        route = self.path.rstrip("/")
        if route not in ("/score", "/get_reward"):
            return self._refuse(404, f"no route POST {self.path}")
        chunks = self._read_body()
        if chunks is None:
            return
        self.server.watchdog.disarm(self.connection)
        length = sum(len(c) for c in chunks)
        lane = self.server.lane
        if lane is not None and length > self.server.limits.large_body:
            return self._send(*lane.respond(route, chunks, length))
        # a slot only for the work: a client still sending holds a connection, not a slot
        if not self.server.slots.acquire(timeout=self.server.limits.busy_timeout):
            return self._send(503, {"error": f"server busy: {self.server.limits.max_concurrency} "
                                             "requests in flight"})
        try:
            self._send(*self.service.respond(route, b"".join(chunks)))
        finally:
            self.server.slots.release()

    def _read_body(self) -> list[bytes] | None:
        """The body within the size cap and the body deadline, or None after an error reply."""
        limits = self.server.limits
        if self.headers.get("Transfer-Encoding"):
            self._refuse(411, "send a Content-Length (chunked bodies are not accepted)")
            return None
        raw = self.headers.get("Content-Length")
        if raw is None:
            self._refuse(411, "Content-Length required")
            return None
        if not raw.strip().isdigit():
            self._refuse(400, f"bad Content-Length {raw[:40]!r}")
            return None
        length = int(raw)
        if length > limits.max_body:
            self._refuse(413, f"body of {length} bytes is over the {limits.max_body}-byte limit")
            return None
        self.server.watchdog.arm(self.connection, limits.body_timeout)
        chunks, got = [], 0
        while got < length:
            try:
                chunk = self.rfile.read1(min(length - got, 1 << 20))
            except OSError:  # the per-read timeout
                chunk = b""
            if not chunk:
                self._send(408, {"error": f"body not received in full within {limits.body_timeout:g}s "
                                          f"({got} of {length} bytes)"})
                return None
            chunks.append(chunk)
            got += len(chunk)
        return chunks


class RewardServer(ThreadingHTTPServer):
    """ThreadingHTTPServer with bounded concurrency, deadlines, a token and a drain."""

    daemon_threads = False  # server_close() joins the requests in flight: the drain
    block_on_close = True

    def __init__(self, address, handler, limits: ServerLimits, token: str | None,
                 lane: LargeLane | None = None):
        self.request_queue_size = limits.backlog
        self.limits, self.token, self.lane = limits, token, lane
        self.watchdog = _Watchdog()
        self.slots = threading.BoundedSemaphore(limits.max_concurrency)
        self._connections = threading.BoundedSemaphore(limits.max_connections)
        self._turning_away = threading.BoundedSemaphore(16)
        super().__init__(address, handler)

    def process_request(self, request, client_address):
        if self._connections.acquire(blocking=False):
            return super().process_request(request, client_address)
        # over the cap: answered 503 off the accept loop, which must never wait on a client
        if self._turning_away.acquire(blocking=False):
            threading.Thread(target=self._turn_away, args=(request,), daemon=True).start()
        else:  # far past every cap: close at once
            self.shutdown_request(request)

    def _turn_away(self, request) -> None:
        try:
            _reply(request, 503, "Service Unavailable", {"error": "too many connections"},
                   {"Retry-After": "1"})
            self.shutdown_request(request)
        finally:
            self._turning_away.release()

    def process_request_thread(self, request, client_address):
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._connections.release()

    def handle_error(self, request, client_address) -> None:  # not socketserver's stderr dump
        exc = sys.exc_info()[1]
        if isinstance(exc, OSError):  # the client went away (reset, timeout): its loss only
            log.info("client %s: %s", client_address, exc)
        else:
            log.error("request from %s failed", client_address, exc_info=True)

    def server_close(self) -> None:
        super().server_close()  # joins the request threads: the requests in flight finish
        self.watchdog.stop()
        if self.lane is not None:
            self.lane.close()

    def drain(self) -> None:
        """Stop accepting, let the requests in flight finish (each within its deadlines), close.
        Call from any thread but the one running serve_forever."""
        self.shutdown()
        self.server_close()


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def bind(service: RewardService, host: str, port: int, token: str | None, limits: ServerLimits,
         lane: LargeLane | None) -> RewardServer:
    if not 0 <= port <= 65535:
        raise InputError(f"port {port} is not in 0-65535 (flag --port)")
    if not _is_loopback(host) and not token:
        raise InputError(f"refusing to serve on {host} without a token: anyone who can reach it "
                         "could score (flag --token or AGENTRM_TOKEN), or bind 127.0.0.1")
    handler = type("RewardHandler", (_Handler,), {"service": service})
    try:
        return RewardServer((host, port), handler, limits, token or None, lane)
    except OSError as exc:
        raise InputError(f"cannot listen on {host}:{port}: {exc.strerror or exc} "
                         "(flag --host/--port)") from exc
