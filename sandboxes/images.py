"""Images without a registry: a Debian base made with mmdebstrap from the host's apt sources,
and layers built FROM it, each tagged by a content hash of its recipe so it is built once.

Why content hashes: a cache keyed on a mutable name silently reuses stale images (SWE-bench's
env-image lesson); a tag that *is* the hash of its inputs cannot go stale.
"""

from __future__ import annotations

import fcntl
import hashlib
import io
import logging
import os
import subprocess
import tarfile
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from docker.errors import BuildError, ImageNotFound

from agentrm.errors import InputError, PrerequisiteError
from agentrm.sandboxes.engine import LABEL, LABEL_KIND, client

log = logging.getLogger("agentrm.sandboxes")

RECIPE_VERSION = "2"  # bump when the base recipe below changes meaning
SUITE = "bookworm"
BASE_PACKAGES = (
    "bash", "python3", "python3-pip", "python3-venv", "git", "patch", "procps",
    "ca-certificates", "coreutils", "findutils", "grep", "sed", "diffutils",
)
AGENT_UID = 1000
LABEL_SEED = "agentrm.seed"  # image carries SEED_TAR: the agent's tmpfs dirs to restore at start
SEED_TAR = "/.agentrm/seed.tar"
SEED_SCRIPT = (f"mkdir -p /.agentrm && tar -C / -cpf {SEED_TAR} --ignore-failed-read "
               "workspace home/agent 2>&1 | grep -v 'Removing leading' >&2; "
               f"test -f {SEED_TAR}")
BASE_LAYER = """FROM {rootfs}
RUN useradd --create-home --uid {uid} --shell /bin/bash agent \\
 && mkdir -p /workspace && chown agent:agent /workspace && chmod 0755 /workspace
ENV LANG=C.UTF-8 TZ=UTC PYTHONHASHSEED=0 PIP_BREAK_SYSTEM_PACKAGES=1 PIP_NO_INPUT=1 \\
    PIP_DISABLE_PIP_VERSION_CHECK=1 PATH=/home/agent/.local/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
WORKDIR /workspace
CMD ["bash"]
"""


def cache_dir() -> Path:
    """Where lock files and temporary root filesystems live (AGENTRM_CACHE overrides)."""
    root = Path(os.environ.get("AGENTRM_CACHE", Path.home() / ".cache" / "agentrm"))
    root.mkdir(parents=True, exist_ok=True)
    return root


