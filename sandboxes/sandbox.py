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
    KILLER_DEF,
    PRELUDE,
    WRAPPER,
    PersistentShell,
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
        self._closed = False
        self._snapshots = 0
        self._oom_kills = 0
        self._container = None
        self.started_at = time.monotonic()
        self._shell_token = os.urandom(12).hex()
        api = client().api
        self.shell = PersistentShell(api, "", cfg.user, cfg.workdir, dict(cfg.env))
        self.id = self._create()
        self.shell.container_id = self.id
        # A second, idle shell that kills with builtins only (see shell.KILLER_DEF); started
        # in the background so that it does not add to the time to the first command.
        self.control = PersistentShell(api, self.id, cfg.user, "/", {},
                                       prelude=PRELUDE + KILLER_DEF)
        self._control_ready = threading.Thread(target=self._start_control, daemon=True)
        try:
            self._seed()
            self._control_ready.start()
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
            # create + start, never containers.run(): it pulls a missing image from a registry
            # The main process is the first persistent shell (under the wall-clock `timeout`);
            # when it exits the container stays up for later shells (`sleep infinity`).
            cmd = ["timeout", "-s", "KILL", str(int(cfg.wall_clock_s)), "sh", "-c",
                   WRAPPER + "; exec sleep infinity"]
            cid = api.create_container(
                self.image, cmd, user=cfg.user, working_dir=cfg.workdir, hostname="sandbox",
                environment={**cfg.env, "AGENTRM_SHELL": self._shell_token}, labels=labels,
                host_config=host, detach=True, stdin_open=True)["Id"]
        except ImageNotFound as exc:
            raise InputError(f"image {self.image!r} not found (agentrm sandbox images)") from exc
        self.id = cid
        _cleanup.register(self)  # from here on, exit paths remove it
        try:
            attached = AttachedContainer(api, cid)
            api.start(cid)
            self.shell.container_id = cid
            self.shell.start(attached=attached, shell_token=self._shell_token)
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

    def _start_control(self) -> None:
        try:
            self.control.start()
        except Exception as exc:  # noqa: BLE001 - the one-off exec killer remains
            if not self._closed:
                log.warning("control shell of %s did not start: %s", self.id[:12], exc)

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
        """Remove the container (idempotent)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            for sh in (getattr(self, "shell", None), getattr(self, "control", None)):
                if sh is not None:
                    sh.close()
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
                self._ensure_control()
                result = self.shell.run(cmd, timeout, self.cfg.output_cap, self._kill,
                                        on_output=on_output)
            except SandboxGone:
                raise
            except (OSError, APIError) as exc:
                raise self._gone(str(exc)) from exc
            if result.exit_code == -1 or "[agentrm: the shell exited" in result.stderr:
                self._raise_if_gone()
            return self._note_oom(result)

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
        return max(0.01, min(t, self.remaining_s()))

    def _raise_if_gone(self) -> None:
        try:
            running = client().api.inspect_container(self.id)["State"].get("Running")
        except (NotFound, APIError):
            running = False
        if not running:
            raise self._gone("the container stopped")

    def _ensure_control(self) -> None:
        """Restart the control shell if it died (e.g. the OOM killer took it); failing that,
        timeouts fall back to a one-off exec killer, so this never fails the command."""
        if self._control_ready.is_alive():
            return  # still starting; _kill() waits for it
        if not self.control.alive():
            self.control.close()
            try:
                self.control.start()
            except (OSError, EOFError, TimeoutError, SandboxGone, APIError) as exc:
                self.control.close()
                log.warning("control shell of %s did not restart: %s", self.id[:12], exc)

    def _kill(self, match: str, shell_pid: int | None = None, shell_match: str | None = None,
              running_cs: int | None = None, kill_shell: bool = False) -> None:
        """Kill (TERM, grace, KILL) every process whose environment holds `match`, after
        interrupting the shell's current command list (USR1) when `shell_pid` is given.
        The control shell does it without forking; a one-off exec is the fallback."""
        self._control_ready.join(timeout=30)
        if self.control.alive():
            args = [match, KILL_GRACE_S, shell_pid or "''", shell_match or "''",
                    running_cs or "''", int(kill_shell)]
            r = self.control.run("__agentrm_kill " + " ".join(map(str, args)), 30, 1 << 16,
                                 lambda *a: None)
            if r.exit_code == 0:
                return
            log.warning("control shell could not kill %s in %s: %s", match, self.id[:12],
                        r.stderr.strip()[-200:])
        try:
            proc = AttachedExec(client().api, self.id,
                                ["bash", "-c", KILL_SCRIPT, "kill", match, str(KILL_GRACE_S),
                                 str(shell_pid or ""), str(int(kill_shell))],
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
        envs = {**self.cfg.env, **(env or {}), "AGENTRM_CMD": token, "AGENTRM_SHELL": ""}
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
    return api.create_host_config(
        init=True, auto_remove=auto_remove, log_config=LogConfig(type="none"),
        network_mode="bridge" if cfg.network else "none",
        mem_limit=mem, memswap_limit=mem, nano_cpus=int(cfg.cpus * 1e9),
        pids_limit=cfg.pids, security_opt=["no-new-privileges"], cap_drop=CAP_DROP,
        tmpfs=tmpfs_mounts(cfg), ulimits=[_ulimit("core", 0), _ulimit("nofile", 4096)])


def tmpfs_mounts(cfg: SandboxConfig) -> dict[str, str]:
    """Sized tmpfs mounts for every place the agent user can write: this engine's storage
    driver cannot limit the writable layer, so these sizes are the disk limit."""
    disk = cfg.disk_bytes
    opts = "rw,exec,nosuid,nodev,size={}"
    mounts = {"/tmp": opts.format(disk // 2) + ",mode=1777",
              "/var/tmp": opts.format(64 << 20) + ",mode=1777"}
    if cfg.user == "agent":  # our images' user; other users write the writable layer
        owner = f",uid={AGENT_UID},gid={AGENT_UID},mode=0755"
        mounts[cfg.workdir] = opts.format(disk) + owner
        mounts["/home/agent"] = opts.format(disk // 2) + owner
    return mounts


def LogConfig(type: str):  # noqa: N802, A002 - mirrors docker.types.LogConfig
    from docker.types import LogConfig as _LogConfig

    return _LogConfig(type=type)


def _ulimit(name: str, value: int):
    from docker.types import Ulimit

    return Ulimit(name=name, soft=value, hard=value)
