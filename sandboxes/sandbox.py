"""DockerSandbox: one container with safe defaults, a persistent shell and stateless exec."""

from __future__ import annotations

import logging
import os
import threading
import time

from docker.errors import APIError, ImageNotFound, NotFound

from agentrm.errors import InputError, SandboxGone
from agentrm.sandboxes import reaper as _cleanup
from agentrm.sandboxes.attach import AttachedContainer, AttachedExec
from agentrm.sandboxes.config import SandboxConfig
from agentrm.sandboxes.engine import LABEL_KIND, client
from agentrm.sandboxes.files import FileTransfer
from agentrm.sandboxes.images import (
    AGENT_UID,
    LABEL_SEED,
    SEED_SCRIPT,
    SEED_TAR,
    base_image,
    image_labels,
)
from agentrm.sandboxes.output import OutputRecorder
from agentrm.sandboxes.shell import (
    KILL_GRACE_S,
    KILL_SCRIPT,
    SUPERVISOR_ARGV,
    Supervisor,
    bootstrap_line,
)
from agentrm.types import ExecResult

log = logging.getLogger("agentrm.sandboxes")

KILL_AFTER_S = 2  # `timeout -k`: SIGKILL this long after SIGTERM


CAP_DROP = ["NET_RAW", "MKNOD", "AUDIT_WRITE", "SYS_CHROOT", "SETFCAP", "SETPCAP",
            "NET_BIND_SERVICE"]


# The memory cgroup's OOM-kill counter (cgroup v1, then v2), readable inside the container.
OOM_PROBE = ("{ grep -h '^oom_kill ' /sys/fs/cgroup/memory/memory.oom_control "
             "/sys/fs/cgroup/memory.events 2>/dev/null || echo 'oom_kill 0'; } | head -1 | cut -d' ' -f2")


class SandboxExpired(SandboxGone):
    """The sandbox's wall-clock limit ran out and the container ended."""


