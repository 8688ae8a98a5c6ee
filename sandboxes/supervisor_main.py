"""The in-container supervisor: runs as root, frames every command's output itself.

This file is executed inside the container, never imported on the host: standard library only,
Python >= 3.9. The container's command is a short bootstrap (BOOTSTRAP in sandboxes/shell.py)
that reads this source and the configuration from stdin, so neither shows in `ps`. It is the sandbox's machinery, so
it runs as a user the agent cannot signal or trace, and the agent's commands reach it only as
child processes whose stdout/stderr are pipes it reads:

- Each command is a fresh `bash` as the agent's uid, in a new session, with stdin /dev/null
  and nothing but fds 0/1/2. Its shell state (variables, functions, aliases, cwd) is saved by
  an EXIT trap into a state file and sourced by the next command, so the shell *feels*
  persistent while every exit code the host sees is a real wait status read here.
- Output travels to the host in frames this process writes to its own stdout: nothing a
  command prints can look like the end of a command, and there is no marker to steal.
- Timeouts are enforced here (TERM, a grace period, KILL until none is left) with os.kill
  only, so a fork bomb holding every pid cannot stop them.

Requests (one JSON object per line on stdin) and replies (frames: kind, id, length, payload)
are described in sandboxes/shell.py, the host side.
"""

import base64
import json
import os
import pwd
import select
import signal
import struct
import time

HEADER = struct.Struct(">cII")
GRACE_S = 1.0
# Startup of every command's bash. The command text arrives in the environment (or a file, when
# large), not in argv, so `pgrep -f`/`pkill -f` of the command never match its own shell. The
# previous command's state is restored *inside* the eval, after `eval` itself was resolved, so
# no function or alias the agent defined can stand in for it. The exit status of bash is the
# status before the EXIT trap ran: saving the state cannot change it.
PRELUDE = r"""__agentrm_c=$AGENTRM_C; unset AGENTRM_C
if [ -n "$AGENTRM_CF" ]; then __agentrm_c=$(< "$AGENTRM_CF"); rm -f "$AGENTRM_CF"; fi; unset AGENTRM_CF
echo 1000 > /proc/self/oom_score_adj 2>/dev/null
__agentrm_save() { { declare -p; declare -f; alias -p; printf 'cd -- %q\n' "$PWD"; } > "$AGENTRM_STATE" 2>/dev/null; }
trap __agentrm_save EXIT
eval '[ -r "$AGENTRM_STATE" ] && . "$AGENTRM_STATE" 2>/dev/null
shopt -s expand_aliases
unset __agentrm_c
'"$__agentrm_c"
"""
ENV_CMD_MAX = 100_000  # larger commands travel in a file (execve limits one string to 128 KiB)
CLEAN_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def send(kind, ident, payload=b""):
    data = HEADER.pack(kind, ident, len(payload)) + payload
    view = memoryview(data)
    while view:
        n = os.write(1, view)
        view = view[n:]


