"""An attached `docker exec`: one hijacked socket carrying stdin and the multiplexed
stdout/stderr frames. Talking to one long-lived socket is what makes the persistent shell fast
(no exec create/start/inspect round trips per command)."""

from __future__ import annotations

import select
import socket
import struct
import time
from collections.abc import Iterator

from docker.errors import APIError, NotFound

from agentrm.errors import SandboxGone

HEADER = struct.Struct(">BxxxL")


class AttachedExec:
    """Start `cmd` in the container with stdin attached; read (stream, bytes) frames."""

    exec_id: str | None

    def __init__(self, api, container_id: str, cmd: list[str], *, user: str, workdir: str | None,
                 env: dict[str, str] | None = None):
        self.api = api
        try:
            self.exec_id = api.exec_create(
                container_id, cmd, stdin=True, stdout=True, stderr=True, tty=False, user=user,
                workdir=workdir, environment=env or None)["Id"]
            raw = api.exec_start(self.exec_id, socket=True)
        except NotFound as exc:
            raise SandboxGone(f"container {container_id[:12]} is gone") from exc
        except APIError as exc:
            if exc.status_code in (404, 409):
                raise SandboxGone(f"container {container_id[:12]}: {exc.explanation}") from exc
            raise
        self._resp = raw
        self.sock: socket.socket = getattr(raw, "_sock", raw)
        self.buf = bytearray()
        self.eof = False

    def send(self, data: bytes) -> None:
        try:
            self.sock.sendall(data)
        except OSError as exc:
            self.eof = True
            raise EOFError(str(exc)) from exc

    def close_stdin(self) -> None:
        try:
            self.sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    def frames(self, deadline: float) -> Iterator[tuple[int, bytes]]:
        """Yield frames until EOF (sets self.eof) or `deadline` (monotonic): raises TimeoutError."""
        while True:
            while len(self.buf) >= HEADER.size:
                stream, size = HEADER.unpack_from(self.buf)
                if len(self.buf) < HEADER.size + size:
                    break
                payload = bytes(self.buf[HEADER.size:HEADER.size + size])
                del self.buf[:HEADER.size + size]
                yield stream, payload
            if self.eof:
                return
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError
            chunk = self._recv(min(remaining, 1.0))
            if chunk is not None:
                self.buf += chunk

    def discard_pending(self) -> int:
        """Drop whatever has already arrived (without waiting); returns the bytes dropped."""
        dropped = len(self.buf)
        self.buf.clear()
        while not self.eof:
            chunk = self._recv(0)
            if chunk is None:
                break
            dropped += len(chunk)
        return dropped

    def _recv(self, wait: float) -> bytes | None:
        """What the socket has within `wait` seconds (None: nothing yet); b"" marks EOF."""
        ready, _, _ = select.select([self.sock], [], [], wait)
        if not ready:
            return None
        try:
            chunk = self.sock.recv(1 << 16)
        except OSError:
            chunk = b""
        if not chunk:
            self.eof = True
        return chunk

    def exit_code(self) -> int | None:
        """The process's exit code once it ended (None while running or unknown)."""
        if self.exec_id is None:
            return None
        for _ in range(50):
            try:
                info = self.api.exec_inspect(self.exec_id)
            except APIError:
                return None
            if not info.get("Running"):
                return info.get("ExitCode")
            time.sleep(0.01)
        return None

    def close(self) -> None:
        self.eof = True
        for obj in (self.sock, self._resp):
            try:
                obj.close()
            except Exception:  # noqa: BLE001 - closing a dead socket must not fail cleanup
                pass


class AttachedContainer(AttachedExec):
    """The container's own main process, attached before start (stdin, stdout, stderr):
    same framing as an exec, one API round trip fewer at start."""

    def __init__(self, api, container_id: str):  # noqa: D107 - no super(): nothing to exec
        self.api, self.exec_id = api, None
        try:
            raw = api.attach_socket(container_id, params={"stdin": 1, "stdout": 1, "stderr": 1,
                                                          "stream": 1})
        except (NotFound, APIError) as exc:
            raise SandboxGone(f"container {container_id[:12]}: cannot attach: {exc}") from exc
        self._resp = raw
        self.sock = getattr(raw, "_sock", raw)
        self.buf = bytearray()
        self.eof = False
