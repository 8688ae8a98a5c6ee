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
[ "$4" = 1 ] && kill -KILL "$3" 2>/dev/null
find_pids() { grep -lsaF "$t" /proc/[0-9]*/environ 2>/dev/null | cut -d/ -f3 | grep -vx "$$"; }
p=$(find_pids); [ -n "$p" ] && kill -TERM $p 2>/dev/null
end=$(( $(date +%s%N) + ${grace%.*}000000000 ))
while [ -n "$(find_pids)" ] && [ "$(date +%s%N)" -lt "$end" ]; do sleep 0.05; done
for i in $(seq 1 50); do p=$(find_pids); [ -z "$p" ] && exit 0; kill -KILL $p 2>/dev/null; done
exit 1
"""


# The shell runs under a wrapper that reports its death (exit, kill, OOM) with a marker made of
# its own token, even when background processes keep the output stream open.
WRAPPER = ('bash --noprofile --norc; rc=$?; printf "\\037%s\\037died %d\\n" "$AGENTRM_SHELL" "$rc"; '
           'printf "\\037%s\\037died\\n" "$AGENTRM_SHELL" >&2')

PRELUDE = "__agentrm_f() { eval \"$1\"; }\ntrap 'return 124 2>/dev/null' USR1\n"

# The same killer in builtins only, for the control shell started next to the persistent one:
# it needs no fork, so it works when a fork bomb holds every pid the sandbox may have.
KILLER_DEF = r"""
exec {__agentrm_sfd}<> <(:)
__agentrm_sweep() {  # $1 env entry, $2 signal, $3 shell's env entry, $4 shell pid, $5 min start tick
  local f p x st line; local -a e fld; __agentrm_found=0
  for f in /proc/[0-9]*/environ; do
    p=${f#/proc/}; p=${p%/environ}; st=; fld=()
    case " $$ $4 $__agentrm_keep " in *" $p "*) continue;; esac
    mapfile -d '' -t e 2>/dev/null < "$f" || continue
    for x in "${e[@]}"; do
      if [ "$x" = "$1" ]; then st=hit; break; fi
      if [ "$x" = "$3" ]; then st=shell; fi
    done
    if [ "$st" = shell ] && [ -n "$5" ]; then  # a subshell forked by the shell: new enough?
      read -r line 2>/dev/null < "/proc/$p/stat" || continue
      fld=(${line##*) })
      [ "${#fld[@]}" -gt 19 ] && [ "${fld[19]}" -ge "$5" ] && st=hit
    fi
    if [ "$st" = hit ]; then kill -"$2" "$p" 2>/dev/null; __agentrm_found=1; fi
  done
}
__agentrm_ancestors() {  # PID 1 and the shell's ancestors (wrapper, timeout): never killed
  local p=$1 line; local -a fld; __agentrm_keep=1
  while [ -n "$p" ] && [ "$p" -gt 1 ]; do
    read -r line 2>/dev/null < "/proc/$p/stat" || break
    fld=(${line##*) }); p=${fld[1]}; __agentrm_keep="$__agentrm_keep $p"
  done
}
__agentrm_kill() {  # $1 cmd entry, $2 grace s, $3 shell pid, $4 shell entry, $5 centiseconds
  local i end up min=                     # running, $6 1 = also kill the shell itself
  __agentrm_ancestors "$3"
  [ "$6" = 1 ] && kill -KILL "$3" 2>/dev/null
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
    """Pass stream bytes through until an end marker, then capture the trailer line.
    `markers`: the command's end marker and the shell's death marker; `which` says which."""

    def __init__(self, *markers: bytes):
        self.markers = markers
        self.pending = bytearray()
        self.done = False
        self.trailer = b""
        self.which = -1

    def _find(self) -> tuple[int, int]:
        hits = [(self.pending.find(m), i) for i, m in enumerate(self.markers)]
        hits = [h for h in hits if h[0] >= 0]
        return min(hits) if hits else (-1, -1)

    def _holdback(self) -> int:
        """Where a possible marker prefix starts at the end of pending (else len)."""
        cut = len(self.pending)
        longest = max(len(m) for m in self.markers)
        start = self.pending.rfind(b"\x1f", max(0, cut - longest + 1))
        if start >= 0 and any(m.startswith(bytes(self.pending[start:])) for m in self.markers):
            return start
        return cut

    def feed(self, data: bytes) -> bytes:
        if self.done:
            return b""  # late output (background jobs) is not this command's
        self.pending += data
        idx, which = self._find()
        if idx < 0:
            cut = self._holdback()
            out = bytes(self.pending[:cut])
            del self.pending[:cut]
            return out
        marker = self.markers[which]
        nl = self.pending.find(b"\n", idx + len(marker))
        out = bytes(self.pending[:idx])
        if nl < 0:
            del self.pending[:idx]
            return out
        self.trailer = bytes(self.pending[idx + len(marker):nl])
        self.done, self.which = True, which
        self.pending.clear()
        return out


class PersistentShell:
    """One long-lived bash; restarted (in the last known cwd) when it dies.

    The first shell may be the container's own main process (`attach`: saves an exec round
    trip at start); later ones are started with docker exec under the same WRAPPER."""

    def __init__(self, api, container_id: str, user: str, workdir: str, env: dict[str, str],
                 prelude: str = PRELUDE):
        self.api, self.container_id, self.user, self.prelude = api, container_id, user, prelude
        self.cwd, self.env = workdir, env
        self.proc: AttachedExec | None = None
        self.dead = False
        self.pid = 0
        self.shell_token = ""

    def start(self, attached=None, shell_token: str | None = None) -> None:
        """Start a shell by exec, or adopt `attached` (the container's main process)."""
        self.dead = False
        if attached is not None:
            self.shell_token, self.proc = shell_token, attached
        else:
            self.shell_token = os.urandom(12).hex()
            env = {**self.env, "AGENTRM_SHELL": self.shell_token}
            self.proc = AttachedExec(self.api, self.container_id, ["sh", "-c", WRAPPER],
                                     user=self.user, workdir=self.cwd, env=env)
        # Commands run inside a function so that a timeout can end the rest of a command list:
        # the killer sends USR1 and the trap returns from the function (exit code 124).
        token = os.urandom(8).hex()
        self.proc.send((self.prelude + f"printf '\\037%s\\037%d\\n' {token} $$\n").encode())
        scanner = _Scanner(f"\x1f{token}\x1f".encode(), self._death_marker())
        for stream, data in self.proc.frames(time.monotonic() + 60):
            if stream == 1:
                scanner.feed(data)
                if scanner.done:
                    break
        if scanner.which != 0:
            raise OSError("the shell did not start")
        self.pid = int(scanner.trailer)

    def _restart(self, attempts: int = 3) -> None:
        """Start a new shell; retried, since right after a fork bomb or an OOM kill the
        sandbox may briefly have no pid or memory to spare."""
        for attempt in range(attempts):
            try:
                self.start()
                return
            except (OSError, EOFError, TimeoutError):
                self.close()
                if attempt == attempts - 1:
                    raise
                time.sleep(0.5 * (attempt + 1))

    def _death_marker(self) -> bytes:
        return f"\x1f{self.shell_token}\x1f".encode()

    def alive(self) -> bool:
        return self.proc is not None and not self.proc.eof and not self.dead

    def close(self) -> None:
        if self.proc is not None:
            self.proc.close()
            self.proc = None

    def run(self, cmd: str, timeout: float, cap: int, killer, on_output=None) -> ExecResult:
        """Run `cmd` in the shell. On timeout `killer(cmd_entry, shell_pid, shell_entry,
        running_cs, kill_shell)` interrupts the shell and kills the command's processes."""
        note = ""
        if not self.alive():
            if self.proc is not None:
                note = "[agentrm: the shell had exited; a new shell started in the last cwd]\n"
                self.close()
            self._restart()
        token = os.urandom(12).hex()
        line = (f"export AGENTRM_CMD={token}; __agentrm_f {ansi_c_quote(cmd)} </dev/null; "
                f"__agentrm_rc=$?; export -n AGENTRM_CMD; unset AGENTRM_CMD; "
                f"printf '\\037%s\\037%d %s\\n' {token} \"$__agentrm_rc\" \"$PWD\"; "
                f"printf '\\037%s\\037\\n' {token} >&2\n")
        rec = OutputRecorder(cap, on_output=on_output)
        marker = f"\x1f{token}\x1f".encode()
        scanners = {1: _Scanner(marker, self._death_marker()),
                    2: _Scanner(marker, self._death_marker())}
        proc = self.proc
        proc.discard_pending()  # late output of earlier commands' background processes
        try:
            proc.send(line.encode())
        except EOFError:
            return self._died(rec, note, None)
        deadline = rec.start + timeout
        args = (f"AGENTRM_CMD={token}", self.pid, f"AGENTRM_SHELL={self.shell_token}")
        try:
            return self._collect(proc, rec, scanners, deadline, args, killer, note)
        except BaseException:
            # interrupted mid-command (Ctrl-C, a socket error): this shell's stream is out of
            # step now, so the next command gets a fresh shell
            self.dead = True
            self.close()
            raise

    def _collect(self, proc, rec, scanners, deadline, args, killer, note) -> ExecResult:
        timed_out = False
        while not (scanners[1].done and scanners[2].done):
            try:
                for stream, data in proc.frames(deadline):
                    if stream in scanners:
                        rec.add(stream, scanners[stream].feed(data))
                    if scanners[1].done and scanners[2].done:
                        break
                else:  # EOF without a marker: the connection itself ended
                    return self._died(rec, note, None)
            except TimeoutError:
                if timed_out:  # interrupting did not return control: end the shell itself
                    killer(*args, int(rec.elapsed() * 100) + 5, True)
                    self.dead = True
                    return self._result(rec, 124, True, note + "[agentrm: shell restarted]\n")
                timed_out = True
                killer(*args, int(rec.elapsed() * 100) + 5, False)
                deadline = time.monotonic() + 2.0
            if scanners[1].which == 1 or scanners[2].which == 1:  # the shell died
                return self._died(rec, note, scanners[1].trailer)
        m = re.match(rb"(-?\d+) (.*)", scanners[1].trailer, re.S)
        rc = int(m.group(1)) if m else -1
        if m:
            self.cwd = m.group(2).decode("utf-8", "replace") or self.cwd
        return self._result(rec, 124 if timed_out else rc, timed_out, note)

    def _died(self, rec: OutputRecorder, note: str, trailer: bytes | None) -> ExecResult:
        self.dead = True
        m = re.match(rb"died (-?\d+)", trailer or b"")
        rc = int(m.group(1)) if m else -1
        return self._result(rec, rc, False,
                            note + "[agentrm: the shell exited; the next command starts a new one]\n")

    @staticmethod
    def _result(rec: OutputRecorder, rc: int, timed_out: bool, note: str) -> ExecResult:
        stderr = rec.streams[2].text()
        if note:
            stderr = note + stderr if not stderr else stderr + ("" if stderr.endswith("\n") else "\n") + note
        return ExecResult(exit_code=rc, stdout=rec.streams[1].text(), stderr=stderr,
                          timed_out=timed_out, truncated=rec.truncated,
                          duration_s=rec.elapsed(), output_events=rec.events)
