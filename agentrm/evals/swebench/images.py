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
import time
from pathlib import Path

from agentrm.errors import InfrastructureError, PrerequisiteError
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
RUN {python} -m venv {venv}{pip_line} && rm -rf /tmp/wheels
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
LABEL agentrm.swebench.workdir={workdir}
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


def env_image(spec: EnvSpec, builds: BuildLog | None = None) -> str:
    """The environment image of a spec: base (+ Debian packages) + venv with the pip packages,
    made with the spec's Python (an InfrastructureError when the base image has none)."""
    from agentrm.sandboxes import base_image

    base = base_image(tuple(spec.apt_packages)) if spec.apt_packages else "{base}"
    python = interpreter(base_image(tuple(spec.apt_packages)), spec.python)
    files = _wheel_files(wheelhouse(spec.pip_packages)) if spec.pip_packages else {}
    if not files:
        files = {"wheels/.keep": b""}
    pre = "\n".join(f"RUN {cmd}" for cmd in spec.pre_install)
    pip = " ".join(shlex.quote(p) for p in spec.pip_packages)
    pip_line = (f" \\\n && {VENV}/bin/python -m pip install -q --no-index --find-links /tmp/wheels {pip}"
                if pip else "")
    dockerfile = ENV_DOCKERFILE.format(base=base, venv=VENV, pip_line=pip_line, pre_install=pre,
                                       python=python)
    return _build(dockerfile, files, "agentrm/swe-env", builds)


def instance_image(instance: Instance, spec: EnvSpec, repos: RepoSource,
                   builds: BuildLog | None = None) -> str:
    """The pristine instance image agentrm builds: the repository at base_commit in /workspace,
    installed, owned by agent. (Pre-built and official images: see official.py.)"""
    env = env_image(spec, builds)
    bundle = repos.bundle(instance.repo, instance.base_commit)
    install = spec.install or "true"
    dockerfile = INSTANCE_DOCKERFILE.format(env=env, workdir=WORKDIR, commit=instance.base_commit,
                                            install=install)
    return _build(dockerfile, {"repo.bundle": bundle}, "agentrm/swe-inst", builds)


_py_lock = threading.Lock()
_py_versions: dict[str, tuple[str, ...]] = {}


def python_versions(image: str) -> tuple[str, ...]:
    """The python3.X interpreters an image has (asked once per image, in a throwaway container)."""
    with _py_lock:
        if image not in _py_versions:
            from agentrm.sandboxes import SandboxConfig, run_once

            script = "for p in /usr/bin/python3.* /usr/local/bin/python3.*; do [ -x \"$p\" ] && basename \"$p\"; done; true"
            result = run_once(SandboxConfig(image=image, user="root", workdir="/"),
                              ["sh", "-c", script], timeout=120)
            found = {ln.strip().removeprefix("python") for ln in result.stdout.splitlines()}
            _py_versions[image] = tuple(sorted(v for v in found if v.count(".") == 1
                                               and v.replace(".", "").isdigit()))
    return _py_versions[image]


def interpreter(base: str, wanted: str) -> str:
    """The interpreter a venv is made with: python3 when the spec names none, else python3.X if
    the base image has it. Offline nothing else can provide it, so say so (never a silent 3.11)."""
    if not wanted:
        return "python3"
    available = python_versions(base)
    if wanted in available:
        return f"python{wanted}"
    raise InfrastructureError(
        f"the spec needs Python {wanted}; the offline base image has only "
        f"{', '.join(available) or 'no python3.X'} (grade in an image that provides it: "
        f"a row's image or --namespace)")


class BuildLog:
    """Per-image build logs under the run directory (image_builds/<name>.log): Dockerfile,
    context, resulting tag, seconds, and the engine's output when the build failed."""

    def __init__(self, directory: Path, force_rebuild: bool = False):
        self.directory = directory
        self.force_rebuild = force_rebuild
        self.built: set[str] = set()
        self._removed: set[str] = set()
        self._lock = threading.Lock()

    def write(self, name: str, dockerfile: str, files: dict[str, bytes], lines: list[str]) -> None:
        body = [f"image: {name}", "context:"] + [f"  {k} ({len(v)} bytes)" for k, v in sorted(files.items())]
        body += ["dockerfile:", *("  " + ln for ln in dockerfile.splitlines()), *lines]
        path = self.directory / f"{name.replace('/', '__').replace(':', '__')}.log"
        path.parent.mkdir(parents=True, exist_ok=True)
        with self._lock, path.open("a") as fh:
            fh.write("\n".join(body) + "\n\n")

    def note(self, name: str, lines: list[str]) -> None:
        """A log entry for an image that was not built here (pulled, or not to be had)."""
        path = self.directory / f"{name.replace('/', '__').replace(':', '__')}.log"
        path.parent.mkdir(parents=True, exist_ok=True)
        with self._lock, path.open("a") as fh:
            fh.write("\n".join([f"image: {name}", *lines]) + "\n\n")

    def forget(self, tag: str) -> None:
        """--force-rebuild: remove an existing image once per run, so it is built again."""
        from agentrm.sandboxes.engine import client

        with self._lock:
            if tag in self._removed:
                return
            self._removed.add(tag)
        try:
            client().images.remove(tag, force=True)
        except Exception:  # noqa: BLE001 - absent already: nothing to rebuild
            pass


def _build(dockerfile: str, files: dict[str, bytes], name: str, builds: BuildLog | None) -> str:
    from agentrm.sandboxes import build_image

    if builds is None:
        return build_image(dockerfile, files, name=name)
    started = time.monotonic()
    try:
        if builds.force_rebuild:  # the tag is known only from build_image: build, drop, rebuild
            builds.forget(build_image(dockerfile, files, name=name))
        tag = build_image(dockerfile, files, name=name)
    except Exception as exc:
        cause = exc.__cause__
        output = [str(x.get("stream") or x.get("error") or "").rstrip()
                  for x in getattr(cause, "build_log", []) or []]
        builds.write(name, dockerfile, files, [f"FAILED after {time.monotonic() - started:.1f}s: {exc}",
                                               "engine output:", *output])
        raise
    builds.built.add(tag)
    builds.write(tag, dockerfile, files, [f"ok in {time.monotonic() - started:.1f}s"])
    return tag


def check_docker() -> None:
    """Fail early, with one line, when there is no engine to build or run in."""
    try:
        from agentrm.sandboxes.engine import client

        client().ping()
    except Exception as exc:  # noqa: BLE001 - any failure means no usable engine
        raise PrerequisiteError(f"Docker engine not reachable: {str(exc).splitlines()[0][:160]} "
                                f"(start it, e.g. .ci/start-services docker)") from None