@contextmanager
def build_lock(key: str) -> Iterator[None]:
    """An exclusive file lock per image tag: concurrent callers (threads or processes) wait for
    the first builder instead of building the same image twice."""
    lock_dir = cache_dir() / "locks"
    lock_dir.mkdir(exist_ok=True)
    path = lock_dir / (hashlib.sha256(key.encode()).hexdigest()[:24] + ".lock")
    with open(path, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


_labels_cache: dict[str, dict[str, str]] = {}  # image tag -> labels; tags are content hashes


def image_labels(tag: str) -> dict[str, str]:
    """An image's labels (cached per process: our tags are content-addressed)."""
    if tag not in _labels_cache:
        try:
            attrs = client().api.inspect_image(tag)
        except ImageNotFound:
            return {}
        _labels_cache[tag] = (attrs.get("Config") or {}).get("Labels") or {}
    return _labels_cache[tag]


def _image_exists(tag: str) -> bool:
    """Asks the engine every time: an image removed since (a SWE-bench run's retention, `docker
    rmi`) must be built again, not taken for present from the label cache."""
    _labels_cache.pop(tag, None)
    image_labels(tag)
    return tag in _labels_cache


def apt_source_files(suite: str = SUITE) -> list[Path]:
    """The host's apt source files that name `suite` (AGENTRM_APT_SOURCES: one explicit file)."""
    override = os.environ.get("AGENTRM_APT_SOURCES")
    if override:
        path = Path(override)
        if not path.is_file():
            raise InputError("AGENTRM_APT_SOURCES is not a file", path=override)
        return [path]
    candidates = [Path("/etc/apt/sources.list")]
    candidates += sorted(Path("/etc/apt/sources.list.d").glob("*.list"))
    candidates += sorted(Path("/etc/apt/sources.list.d").glob("*.sources"))
    found = []
    for path in candidates:
        try:
            text = path.read_text()
        except OSError:
            continue
        active = [ln for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
        if any(suite in ln for ln in active):
            found.append(path)
    return found


def base_recipe(extra_packages: Sequence[str] = ()) -> dict:
    sources = apt_source_files()
    return {
        "version": RECIPE_VERSION, "suite": SUITE, "variant": "minbase",
        "packages": sorted(set(BASE_PACKAGES) | set(extra_packages)),
        "sources": [p.read_text() for p in sources], "layer": BASE_LAYER, "uid": AGENT_UID,
    }


def recipe_hash(*parts: object) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(repr(part).encode())
        h.update(b"\0")
    return h.hexdigest()[:16]


_base_tags: dict[tuple[str, ...], str] = {}


def base_image(extra_packages: Sequence[str] = ()) -> str:
    """Tag of the Debian base image (built on first use, then reused; safe to call concurrently).

    extra_packages: more Debian packages, installed by mmdebstrap from the host's apt sources.
    """
    key = tuple(sorted(extra_packages))
    if key in _base_tags and _image_exists(_base_tags[key]):
        return _base_tags[key]
    _base_tags[key] = tag = _base_image(extra_packages)
    return tag


def _base_image(extra_packages: Sequence[str]) -> str:
    recipe = base_recipe(extra_packages)
    digest = recipe_hash(recipe)
    tag = f"agentrm/base:{digest}"
    if _image_exists(tag):
        return tag
    with build_lock(tag):
        if _image_exists(tag):  # somebody else built it while we waited
            return tag
        rootfs = f"agentrm/rootfs:{digest}"
        if not _image_exists(rootfs):
            _import_rootfs(rootfs, recipe)
        dockerfile = BASE_LAYER.format(rootfs=rootfs, uid=AGENT_UID)
        _docker_build(tag, dockerfile, {}, kind="base", recipe=digest)
    return tag


def _import_rootfs(tag: str, recipe: dict) -> None:
    """mmdebstrap a root filesystem tarball and `docker import` it (about a minute)."""
    if not _which("mmdebstrap"):
        raise PrerequisiteError("mmdebstrap is not installed (apt-get install mmdebstrap)")
    log.info("building Debian %s root filesystem for %s", SUITE, tag)
    with tempfile.TemporaryDirectory(dir=cache_dir(), prefix="rootfs-") as tmp:
        out = Path(tmp) / "rootfs.tar"
        cmd = ["mmdebstrap", f"--variant={recipe['variant']}",
               "--include=" + ",".join(recipe["packages"]),
               "--aptopt=Acquire::Retries \"3\"", "--quiet", SUITE, str(out)]
        cmd += [str(p) for p in apt_source_files()]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            tail = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
            raise PrerequisiteError(f"mmdebstrap failed (exit {proc.returncode}): {tail}")
        repo, _, version = tag.partition(":")
        client().api.import_image(
            src=str(out), repository=repo, tag=version,
            changes=[f'LABEL {LABEL}="1" {LABEL_KIND}="rootfs"', 'CMD ["bash"]'])
    if not _image_exists(tag):
        raise PrerequisiteError(f"docker import of {tag} did not produce an image")


def _which(name: str) -> bool:
    from shutil import which

    return which(name) is not None


def _context_files(context: Path | dict[str, bytes] | None) -> dict[str, tuple[bytes, int]]:
    """Normalise a build context to {relative path: (bytes, mode)} for hashing and tarring."""
    if context is None:
        return {}
    if isinstance(context, dict):
        return {k: (v.encode() if isinstance(v, str) else v, 0o644) for k, v in context.items()}
    root = Path(context)
    if not root.is_dir():
        raise InputError("build context is not a directory", path=str(root))
    files = {}
    for path in sorted(root.rglob("*")):
        if path.is_file():
            mode = 0o755 if os.access(path, os.X_OK) else 0o644
            files[path.relative_to(root).as_posix()] = (path.read_bytes(), mode)
    return files


def _context_tar(dockerfile: str, files: dict[str, tuple[bytes, int]]) -> io.BytesIO:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, (data, mode) in [("Dockerfile", (dockerfile.encode(), 0o644)), *files.items()]:
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), mode, 0
            tar.addfile(info, io.BytesIO(data))
    buf.seek(0)
    return buf


def _docker_build(tag: str, dockerfile: str, files: dict, kind: str, recipe: str) -> None:
    """Build without network and without pulling: every input is on this machine."""
    try:
        client().images.build(
            fileobj=_context_tar(dockerfile, files), custom_context=True, tag=tag, rm=True,
            forcerm=True, pull=False, network_mode="none",
            labels={LABEL: "1", LABEL_KIND: kind, "agentrm.recipe": recipe})
    except BuildError as exc:
        lines = [str(x.get("stream") or x.get("error") or "").strip() for x in exc.build_log]
        detail = " | ".join([ln for ln in lines if ln][-3:])
        raise InputError(f"docker build of {tag} failed: {exc.msg}; {detail}") from exc


def build_image(dockerfile: str, context: Path | dict[str, bytes] | None = None,
                name: str = "agentrm/env") -> str:
    """Build `dockerfile` (its `FROM {base}` is replaced by base_image()) and return its tag,
    `name:<hash of dockerfile and context>`; reused when it exists."""
    if "{base}" in dockerfile:
        dockerfile = dockerfile.replace("{base}", base_image())
    # Sandboxes mount tmpfs over /workspace and /home/agent; keep their built content in a
    # seed archive that DockerSandbox restores at start.
    dockerfile = dockerfile.rstrip("\n") + (
        f"\nUSER root\nRUN {SEED_SCRIPT}\nLABEL {LABEL_SEED}=\"1\"\n")
    files = _context_files(context)
    digest = recipe_hash(dockerfile, sorted((k, hashlib.sha256(v).hexdigest(), m)
                                            for k, (v, m) in files.items()))
    tag = f"{name}:{digest}"
    if _image_exists(tag):
        return tag
    with build_lock(tag):
        if not _image_exists(tag):
            _docker_build(tag, dockerfile, files, kind="env", recipe=digest)
    return tag
