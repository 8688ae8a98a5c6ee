"""Official SWE-bench images: their names, their layout, and getting them onto this machine.

Official instance images (and the ones `swebench` builds locally) keep the repository at
/testbed, run as root, and hold the environment as a conda env named `testbed` that the eval
script activates. The name comes from the package's own ImageSpec (`sweb.eval.x86_64.<id>:<tag>`,
`<namespace>/…` with `__` → `_1776_` on a registry). Layout fields may be overridden per row
(`workdir`, `activate`, `user`) or per spec (specs.yaml / --specs), never taken from constants.
"""

from __future__ import annotations

import logging
import shlex
from dataclasses import dataclass

from agentrm.errors import InputError

log = logging.getLogger("agentrm.evals.swebench.official")

PULL_POLICIES = ("never", "missing", "always")
LOCAL = "local"  # --namespace local: official names without a registry (swebench's own builds)
NONE = "none"  # --namespace none: agentrm builds its own images (the default)
# the official eval scripts' activation (swebench's CONTAINER_ENV_NAME under /opt/miniconda3)
CONDA_ROOT = "/opt/miniconda3"


@dataclass(frozen=True)
class Layout:
    """Where the repository is, how its environment is entered, and as whom tests run."""

    workdir: str = "/testbed"
    activate: tuple[str, ...] = ()
    user: str = "root"

    def wrap(self, test_cmd: str) -> str:
        """The test command run inside the activated environment. Arguments appended later
        (test files, junit options) become "$@" of the activating shell."""
        if not self.activate:
            return test_cmd
        script = "; ".join([*self.activate, 'exec "$@"'])
        return f"bash -c {shlex.quote(script)} agentrm-activate {test_cmd}"


def official_layout() -> Layout:
    """The layout of official images, from the swebench package's image-builder constants."""
    from swebench.image_builder.constants import (
        CONTAINER_ENV_NAME,
        CONTAINER_USER,
        CONTAINER_WORKDIR,
    )

    return Layout(workdir=CONTAINER_WORKDIR, user=CONTAINER_USER,
                  activate=(f"source {CONDA_ROOT}/bin/activate",
                            f"conda activate {CONTAINER_ENV_NAME}"))


def layout_for(row: dict, spec_fields: dict, default: Layout) -> Layout:
    """Row fields first, then the spec table's, then the image kind's default."""
    def pick(key: str):
        for source in (row, spec_fields):
            if source.get(key) not in (None, ""):
                return source[key]
        return getattr(default, key)

    activate = pick("activate")
    if isinstance(activate, str):
        activate = tuple(line for line in activate.splitlines() if line.strip())
    workdir = str(pick("workdir"))
    if not workdir.startswith("/"):
        raise InputError(f"workdir must be an absolute path, got {workdir!r}")
    return Layout(workdir=workdir, activate=tuple(activate), user=str(pick("user")))


def image_name(instance_id: str, namespace: str, tag: str = "latest") -> str:
    """The official instance image name (the package's ImageSpec naming)."""
    from swebench.image_builder.image_spec import ImageSpec

    ns = None if namespace == LOCAL else namespace
    return ImageSpec(instance_id=instance_id, dockerfile="-", namespace=ns, tag=tag).name


def ensure_image(name: str, pull: str = "missing") -> str:
    """Make sure `name` is on this machine, pulling through the Docker engine if the policy
    allows; a FileNotFoundError (one line, naming the image) when it cannot be had."""
    from agentrm.sandboxes.engine import APIError, ImageNotFound, client

    if pull not in PULL_POLICIES:
        raise InputError(f"unknown pull policy {pull!r} (--pull): choose {', '.join(PULL_POLICIES)}")
    engine = client()
    present = _present(engine, name)
    if pull == "never" or (pull == "missing" and present):
        if not present:
            raise FileNotFoundError(f"image {name} is not on this machine (--pull never)")
        return name
    repo, tag = _split(name)
    try:
        log.info("pulling %s", name)
        engine.images.pull(repo, tag=tag)
    except (APIError, ImageNotFound, OSError) as exc:
        reason = str(getattr(exc, "explanation", None) or exc).strip().splitlines()[0][:160]
        where = "no registry reachable" if _offline(reason) else reason
        raise FileNotFoundError(f"image {name} is not on this machine and could not be pulled "
                                f"({where})") from None
    return name


def _present(engine, name: str) -> bool:
    from agentrm.sandboxes.engine import ImageNotFound

    try:
        engine.images.get(name)
        return True
    except ImageNotFound:
        return False


def _split(name: str) -> tuple[str, str]:
    head, _, tag = name.rpartition(":")
    if not head or "/" in tag:
        return name, "latest"
    return head, tag


def _offline(reason: str) -> bool:
    signs = ("dial tcp", "lookup ", "no such host", "connection refused", "network is unreachable",
             "i/o timeout", "TLS handshake", "Temporary failure in name resolution")
    return any(s in reason for s in signs)
