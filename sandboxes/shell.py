"""The persistent shell: one bash per sandbox, fed commands over an attached exec socket.

Framing: each command is sent as one line that evals the command text (ANSI-C quoted, so the
line always parses) in the current shell with stdin from /dev/null, then prints an end marker
`\\x1f<token>\\x1f<rc> <pwd>\\n` on stdout and `\\x1f<token>\\x1f\\n` on stderr. The token is
random per command, so command output cannot forge it; waiting for both markers guarantees that
all of the command's stdout and stderr has arrived. Every process a command starts inherits
AGENTRM_CMD=<token>, which is how a timeout finds and kills exactly that command's processes.
"""

from __future__ import annotations

import logging
import os
import re
import time

from agentrm.sandboxes.attach import AttachedExec
from agentrm.sandboxes.output import OutputRecorder
from agentrm.types import ExecResult

log = logging.getLogger("agentrm.sandboxes")

KILL_GRACE_S = 1.0  # between SIGTERM and SIGKILL, like `timeout -k`
# Kill every process whose environment carries the token: TERM, a grace period, then KILL
# until none is left (a fork bomb needs several rounds). Runs as the sandbox user.
KILL_SCRIPT = r"""
t="$1"; grace="$2"; [ -n "$3" ] && kill -USR1 "$3" 2>/dev/null
find_pids() { grep -lsaF "$t" /proc/[0-9]*/environ 2>/dev/null | cut -d/ -f3 | grep -vx "$$"; }
p=$(find_pids); [ -n "$p" ] && kill -TERM $p 2>/dev/null
end=$(( $(date +%s%N) + ${grace%.*}000000000 ))
while [ -n "$(find_pids)" ] && [ "$(date +%s%N)" -lt "$end" ]; do sleep 0.05; done
for i in $(seq 1 50); do p=$(find_pids); [ -z "$p" ] && exit 0; kill -KILL $p 2>/dev/null; done
exit 1
"""


PRELUDE = "__agentrm_f() { eval \"$1\"; }\ntrap 'return 124 2>/dev/null' USR1\n"

# The same killer in builtins only, for the control shell started next to the persistent one:
# it needs no fork, so it works when a fork bomb holds every pid the sandbox may have.
KILLER_DEF = r"""
exec {__agentrm_sfd}<> <(:)
__agentrm_sweep() {  # $1 env entry, $2 signal, $3 shell's env entry, $4 shell pid, $5 min start tick
  local f p x st line; local -a e fld; __agentrm_found=0
  for f in /proc/[0-9]*/environ; do
    p=${f#/proc/}; p=${p%/environ}; [ "$p" = "$$" ] && continue; [ "$p" = "$4" ] && continue
    mapfile -d '' -t e 2>/dev/null < "$f" || continue
    for x in "${e[@]}"; do
      if [ "$x" = "$1" ]; then st=hit; break; fi
      if [ "$x" = "$3" ]; then st=shell; fi
    done
    if [ "$st" = shell ] && [ -n "$5" ]; then  # a subshell forked by the shell: new enough?
      read -r line 2>/dev/null < "/proc/$p/stat" || continue
      read -r -a fld <<< "${line##*) }"
      [ "${fld[19]:-0}" -ge "$5" ] && st=hit
    fi
    if [ "$st" = hit ]; then kill -"$2" "$p" 2>/dev/null; __agentrm_found=1; fi
    st=
  done
}
__agentrm_kill() {  # $1 cmd entry, $2 grace s, $3 shell pid, $4 shell entry, $5 centiseconds running
  local i end up min=
  [ -n "$3" ] && kill -USR1 "$3" 2>/dev/null
  if [ -n "$5" ]; then read -r up _ < /proc/uptime; min=$(( ${up/./} - $5 )); fi
  __agentrm_sweep "$1" TERM "$4" "$3" "$min"
  end=$(( ${EPOCHREALTIME/./} + ${2%.*}000000 ))
  while [ "$__agentrm_found" = 1 ] && [ "${EPOCHREALTIME/./}" -lt "$end" ]; do
    read -t 0.05 -u "$__agentrm_sfd"; __agentrm_sweep "$1" 0 "$4" "$3" "$min"
  done
  end=$(( ${EPOCHREALTIME/./} + 10000000 ))
  while [ "${EPOCHREALTIME/./}" -lt "$end" ]; do
    __agentrm_sweep "$1" KILL "$4" "$3" "$min"; [ "$__agentrm_found" = 0 ] && return 0
    read -t 0.01 -u "$__agentrm_sfd"
  done
  return 1
}
"""


def ansi_c_quote(text: str) -> str:
    """Quote as bash $'...' so any text (quotes, newlines, control bytes) is one shell word."""
    out = []
    for ch in text:
        o = ord(ch)
        if ch == "\\":
            out.append("\\\\")
        elif ch == "'":
            out.append("\\'")
        elif o < 32 or o == 127:
            out.append(f"\\x{o:02x}")
        else:
            out.append(ch)
    return "$'" + "".join(out) + "'"


class _Scanner:
    """Pass stream bytes through until the end marker, then capture the trailer line."""

    def __init__(self, marker: bytes):
        self.marker = marker
        self.pending = bytearray()
        self.done = False
        self.trailer = b""

    def feed(self, data: bytes) -> bytes:
        if self.done:
            return b""  # late output (background jobs) is not this command's
        self.pending += data
        idx = self.pending.find(self.marker)
        if idx < 0:  # hold back only a tail that could be the start of the marker
            cut = len(self.pending)
            start = self.pending.rfind(self.marker[:1], max(0, cut - len(self.marker) + 1))
            if start >= 0 and self.marker.startswith(bytes(self.pending[start:])):
                cut = start
            out = bytes(self.pending[:cut])
            del self.pending[:cut]
            return out
        nl = self.pending.find(b"\n", idx + len(self.marker))
        out = bytes(self.pending[:idx])
        if nl < 0:
            del self.pending[:idx]
            return out
        self.trailer = bytes(self.pending[idx + len(self.marker):nl])
        self.done = True
        self.pending.clear()
        return out


