"""The host side of the persistent shell: a supervisor process inside the container frames it.

The container's main process is `sandboxes/supervisor_main.py`, running as root (a user the
agent cannot signal, trace or read the descriptors of). Each command is a fresh bash as the
agent's user in a new session whose stdout/stderr are pipes into the supervisor; the
supervisor forwards them to us in frames and ends with the command's real wait status.
Shell state (cwd, variables, functions, aliases) is carried between commands by a state file,
so the shell behaves as one persistent shell.

Why: a command must not be able to change how commands are framed or timed. With the old
in-band end marker a command could print it, redefine the shell functions that printed it, or
read the next command from the shell's stdin. Here nothing the command writes or defines is
part of the protocol, the command's stdin is /dev/null and it inherits only fds 0, 1 and 2.

Protocol. Host -> supervisor, one JSON object per line:
  {"op": "run", "id": N, "cmd": TEXT, "timeout": S}          a command in the agent's shell
  {"op": "verify", "id": N, "cmd": TEXT, "timeout": S, "restore": {path: base64}, "env": {}}
  {"op": "killall", "id": N}                                  every process of the agent's
  {"op": "cancel", "id": N}                                   stop the command now running
Supervisor -> host, frames `kind(1) id(4) length(4) payload` on its stdout: H hello, O/E a
command's stdout/stderr, R the result (JSON: rc, timed_out), X a supervisor error.
"""

from __future__ import annotations

import json
import logging
import struct
import time
from pathlib import Path

from agentrm.sandboxes.output import OutputRecorder
from agentrm.types import ExecResult

log = logging.getLogger("agentrm.sandboxes")

HEADER = struct.Struct(">cII")
SUPERVISOR_SOURCE = (Path(__file__).with_name("supervisor_main.py")).read_text()
KILL_GRACE_S = 1.0  # supervisor_main.GRACE_S: between SIGTERM and SIGKILL
# How long past a command's timeout the host waits for the supervisor's answer before it
# declares the sandbox broken (the supervisor kills within ~1 s; this is for a loaded host).
HOST_SLACK_S = 60.0
# Kill every process whose environment carries the token (a stateless exec whose `timeout`
# did not end it): runs as the sandbox user, like the command it kills.
KILL_SCRIPT = r"""
t="$1"; grace="$2"
find_pids() { grep -lsaF "$t" /proc/[0-9]*/environ 2>/dev/null | cut -d/ -f3 | grep -vx "$$"; }
p=$(find_pids); [ -n "$p" ] && kill -TERM $p 2>/dev/null
end=$(( $(date +%s%N) + ${grace%.*}000000000 ))
while [ -n "$(find_pids)" ] && [ "$(date +%s%N)" -lt "$end" ]; do sleep 0.05; done
for i in $(seq 1 50); do p=$(find_pids); [ -z "$p" ] && exit 0; kill -KILL $p 2>/dev/null; done
exit 1
"""


# The container's command: read the supervisor's source and configuration from stdin (the
# first line), so `ps` shows neither; what follows on stdin is the request stream.
BOOTSTRAP = ("import os,json\nb=b''\nwhile b'\\n' not in b:\n c=os.read(0,65536)\n"
             " if not c: raise SystemExit(3)\n b+=c\nl,r=b.split(b'\\n',1)\nm=json.loads(l)\n"
             "exec(compile(m['source'],'agentrm-supervisor','exec'),"
             "{'__name__':'agentrm_supervisor','CONFIG':m['config'],'PENDING':r})")
SUPERVISOR_ARGV = ["python3", "-I", "-S", "-c", BOOTSTRAP]


def bootstrap_line(user: str, workdir: str, env: dict[str, str]) -> bytes:
    cfg = {"user": user, "workdir": workdir, "env": env}
    return (json.dumps({"source": SUPERVISOR_SOURCE, "config": cfg}) + "\n").encode()


