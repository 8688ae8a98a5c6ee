"""Image layering base → environment (per repo+version) → instance (repo at base_commit).

Every layer is built with agentrm.sandboxes.build_image, whose tag is a hash of the Dockerfile
and context, so a spec change makes a new image and an unchanged one is reused. Nothing is
fetched from inside a build: Debian packages go into the base through the host's apt sources,
pip packages through a wheelhouse made on the host with `pip download` (cached), and the
repository through a git bundle of `base_commit` made on the host.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shlex
import subprocess
import sys
import threading
from pathlib import Path

from agentrm.errors import PrerequisiteError
from agentrm.evals.swebench.dataset import Instance
from agentrm.evals.swebench.repos import RepoSource, cache_dir
from agentrm.evals.swebench.specs import EnvSpec

log = logging.getLogger("agentrm.evals.swebench.images")

WORKDIR = "/workspace"  # the sandboxes keep the agent's workdir on a sized tmpfs, seeded from the image
VENV = "/opt/venv"
_wheel_lock = threading.Lock()

ENV_DOCKERFILE = """FROM {base}
USER root
COPY wheels /tmp/wheels
RUN python3 -m venv {venv}{pip_line} && rm -rf /tmp/wheels
RUN git config --system safe.directory '*' \\
 && git config --system user.name agentrm && git config --system user.email agentrm@example.invalid \\
 && git config --system advice.detachedHead false
ENV PATH={venv}/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin VIRTUAL_ENV={venv} \\
    PYTHONDONTWRITEBYTECODE=1 PIP_NO_INDEX=1
{pre_install}"""

INSTANCE_DOCKERFILE = """FROM {env}
USER root
COPY repo.bundle /tmp/repo.bundle
RUN git clone -q --no-checkout /tmp/repo.bundle {workdir} && rm /tmp/repo.bundle \\
 && cd {workdir} && git checkout -q -B main {commit} && git remote remove origin
WORKDIR {workdir}
RUN {install}
# whatever the install left untracked (egg-info, build dirs) is not part of anyone's diff
RUN git ls-files --others --exclude-standard --directory >> .git/info/exclude \\
 && chown -R agent:agent {workdir}
"""


def wheelhouse(packages: tuple[str, ...]) -> Path:
    """A directory of wheels for `packages`, made once on the host with `pip download`.

    AGENTRM_WHEELHOUSE=DIR uses a prepared directory instead (machines without a package index).
    """
    override = os.environ.get("AGENTRM_WHEELHOUSE")
    if override:
        return Path(override)
    key = hashlib.sha256("\n".join(sorted(packages)).encode()).hexdigest()[:16]
    target = cache_dir() / "swebench" / "wheelhouse" / key
    with _wheel_lock:
        if (target / ".complete").exists():
            return target
        target.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "pip", "download", "-q", "--disable-pip-version-check",
               "--only-binary=:all:", "-d", str(target), *packages]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
        if proc.returncode != 0:
            tail = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
            raise PrerequisiteError(f"cannot make the wheelhouse for {' '.join(packages)}: {tail} "
                                    f"(set AGENTRM_WHEELHOUSE=DIR to a directory of wheels)")
        (target / ".complete").write_text("\n".join(packages))
    return target


def _wheel_files(directory: Path) -> dict[str, bytes]:
    return {f"wheels/{p.name}": p.read_bytes() for p in sorted(directory.iterdir())
            if p.suffix in (".whl", ".gz", ".zip")}


def env_image(spec: EnvSpec) -> str:
    """The environment image of a spec: base (+ Debian packages) + venv with the pip packages."""
    from agentrm.sandboxes import base_image, build_image

    base = base_image(tuple(spec.apt_packages)) if spec.apt_packages else "{base}"
    files = _wheel_files(wheelhouse(spec.pip_packages)) if spec.pip_packages else {}
    if not files:
        files = {"wheels/.keep": b""}
    pre = "\n".join(f"RUN {cmd}" for cmd in spec.pre_install)
    pip = " ".join(shlex.quote(p) for p in spec.pip_packages)
    pip_line = (f" \\\n && {VENV}/bin/python -m pip install -q --no-index --find-links /tmp/wheels {pip}"
                if pip else "")
    dockerfile = ENV_DOCKERFILE.format(base=base, venv=VENV, pip_line=pip_line, pre_install=pre)
    return build_image(dockerfile, files, name="agentrm/swe-env")


def instance_image(instance: Instance, spec: EnvSpec, repos: RepoSource) -> str:
    """The pristine instance image: the repository at base_commit, installed, owned by agent.

    v5 rows name their image; it must already exist on this machine (nothing is pulled).
    """
    if instance.image:
        from agentrm.sandboxes.engine import client

        try:
            client().images.get(instance.image)
        except Exception:  # noqa: BLE001 - ImageNotFound or an API error: either way unusable
            raise FileNotFoundError(f"image {instance.image} is not on this machine "
                                    f"(load it with docker load / docker pull first)") from None
        return instance.image
    from agentrm.sandboxes import build_image

    env = env_image(spec)
    bundle = repos.bundle(instance.repo, instance.base_commit)
    install = spec.install or "true"
    dockerfile = INSTANCE_DOCKERFILE.format(env=env, workdir=WORKDIR, commit=instance.base_commit,
                                            install=install)
    name = "agentrm/swe-inst"
    return build_image(dockerfile, {"repo.bundle": bundle}, name=name)


def check_docker() -> None:
    """Fail early, with one line, when there is no engine to build or run in."""
    try:
        from agentrm.sandboxes.engine import client

        client().ping()
    except Exception as exc:  # noqa: BLE001 - any failure means no usable engine
        raise PrerequisiteError(f"Docker engine not reachable: {str(exc).splitlines()[0][:160]} "
                                f"(start it, e.g. .ci/start-services docker)") from None