def proc_stat(pid):
    """(uid, session id, start tick) of a process, or None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            fields = fh.read().rsplit(b")", 1)[1].split()
        uid = os.stat(f"/proc/{pid}").st_uid
    except (OSError, IndexError):
        return None
    if fields[0] in (b"Z", b"X"):  # dead already, only not reaped yet
        return None
    return uid, int(fields[3]), int(fields[19])


def pids():
    return [int(p) for p in os.listdir("/proc") if p.isdigit()]


def uptime_ticks():
    with open("/proc/uptime") as fh:
        return int(float(fh.read().split()[0]) * os.sysconf("SC_CLK_TCK"))


class Supervisor:
    def __init__(self, cfg):
        user = pwd.getpwnam(cfg["user"])
        self.uid, self.gid, self.home = user.pw_uid, user.pw_gid, user.pw_dir
        self.workdir = cfg["workdir"]
        self.base_env = {"HOME": self.home, "USER": cfg["user"], "LOGNAME": cfg["user"],
                         "SHELL": "/bin/bash", "PATH": os.environ.get("PATH", CLEAN_PATH)}
        self.base_env.update({k: v for k, v in os.environ.items()
                              if k in ("LANG", "TZ", "PYTHONHASHSEED") or k.startswith("PIP_")})
        self.base_env.update(cfg.get("env") or {})
        state_dir = cfg.get("state_dir", "/run/agentrm")
        os.makedirs(state_dir, mode=0o700, exist_ok=True)
        os.chown(state_dir, self.uid, self.gid)
        self.state = os.path.join(state_dir, "state.sh")
        self.inbuf = b""
        self.queued = []  # requests that arrived while a command ran (after its cancel)
        self.lingering = []  # pipes of finished commands whose background jobs still write
        self.devnull = os.open(os.devnull, os.O_RDWR)

    # -- requests ------------------------------------------------------------------------
    def serve(self):
        send(b"H", 0, json.dumps({"pid": os.getpid()}).encode())
        while True:
            req = self.queued.pop(0) if self.queued else self.next_request(None)
            if req is None:
                return
            self.handle(req)

    def next_request(self, deadline, extra=()):
        """The next request line, or None on EOF; with `extra` fds, returns ("fd", fd) when one
        of them is readable first, or ("timeout",) after `deadline`."""
        while b"\n" not in self.inbuf:
            wait = None if deadline is None else max(0.0, deadline - time.monotonic())
            fds = [0, *extra, *self.lingering]
            ready, _, _ = select.select(fds, [], [], wait)
            if not ready:
                return ("timeout",)
            for fd in ready:
                if fd in self.lingering:
                    self.drain_lingering(fd)
                elif fd != 0:
                    return ("fd", fd)
            if 0 in ready:
                chunk = os.read(0, 1 << 16)
                if not chunk:
                    return None
                self.inbuf += chunk
        line, self.inbuf = self.inbuf.split(b"\n", 1)
        return json.loads(line)

    def handle(self, req):
        op, ident = req.get("op"), int(req.get("id", 0))
        try:
            if op == "run":
                self.run(ident, req["cmd"], float(req["timeout"]))
            elif op == "verify":
                self.verify(ident, req)
            elif op == "killall":
                n = self.kill_matching(lambda st: st[0] == self.uid)
                send(b"R", ident, json.dumps({"rc": 0, "killed": n}).encode())
            elif op == "cancel":
                send(b"R", ident, json.dumps({"rc": 0}).encode())
            else:
                send(b"X", ident, json.dumps({"error": f"unknown op {op!r}"}).encode())
        except Exception as exc:  # noqa: BLE001 - report, keep serving
            send(b"X", ident, json.dumps({"error": f"{type(exc).__name__}: {exc}"}).encode())

    # -- commands ------------------------------------------------------------------------
    def spawn(self, argv, env, cwd):
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        pid = os.fork()
        if pid == 0:  # child: only 0/1/2, a new session, the agent's uid
            try:
                os.setsid()
                os.dup2(self.devnull, 0)
                os.dup2(out_w, 1)
                os.dup2(err_w, 2)
                os.closerange(3, 65536)
                os.setgroups([])
                os.setgid(self.gid)
                os.setuid(self.uid)
                try:
                    os.chdir(cwd)
                except OSError:
                    os.chdir("/")
                signal.signal(signal.SIGPIPE, signal.SIG_DFL)
                os.execve("/bin/bash", argv, env)
            finally:
                os._exit(127)
        os.close(out_w)
        os.close(err_w)
        for fd in (out_r, err_r):
            os.set_blocking(fd, False)
        return pid, out_r, err_r

    def run(self, ident, cmd, timeout):
        env = {**self.base_env, "AGENTRM_STATE": self.state}
        if len(cmd.encode()) <= ENV_CMD_MAX:
            env["AGENTRM_C"] = cmd
        else:
            path = f"{self.state}.cmd{ident}"
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
            with os.fdopen(fd, "w") as fh:
                fh.write(cmd)
            os.chown(path, self.uid, self.gid)
            env["AGENTRM_CF"] = path
        argv = ["bash", "--noprofile", "--norc", "-c", PRELUDE, "bash"]
        self.execute(ident, argv, env, self.workdir, timeout)

    def execute(self, ident, argv, env, cwd, timeout, after=None):
        start_tick = uptime_ticks()
        try:
            pid, out_r, err_r = self.spawn(argv, env, cwd)
        except BlockingIOError:  # EAGAIN: the agent's processes hold every pid of the limit
            n = len(self.matching(lambda st: st[0] == self.uid))
            send(b"E", ident, (f"agentrm: cannot start the command: the process limit is "
                               f"reached ({n} processes of the agent's still run)\n").encode())
            send(b"R", ident, json.dumps({"rc": 126, "timed_out": False}).encode())
            return
        pidfd = os.pidfd_open(pid)
        deadline = time.monotonic() + timeout
        open_fds = {out_r: b"O", err_r: b"E"}
        timed_out, status = False, None
        while status is None:
            ev = self.next_request(deadline, [pidfd, *open_fds])
            if ev is None:  # the host went away: stop the command and leave
                self.kill_command(pid, start_tick)
                raise SystemExit(0)
            if isinstance(ev, dict):  # a cancel; anything else waits for its turn
                if ev.get("op") == "cancel" and timed_out is False:
                    self.kill_command(pid, start_tick)
                    timed_out = "cancelled"
                elif ev.get("op") != "cancel":
                    self.queued.append(ev)
                continue
            if ev[0] == "timeout":
                timed_out = True
                self.kill_command(pid, start_tick)
                deadline = time.monotonic() + 3600
                continue
            fd = ev[1]
            if fd == pidfd:
                _, raw = os.waitpid(pid, 0)
                status = raw
            else:
                if not self.forward(fd, open_fds[fd], ident):
                    os.close(fd)
                    del open_fds[fd]
        os.close(pidfd)
        for fd, kind in list(open_fds.items()):  # what the command wrote before it ended
            if self.forward(fd, kind, ident, until_empty=True):
                self.lingering.append(fd)  # a background job keeps it open: drain, discard
            else:
                os.close(fd)
        if after is not None:
            after(pid, start_tick)
        rc = os.waitstatus_to_exitcode(status)
        rc = 128 - rc if rc < 0 else rc  # killed by a signal: 128 + signal, like a shell
        if timed_out:
            rc = 124
        send(b"R", ident, json.dumps({"rc": rc, "timed_out": timed_out is True}).encode())

    def forward(self, fd, kind, ident, until_empty=False):
        """Copy what the pipe has to the host; False at EOF."""
        while True:
            try:
                chunk = os.read(fd, 1 << 16)
            except BlockingIOError:
                return True
            if not chunk:
                return False
            send(kind, ident, chunk)
            if not until_empty:
                return True

    def drain_lingering(self, fd):
        try:
            if os.read(fd, 1 << 16):
                return
        except BlockingIOError:
            return
        os.close(fd)
        self.lingering.remove(fd)

    # -- killing -------------------------------------------------------------------------
    def kill_command(self, pid, start_tick):
        """TERM, grace, KILL: the command's session, and every process of the agent's started
        since the command began (setsid and double-fork escapees included)."""
        def mine(st):
            return st[1] == pid or (st[0] == self.uid and st[2] >= start_tick)
        self.kill_matching(mine, signal.SIGTERM, once=True)
        end = time.monotonic() + GRACE_S
        while time.monotonic() < end and self.matching(mine):
            time.sleep(0.05)
        self.kill_matching(mine)

    def matching(self, pred):
        """Processes matching `pred(uid, session, start tick)`; never init, this process or
        its parent (`timeout`), nor root's processes unless the sandbox user is root."""
        keep = (1, os.getpid(), os.getppid())
        out = []
        for p in pids():
            st = None if p in keep else proc_stat(p)
            if st is not None and (st[0] != 0 or self.uid == 0) and pred(st):
                out.append(p)
        return out

    def kill_matching(self, pred, sig=signal.SIGKILL, once=False):
        """Signal every matching process; with SIGKILL, repeat until none is left (a fork
        bomb needs several rounds). Never touches root's processes (ours)."""
        total = 0
        for _ in range(1 if once else 200):
            found = self.matching(pred)
            if not found:
                break
            for p in found:
                try:
                    os.kill(p, sig)
                    total += 1
                except (ProcessLookupError, PermissionError):
                    pass
            if once:
                break
            time.sleep(0.01)
        return total

    # -- verifiers -----------------------------------------------------------------------
    def verify(self, ident, req):
        """Run a verifier as a fresh process tree after the agent stopped: every process of
        the agent's uid killed, protected files restored (root-owned, read-only), a clean
        environment and an empty HOME: nothing the agent planted in its shell applies."""
        self.kill_matching(lambda st: st[0] == self.uid)
        for path, b64 in (req.get("restore") or {}).items():
            try:
                restore_file(path, base64.b64decode(b64))
            except OSError as exc:  # e.g. the agent filled the disk: its failure, not ours
                send(b"E", ident, f"agentrm: cannot restore {path}: {exc.strerror}\n".encode())
                send(b"R", ident, json.dumps({"rc": 1, "timed_out": False}).encode())
                return
        home = f"/tmp/.agentrm-verifier-{os.getpid()}-{ident}"
        try:
            os.makedirs(home, mode=0o700, exist_ok=True)
            os.chown(home, self.uid, self.gid)
        except OSError:  # a full /tmp: the verifier runs without a writable home
            home = "/nonexistent"
        env = {"PATH": CLEAN_PATH, "HOME": home, "USER": "verifier", "LANG": "C.UTF-8",
               "TZ": "UTC", "PYTHONNOUSERSITE": "1", "PYTHONDONTWRITEBYTECODE": "1"}
        env.update(req.get("env") or {})
        argv = ["bash", "--noprofile", "--norc", "-c", req["cmd"]]
        cwd = req.get("workdir") or self.workdir
        self.execute(ident, argv, env, cwd, float(req["timeout"]),
                     after=lambda pid, tick: self.kill_matching(lambda st: st[0] == self.uid))


def restore_file(path, data):
    """Write `path` as root: 0644, owned by root, over whatever the agent left there (a
    symlink or directory included), so the verifier reads the task's own file."""
    parent = "/"
    for part in os.path.dirname(os.path.normpath(path)).strip("/").split("/"):
        parent = os.path.join(parent, part) if part else parent
        if os.path.islink(parent) or (os.path.exists(parent) and not os.path.isdir(parent)):
            os.unlink(parent)  # a planted symlink must not redirect a root write
        os.makedirs(parent, exist_ok=True)
    path = os.path.join(parent, os.path.basename(path))
    if os.path.islink(path) or os.path.isfile(path):
        os.unlink(path)
    elif os.path.isdir(path):
        import shutil
        shutil.rmtree(path)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    os.chown(path, 0, 0)


def main(cfg, pending=b""):
    # a child that died leaves EPIPE on a pipe write, not a signal that would end us
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    sup = Supervisor(cfg)
    sup.inbuf = pending
    sup.serve()


if __name__ == "agentrm_supervisor":  # run by the bootstrap with CONFIG and PENDING defined
    main(CONFIG, PENDING)  # noqa: F821