class DockerSandbox(FileTransfer):
    """A Docker container to run an agent's commands in. See docs/sandboxes.md."""

    def __init__(self, cfg: SandboxConfig | None = None, **overrides):
        cfg = (cfg or SandboxConfig()).with_(**overrides) if overrides else (cfg or SandboxConfig())
        self.cfg = cfg.validated()
        self.image = cfg.image or base_image()
        self._lock = threading.RLock()  # one command at a time per sandbox
        self._close_lock = threading.Lock()  # close() must not wait for a running command
        self._closed = False
        self._snapshots = 0
        self._oom_kills = 0
        self._container = None
        self.started_at = time.monotonic()
        self.shell: Supervisor | None = None
        self.id = self._create()
        try:
            self._seed()
        except BaseException:
            self.close()
            raise

    # -- lifecycle -------------------------------------------------------------------------
    def _create(self) -> str:
        cfg = self.cfg
        api = client().api
        labels = {**_cleanup.owner_labels(cfg.run_id), LABEL_KIND: "sandbox", **cfg.labels}
        host = host_config(api, cfg)
        try:
            # create + start, never containers.run(): it pulls a missing image from a registry.
            # The main process is the supervisor, as root under the wall-clock `timeout`: the
            # agent's commands are its children (as cfg.user) and cannot signal either.
            cmd = ["timeout", "-s", "KILL", str(int(cfg.wall_clock_s)), *SUPERVISOR_ARGV]
            cid = api.create_container(
                self.image, cmd, user="root", working_dir=cfg.workdir, hostname="sandbox",
                environment=dict(cfg.env), labels=labels,
                host_config=host, detach=True, stdin_open=True)["Id"]
        except ImageNotFound as exc:
            raise InputError(f"image {self.image!r} not found (agentrm sandbox images)") from exc
        self.id = cid
        _cleanup.register(self)  # from here on, exit paths remove it
        try:
            attached = AttachedContainer(api, cid)
            api.start(cid)
            self.shell = Supervisor(attached)
            self.shell.start(bootstrap_line(cfg.user, cfg.workdir, dict(cfg.env)))
        except BaseException:
            self.close()
            raise
        return cid

    @property
    def container(self):
        """The docker SDK Container object (looked up on first use)."""
        if self._container is None:
            self._container = client().containers.get(self.id)
        return self._container

    def _seed(self) -> None:
        """Restore /workspace and /home/agent from an image's seed archive (snapshots and
        built images carry one, since tmpfs content is not part of an image)."""
        if self.cfg.user != "agent" or not image_labels(self.image).get(LABEL_SEED) == "1":
            return
        # As the agent: in a container started as a non-root user, an exec'd root has no
        # capabilities on this engine, and everything restored belongs to the agent anyway.
        rc, _, err = self._exec_raw(
            ["sh", "-c", f"tar -xpf {SEED_TAR} --no-same-owner -C / 2>&1 || exit 1"])
        if rc != 0:
            raise self._gone(f"could not restore the workspace seed: {err[:200]!r}")

    def close(self) -> None:
        """Remove the container (idempotent). Safe from another thread or a signal handler
        while a command runs: that command then raises SandboxGone."""
        with self._close_lock:
            if self._closed:
                return
            self._closed = True
            if getattr(self, "shell", None) is not None:
                self.shell.close()
            try:
                _cleanup.remove_container(self.id)
            finally:
                _cleanup.unregister(self)

    def __enter__(self) -> DockerSandbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def name(self) -> str:
        return self.container.name

    def remaining_s(self) -> float:
        return self.cfg.wall_clock_s - (time.monotonic() - self.started_at)

    def _check(self) -> None:
        if self._closed:
            raise SandboxGone(f"sandbox {self.id[:12]} was closed")
        if self.remaining_s() <= 0:
            raise SandboxExpired(f"sandbox {self.id[:12]} reached its wall-clock limit "
                                 f"({self.cfg.wall_clock_s:g} s)")

    def _gone(self, why: str) -> SandboxGone:
        """Decide whether a failure means the container is gone, and say which."""
        try:
            state = client().api.inspect_container(self.id)["State"]
            if state.get("Running"):
                return SandboxGone(f"sandbox {self.id[:12]}: {why}")
            detail = "out of memory" if state.get("OOMKilled") else f"exit {state.get('ExitCode')}"
        except (NotFound, APIError):
            detail = "removed"
        if self.remaining_s() <= 1:
            return SandboxExpired(f"sandbox {self.id[:12]} reached its wall-clock limit")
        return SandboxGone(f"sandbox {self.id[:12]} is gone ({detail}): {why}")

    # -- commands --------------------------------------------------------------------------
    def exec(self, cmd: str | list[str], timeout: float | None = None, *, stateless: bool = False,
             user: str | None = None, input: bytes | str | None = None, on_output=None,
             env: dict[str, str] | None = None, workdir: str | None = None) -> ExecResult:
        """Run a command. Persistent shell by default (cd/env persist); `stateless=True`, a list
        command, `user`, `input`, `env` or `workdir` run a separate process instead.
        Raises only SandboxGone; a timeout kills the command and returns exit code 124."""
        timeout = self._timeout(timeout)
        if "\x00" in (cmd if isinstance(cmd, str) else "".join(cmd)):
            raise InputError("command contains a NUL byte")
        if stateless or isinstance(cmd, list) or user or input is not None or env or workdir:
            return self._note_oom(self._exec_stateless(
                cmd, timeout, user=user, input=input, on_output=on_output, env=env,
                workdir=workdir))
        with self._lock:
            self._check()
            try:
                result = self.shell.run(cmd, timeout, self.cfg.output_cap, on_output=on_output)
            except SandboxGone:
                raise
            except (OSError, EOFError, TimeoutError, APIError) as exc:
                raise self._gone(str(exc) or type(exc).__name__) from exc
            return self._note_oom(result)

    def verify_exec(self, cmd: str, timeout: float = 600.0, *,
                    restore: dict[str, str | bytes] | None = None,
                    env: dict[str, str] | None = None) -> ExecResult:
        """Run a verifier outside the agent's reach: every process of the agent's is killed
        first (it gets no more turns), `restore` files are written as root (read-only for
        the agent), and `cmd` runs as a fresh process tree with a clean environment (fixed
        PATH, empty HOME, no user site-packages): nothing the agent defined in its shell or
        planted in its home applies. Raises only SandboxGone."""
        import base64

        files = {p: base64.b64encode(d.encode() if isinstance(d, str) else d).decode()
                 for p, d in (restore or {}).items()}
        with self._lock:
            self._check()
            try:
                result = self.shell.verify(cmd, self._timeout(timeout), self.cfg.output_cap,
                                           files, env)
            except (OSError, EOFError, TimeoutError, APIError) as exc:
                raise self._gone(str(exc) or type(exc).__name__) from exc
            return self._note_oom(result)

    def stop_agent(self) -> int:
        """Kill every process of the sandbox user's (the agent stopped); returns how many
        signals were sent."""
        with self._lock:
            self._check()
            try:
                return self.shell.killall()
            except (OSError, EOFError, TimeoutError, APIError) as exc:
                raise self._gone(str(exc) or type(exc).__name__) from exc

    def _note_oom(self, result: ExecResult) -> ExecResult:
        """A SIGKILLed command (137) may be the out-of-memory killer's work: ask the memory
        cgroup's counter and say so in stderr, so the trace shows why."""
        if result.exit_code != 137 or result.timed_out:
            return result
        try:
            rc, out, _ = self._exec_raw(["sh", "-c", OOM_PROBE])
        except (OSError, SandboxGone, APIError):
            return result
        count = int(out.strip() or 0) if rc == 0 and out.strip().isdigit() else 0
        if count > self._oom_kills:
            self._oom_kills = count
            note = f"[agentrm: killed by the out-of-memory killer (memory limit {self.cfg.memory})]\n"
            sep = "" if not result.stderr or result.stderr.endswith("\n") else "\n"
            result.stderr = result.stderr + sep + note
        return result

    def _timeout(self, timeout: float | None) -> float:
        t = self.cfg.default_timeout if timeout is None else float(timeout)
        if t <= 0:
            raise InputError(f"timeout must be positive, got {timeout}")
        # the supervisor needs its kill grace before the wall clock ends the container
        return max(0.01, min(t, self.remaining_s() - KILL_GRACE_S - 0.5))

    def _raise_if_gone(self) -> None:
        try:
            running = client().api.inspect_container(self.id)["State"].get("Running")
        except (NotFound, APIError):
            running = False
        if not running:
            raise self._gone("the container stopped")

    def _kill(self, match: str) -> None:
        """Kill (TERM, grace, KILL) every process whose environment holds `match`: a
        stateless exec that its own `timeout` did not end."""
        try:
            proc = AttachedExec(client().api, self.id,
                                ["bash", "-c", KILL_SCRIPT, "kill", match, str(KILL_GRACE_S)],
                                user=self.cfg.user, workdir="/")
            for _ in proc.frames(time.monotonic() + 15):
                pass
            proc.close()
        except (TimeoutError, SandboxGone, APIError, OSError) as exc:
            log.warning("could not kill %s in %s: %s", match, self.id[:12], exc)

    def _exec_stateless(self, cmd, timeout, *, user, input, on_output, env, workdir,
                        cap: int | None = None, record: bool = True) -> ExecResult:
        """A separate process under `timeout -k`; the host stops waiting a little later."""
        self._check()
        argv = list(cmd) if isinstance(cmd, list) else ["bash", "-c", cmd]
        if not argv:
            raise InputError("empty command")
        token = os.urandom(12).hex()
        wrapped = ["timeout", "-k", str(KILL_AFTER_S), f"{timeout:.3f}", *argv]
        envs = {**self.cfg.env, **(env or {}), "AGENTRM_CMD": token}
        rec = OutputRecorder(cap or self.cfg.output_cap, record_events=record, on_output=on_output)
        try:
            proc = AttachedExec(client().api, self.id, wrapped, user=user or self.cfg.user,
                                workdir=workdir or self.cfg.workdir, env=envs)
        except (SandboxGone, APIError, OSError) as exc:
            raise self._gone(f"exec could not start: {exc}") from None
        try:
            if input is not None:
                proc.send(input.encode() if isinstance(input, str) else input)
            proc.close_stdin()
            rc = self._drain(proc, rec, rec.start + timeout + KILL_AFTER_S + 3)
            if rc is None:  # the host deadline passed: `timeout` itself did not end it
                self._kill(f"AGENTRM_CMD={token}")
                rc = 124
        except (OSError, EOFError, APIError) as exc:
            raise self._gone(str(exc)) from exc
        finally:
            proc.close()
        if rc is None:
            self._raise_if_gone()
            rc = -1
        timed_out = rc in (124, 137) and rec.elapsed() >= timeout
        return ExecResult(exit_code=124 if timed_out else rc, stdout=rec.streams[1].text(),
                          stderr=rec.streams[2].text(), timed_out=timed_out,
                          truncated=rec.truncated, duration_s=rec.elapsed(),
                          output_events=rec.events)

    @staticmethod
    def _drain(proc: AttachedExec, rec: OutputRecorder, deadline: float) -> int | None:
        """Read until EOF; if the command ended but a background child still holds its output
        open, stop after a short drain instead of waiting for the child. None: deadline."""
        ended_at = None
        while True:
            now = time.monotonic()
            step = min(deadline, now + 0.25, ended_at + 0.2 if ended_at else deadline)
            try:
                for stream, data in proc.frames(step):
                    rec.add(stream, data)
                return proc.exit_code()
            except TimeoutError:
                if time.monotonic() >= deadline:
                    return None
                if ended_at is not None:
                    return proc.exit_code()
                info = proc.api.exec_inspect(proc.exec_id)
                if not info.get("Running"):
                    ended_at = time.monotonic()

    # -- snapshots -------------------------------------------------------------------------
    def snapshot(self) -> str:
        """Commit the container's filesystem as an image; return its tag. /workspace and
        /home/agent (tmpfs) travel in a seed archive; /tmp and /var/tmp are not kept."""
        with self._lock:
            self._check()
            self._snapshots += 1
            repo, tag = "agentrm/snapshot", f"{self.id[:12]}-{self._snapshots}"
            labels = {**_cleanup.owner_labels(self.cfg.run_id), LABEL_KIND: "snapshot",
                      "agentrm.parent_image": self.image, LABEL_SEED: "1"}
            rc, _, err = self._exec_raw(["sh", "-c", SEED_SCRIPT], user="root")
            if rc != 0:
                raise self._gone(f"could not archive the workspace: {err[:200]!r}")
            try:
                self.container.commit(repository=repo, tag=tag, conf={"Labels": labels})
            except (NotFound, APIError) as exc:
                raise self._gone(f"commit failed: {exc}") from exc
            return f"{repo}:{tag}"


