"""One command as a container's own main process: `docker run -i --rm`, under our limits.

For graders that run one script in a fresh container and need no shell afterwards (the test
verifier, SWE-bench grading): a DockerSandbox would also start its persistent shell and its
control shell, which costs more than the grading itself on small repositories. Same limits,
labels, output caps and cleanup as a sandbox; the timeout kills inside the container
(`timeout -k`), and the host stops waiting a little later and removes the container.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from docker.errors import APIError, ImageNotFound, NotFound

from agentrm.errors import InputError, SandboxGone
from agentrm.sandboxes import reaper as _cleanup
from agentrm.sandboxes.attach import AttachedContainer
from agentrm.sandboxes.config import SandboxConfig
from agentrm.sandboxes.engine import LABEL_KIND, client
from agentrm.sandboxes.images import base_image
from agentrm.sandboxes.output import OutputRecorder
from agentrm.sandboxes.sandbox import host_config
from agentrm.types import ExecResult

log = logging.getLogger("agentrm.sandboxes")
KILL_AFTER_S = 2


@dataclass
class _Container:
    """What the reaper needs to remove a container on Ctrl-C or SIGTERM."""

    id: str

    def close(self) -> None:
        try:
            client().api.remove_container(self.id, force=True)
        except (NotFound, APIError):
            pass
        _cleanup.unregister(self)


def run_once(cfg: SandboxConfig, argv: list[str], *, input: bytes | str | None = None,
             timeout: float = 600.0) -> ExecResult:
    """Run `argv` as the main process of a fresh container; stdin gets `input`.

    Raises SandboxGone only when the engine fails (the container could not be created, started
    or read); the command's own failures come back in the result.
    """
    if not argv:
        raise InputError("empty command")
    cfg = cfg.validated()
    api = client().api
    image = cfg.image or base_image()
    labels = {**_cleanup.owner_labels(cfg.run_id), LABEL_KIND: "oneshot", **cfg.labels}
    cmd = ["timeout", "-k", str(KILL_AFTER_S), f"{timeout:.3f}", *argv]
    try:
        cid = api.create_container(
            image, cmd, user=cfg.user, working_dir=cfg.workdir, hostname="sandbox",
            environment=dict(cfg.env), labels=labels, stdin_open=True,
            # detach=False makes docker-py set StdinOnce: closing our stdin ends the script's
            detach=False, host_config=host_config(api, cfg, auto_remove=False))["Id"]
    except ImageNotFound as exc:
        raise InputError(f"image {image!r} not found (agentrm sandbox images)") from exc
    except APIError as exc:
        raise SandboxGone(f"could not create a container: {exc.explanation or exc}") from exc
    handle = _Container(cid)
    _cleanup.register(handle)
    try:
        return _run(api, cid, cfg, input, timeout)
    finally:
        handle.close()


def _run(api, cid: str, cfg: SandboxConfig, input, timeout: float) -> ExecResult:
    rec = OutputRecorder(cfg.output_cap)
    proc = AttachedContainer(api, cid)
    try:
        api.start(cid)
        if input is not None:
            proc.send(input.encode() if isinstance(input, str) else input)
        proc.close_stdin()
        deadline = rec.start + timeout + KILL_AFTER_S + 5
        try:
            for stream, data in proc.frames(deadline):
                rec.add(stream, data)
        except TimeoutError:
            log.warning("container %s outlived its timeout; removing it", cid[:12])
            return _result(rec, 124, timeout)
    except (OSError, EOFError, APIError) as exc:
        raise SandboxGone(f"container {cid[:12]}: {exc}") from exc
    finally:
        proc.close()
    try:
        status = api.wait(cid, timeout=max(5.0, timeout))
    except Exception as exc:  # noqa: BLE001 - the engine lost the container
        raise SandboxGone(f"container {cid[:12]}: no exit status: {exc}") from exc
    return _result(rec, int(status.get("StatusCode", -1)), timeout)


def _result(rec: OutputRecorder, code: int, timeout: float) -> ExecResult:
    timed_out = code in (124, 137) and rec.elapsed() >= timeout
    return ExecResult(exit_code=124 if timed_out else code, stdout=rec.streams[1].text(),
                      stderr=rec.streams[2].text(), timed_out=timed_out,
                      truncated=rec.truncated, duration_s=rec.elapsed(),
                      output_events=rec.events)