class PersistentShell:
    """One long-lived bash; started lazily, restarted (in the last known cwd) when it dies."""

    def __init__(self, api, container_id: str, user: str, workdir: str, env: dict[str, str],
                 prelude: str = PRELUDE):
        self.api, self.container_id, self.user, self.prelude = api, container_id, user, prelude
        self.cwd, self.env = workdir, env
        self.proc: AttachedExec | None = None
        self.restarted = False

    def start(self) -> None:
        cmd = ["bash", "--noprofile", "--norc"]
        self.shell_token = os.urandom(12).hex()
        env = {**self.env, "AGENTRM_SHELL": self.shell_token}
        self.proc = AttachedExec(self.api, self.container_id, cmd, user=self.user,
                                 workdir=self.cwd, env=env)
        # Commands run inside a function so that a timeout can end the rest of a command list:
        # the killer sends USR1 and the trap returns from the function (exit code 124).
        token = os.urandom(8).hex()
        self.proc.send((self.prelude + f"printf '\\037%s\\037%d\\n' {token} $$\n").encode())
        marker = f"\x1f{token}\x1f".encode()
        scanner = _Scanner(marker)
        for stream, data in self.proc.frames(time.monotonic() + 30):
            if stream == 1:
                scanner.feed(data)
                if scanner.done:
                    break
        if not scanner.done:
            raise OSError("the shell did not start")
        self.pid = int(scanner.trailer)

    def alive(self) -> bool:
        return self.proc is not None and not self.proc.eof

    def close(self) -> None:
        if self.proc is not None:
            self.proc.close()
            self.proc = None

    def run(self, cmd: str, timeout: float, cap: int, killer, on_output=None) -> ExecResult:
        """Run `cmd` in the shell. On timeout `killer("VAR=token", shell_pid)` interrupts the
        shell and kills the processes whose environment holds that entry."""
        note = ""
        if not self.alive():
            if self.proc is not None:
                note = "[agentrm: the shell had exited; a new shell started in the last cwd]\n"
                self.close()
            self.start()
        token = os.urandom(12).hex()
        marker = b"\x1f" + token.encode() + b"\x1f"
        line = (f"export AGENTRM_CMD={token}; __agentrm_f {ansi_c_quote(cmd)} </dev/null; "
                f"__agentrm_rc=$?; export -n AGENTRM_CMD; unset AGENTRM_CMD; "
                f"printf '\\037%s\\037%d %s\\n' {token} \"$__agentrm_rc\" \"$PWD\"; "
                f"printf '\\037%s\\037\\n' {token} >&2\n")
        rec = OutputRecorder(cap, on_output=on_output)
        scanners = {1: _Scanner(marker), 2: _Scanner(marker)}
        proc = self.proc
        proc.discard_pending()  # late output of earlier commands' background processes
        try:
            proc.send(line.encode())
        except EOFError:
            return self._died(rec, note)
        deadline = rec.start + timeout
        timed_out = False
        while True:
            try:
                for stream, data in proc.frames(deadline):
                    if stream in scanners:
                        rec.add(stream, scanners[stream].feed(data))
                    if scanners[1].done and scanners[2].done:
                        break
                else:  # EOF: the shell itself ended (exit, kill, OOM)
                    return self._died(rec, note)
                break
            except TimeoutError:
                if timed_out:  # killing the command did not return control: kill the shell
                    self._kill_shell(killer, token)
                    return self._result(rec, 124, True, note + "[agentrm: shell restarted]\n")
                timed_out = True
                killer(f"AGENTRM_CMD={token}", self.pid, f"AGENTRM_SHELL={self.shell_token}",
                       int(rec.elapsed() * 100) + 5)
                deadline = time.monotonic() + 2.0
        m = re.match(rb"(-?\d+) (.*)", scanners[1].trailer, re.S)
        rc = int(m.group(1)) if m else -1
        if m:
            self.cwd = m.group(2).decode("utf-8", "replace") or self.cwd
        return self._result(rec, 124 if timed_out else rc, timed_out, note)

    def _kill_shell(self, killer, token: str) -> None:
        """The command was a shell builtin loop (no child to kill): end the shell itself."""
        self.close()
        killer(f"AGENTRM_SHELL={self.shell_token}", None, None, None)
        self.proc = None

    def _died(self, rec: OutputRecorder, note: str) -> ExecResult:
        rc = self.proc.exit_code() if self.proc is not None else None
        # keep proc (eof) so the next run() knows to restart and say so
        return self._result(rec, rc if rc is not None else -1, False,
                            note + "[agentrm: the shell exited; the next command starts a new one]\n")

    @staticmethod
    def _result(rec: OutputRecorder, rc: int, timed_out: bool, note: str) -> ExecResult:
        stderr = rec.streams[2].text()
        if note:
            stderr = note + stderr if not stderr else stderr + ("" if stderr.endswith("\n") else "\n") + note
        return ExecResult(exit_code=rc, stdout=rec.streams[1].text(), stderr=stderr,
                          timed_out=timed_out, truncated=rec.truncated,
                          duration_s=rec.elapsed(), output_events=rec.events)