def host_config(api, cfg: SandboxConfig, auto_remove: bool = True):
    """The limits every container of ours runs under (sandboxes and one-shot runs alike)."""
    mem = cfg.memory_bytes
    sizes = tmpfs_sizes(cfg)
    shm = sizes.pop("/dev/shm")
    return api.create_host_config(
        init=True, auto_remove=auto_remove, log_config=LogConfig(type="none"),
        network_mode="bridge" if cfg.network else "none",
        mem_limit=mem, memswap_limit=mem, nano_cpus=int(cfg.cpus * 1e9),
        pids_limit=cfg.pids, security_opt=["no-new-privileges"], cap_drop=CAP_DROP,
        shm_size=shm, tmpfs=tmpfs_mounts(cfg, sizes),
        ulimits=[_ulimit("core", 0), _ulimit("nofile", 4096)])


# Memory no tmpfs may take: tmpfs pages count against the container's memory and cannot be
# reclaimed, so with every tmpfs full the supervisor (and a verifier after the agent) must
# still fit. Without it, filling the disks is a way to crash the sandbox: reward None, not 0.
MEMORY_RESERVE = 160 << 20


def tmpfs_sizes(cfg: SandboxConfig) -> dict[str, int]:
    """Bytes per writable mount: the configured shares of `disk`, scaled down together when
    their sum would leave less than MEMORY_RESERVE of `memory`."""
    disk = cfg.disk_bytes
    sizes = {"/tmp": disk // 2, "/var/tmp": 64 << 20, "/dev/shm": 64 << 20,
             "/run/lock": 1 << 20, "/run/agentrm": 16 << 20}
    if cfg.user == "agent":  # our images' user; other users write the writable layer
        sizes[cfg.workdir] = disk
        sizes["/home/agent"] = disk // 2
    budget = max(cfg.memory_bytes - MEMORY_RESERVE, cfg.memory_bytes // 4)
    scale = min(1.0, budget / sum(sizes.values()))
    return {path: max(1 << 20, int(size * scale)) for path, size in sizes.items()}


def tmpfs_mounts(cfg: SandboxConfig, sizes: dict[str, int] | None = None) -> dict[str, str]:
    """Sized tmpfs mounts for every place the agent user can write: this engine's storage
    driver cannot limit the writable layer, so these sizes are the disk limit. /run/lock is
    world-writable on Debian-family roots; /run/agentrm holds the shell state the supervisor
    hands to the agent's uid."""
    sizes = dict(sizes or tmpfs_sizes(cfg))
    sizes.pop("/dev/shm", None)
    opts = "rw,exec,nosuid,nodev,size={}"
    modes = {"/run/agentrm": ",mode=0700"}
    owner = f",uid={AGENT_UID},gid={AGENT_UID},mode=0755"
    return {path: opts.format(size) + (owner if path in (cfg.workdir, "/home/agent") and
                                       cfg.user == "agent" else modes.get(path, ",mode=1777"))
            for path, size in sizes.items()}


def LogConfig(type: str):  # noqa: N802, A002 - mirrors docker.types.LogConfig
    from docker.types import LogConfig as _LogConfig

    return _LogConfig(type=type)


def _ulimit(name: str, value: int):
    from docker.types import Ulimit

    return Ulimit(name=name, soft=value, hard=value)