class FrameReader:
    """Split the supervisor's stdout into (kind, id, payload) frames, whatever the chunking."""

    def __init__(self) -> None:
        self.buf = bytearray()

    def feed(self, data: bytes) -> list[tuple[bytes, int, bytes]]:
        self.buf += data
        out = []
        while len(self.buf) >= HEADER.size:
            kind, ident, size = HEADER.unpack_from(self.buf)
            if len(self.buf) < HEADER.size + size:
                break
            out.append((kind, ident, bytes(self.buf[HEADER.size:HEADER.size + size])))
            del self.buf[:HEADER.size + size]
        return out


class SupervisorError(OSError):
    """The supervisor reported an internal error (its own fault, not the command's)."""


class Supervisor:
    """Client of the in-container supervisor over the container's attached stdio socket.
    One request at a time (the sandbox holds a lock)."""

    def __init__(self, proc) -> None:
        self.proc = proc
        self.reader = FrameReader()
        self.next_id = 1
        self.pid = 0
        self.stderr_tail = b""  # the supervisor's own stderr (tracebacks): for the blame

    def start(self, boot: bytes, timeout: float = 120.0) -> None:
        self.proc.send(boot)
        for kind, _, payload in self._frames(time.monotonic() + timeout):
            if kind == b"H":
                self.pid = json.loads(payload)["pid"]
                return
        raise EOFError(f"the sandbox supervisor did not start: {self.stderr_tail[-300:]!r}")

    @property
    def alive(self) -> bool:
        return self.proc is not None and not self.proc.eof

    def close(self) -> None:
        if self.proc is not None:
            self.proc.close()

    def _frames(self, deadline: float):
        """Frames until EOF (then returns); TimeoutError at `deadline`."""
        for stream, data in self.proc.frames(deadline):
            if stream == 2:
                self.stderr_tail = (self.stderr_tail + data)[-4096:]
                continue
            yield from self.reader.feed(data)

    def _send(self, obj: dict) -> int:
        ident = self.next_id
        self.next_id += 1
        self.proc.send((json.dumps({**obj, "id": ident}) + "\n").encode())
        return ident

    def run(self, cmd: str, timeout: float, cap: int, on_output=None) -> ExecResult:
        """A command in the agent's shell; EOFError if the supervisor is gone."""
        return self._call({"op": "run", "cmd": cmd, "timeout": timeout}, timeout, cap, on_output)

    def verify(self, cmd: str, timeout: float, cap: int, restore: dict[str, str],
               env: dict[str, str] | None = None) -> ExecResult:
        """A verifier: agent killed first, files restored, a clean fresh process tree."""
        req = {"op": "verify", "cmd": cmd, "timeout": timeout, "restore": restore,
               "env": env or {}}
        return self._call(req, timeout + 5, cap, None)

    def killall(self) -> int:
        r = self._call({"op": "killall"}, 30, 1 << 16, None)
        return r.exit_code

    def _call(self, req: dict, timeout: float, cap: int, on_output) -> ExecResult:
        rec = OutputRecorder(cap, on_output=on_output)
        ident = self._send(req)
        try:
            for kind, fid, payload in self._frames(rec.start + timeout + HOST_SLACK_S):
                if fid != ident:
                    continue  # late frames of a cancelled command
                if kind == b"O":
                    rec.add(1, payload)
                elif kind == b"E":
                    rec.add(2, payload)
                elif kind == b"R":
                    res = json.loads(payload)
                    timed_out = bool(res.get("timed_out"))
                    return ExecResult(exit_code=int(res["rc"]), stdout=rec.streams[1].text(),
                                      stderr=rec.streams[2].text(), timed_out=timed_out,
                                      truncated=rec.truncated, duration_s=rec.elapsed(),
                                      output_events=rec.events)
                elif kind == b"X":
                    raise SupervisorError(json.loads(payload).get("error", "supervisor error"))
        except BaseException:
            # interrupted mid-command (Ctrl-C, a callback raising): stop it, so the next
            # command does not wait behind it; its late frames are skipped by id
            if self.alive:
                try:
                    self._send({"op": "cancel"})
                except EOFError:
                    pass
            raise
        raise EOFError("the sandbox supervisor ended")
