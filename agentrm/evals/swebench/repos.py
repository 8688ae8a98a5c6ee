"""Where instance repositories come from: bundled source trees, mirror directories, git URLs.

An instance image needs the repository at `base_commit` with its history up to that commit and
nothing after it (later commits would show the agent the fix). So every source is turned into
a git bundle of `base_commit` alone, which the image build clones.

The bundled repositories are plain source trees in the package; their git repositories are
created at run time with fixed author, committer, dates and file modes, so their commit hashes
(the dataset's `base_commit`) are the same on every machine.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from agentrm.files import atomic_write

log = logging.getLogger("agentrm.evals.swebench.repos")

DATA = Path(__file__).resolve().parent / "data"
BUNDLED_REPOS = DATA / "repos"
FIXED_DATE = "2024-01-01T00:00:00+00:00"
FIXED_IDENTITY = ("agentrm", "agentrm@example.invalid")
_SKIP = {"__pycache__", ".pytest_cache", ".git"}


def cache_dir() -> Path:
    try:
        from agentrm.models import cache_dir as models_cache_dir
        return Path(models_cache_dir())
    except ImportError:  # the models module is optional here; same convention
        root = os.environ.get("AGENTRM_CACHE") or os.path.join(
            os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "agentrm")
        return Path(root)


def git_env() -> dict[str, str]:
    """An environment in which git ignores the user's config and stamps fixed identities."""
    name, email = FIXED_IDENTITY
    env = dict(os.environ)
    env.update(GIT_CONFIG_NOSYSTEM="1", GIT_CONFIG_GLOBAL=os.devnull, GIT_TERMINAL_PROMPT="0",
               GIT_AUTHOR_NAME=name, GIT_AUTHOR_EMAIL=email, GIT_AUTHOR_DATE=FIXED_DATE,
               GIT_COMMITTER_NAME=name, GIT_COMMITTER_EMAIL=email, GIT_COMMITTER_DATE=FIXED_DATE,
               TZ="UTC", LC_ALL="C")
    return env


def git(*args: str, cwd: Path | None = None, input: bytes | None = None) -> str:
    proc = subprocess.run(["git", *args], cwd=cwd, env=git_env(), input=input,
                          capture_output=True, timeout=600)
    if proc.returncode != 0:
        detail = proc.stderr.decode(errors="replace").strip().splitlines()
        raise RuntimeError(f"git {' '.join(args[:3])} failed: {detail[-1] if detail else proc.returncode}")
    return proc.stdout.decode(errors="replace")


def _source_files(src: Path) -> list[Path]:
    files = []
    for path in sorted(src.rglob("*")):
        rel = path.relative_to(src)
        if any(part in _SKIP for part in rel.parts) or path.suffix == ".pyc" or not path.is_file():
            continue
        files.append(rel)
    return files


def deterministic_repo(src: Path, dest: Path, message: str = "Initial commit") -> str:
    """Create a git repository at `dest` holding `src` as one commit; return the commit hash.

    Blobs are written with `hash-object` and entered with mode 100644, so neither the umask nor
    the user's git configuration can change the tree (and so the commit) hash.
    """
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    git("init", "-q", "--template=", "-b", "main", str(dest))
    files = _source_files(src)
    paths = "\n".join(str(src / rel) for rel in files).encode()
    blobs = git("hash-object", "-w", "--no-filters", "--stdin-paths", cwd=dest, input=paths).split()
    index = "".join(f"100644 {blob}\t{rel.as_posix()}\n" for blob, rel in zip(blobs, files, strict=True))
    git("update-index", "--add", "--index-info", cwd=dest, input=index.encode())
    tree = git("write-tree", cwd=dest).strip()
    commit = git("commit-tree", tree, "-m", message, cwd=dest).strip()
    git("update-ref", "refs/heads/main", commit, cwd=dest)
    git("checkout", "-q", "-f", "main", cwd=dest)
    return commit


def bundled_mirror(name: str) -> Path:
    """The git repository of a bundled source tree, created once in the cache."""
    src = BUNDLED_REPOS / name
    if not src.is_dir():
        raise FileNotFoundError(f"no bundled repository {name!r} (have: {', '.join(bundled_repo_names())}; "
                                f"give --repos DIR|URL for other repositories)")
    digest = hashlib.sha256()
    for rel in _source_files(src):
        digest.update(rel.as_posix().encode() + b"\0" + (src / rel).read_bytes() + b"\0")
    dest = cache_dir() / "swebench" / "mirrors" / f"{name}-{digest.hexdigest()[:12]}"
    if not (dest / ".git" / "refs" / "heads" / "main").exists():
        tmp = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=dest.parent if dest.parent.exists()
                                    else _mkdir(dest.parent)))
        deterministic_repo(src, tmp / "repo")
        if dest.exists():
            shutil.rmtree(tmp)
        else:
            os.replace(tmp / "repo", dest)
            shutil.rmtree(tmp, ignore_errors=True)
    return dest


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def bundled_repo_names() -> list[str]:
    return sorted(p.name for p in BUNDLED_REPOS.iterdir() if p.is_dir())


class RepoSource:
    """Finds the repository of an instance: `repos` is a mirror directory, a git URL template
    (``https://host/{repo}.git``) or "bundled" (the package's own repositories)."""

    def __init__(self, repos: str | None = "bundled"):
        self.repos = repos or "bundled"

    def local_repo(self, repo: str) -> Path:
        name = repo.split("/")[-1]
        if self.repos == "bundled":
            return bundled_mirror(name)
        if "://" in self.repos or self.repos.startswith("git@") or "{repo}" in self.repos:
            return self._clone(self.repos.format(repo=repo, owner=repo.split("/")[0], name=name))
        root = Path(self.repos).expanduser()
        for candidate in (root / repo, root / repo.replace("/", "__"), root / name,
                          root / f"{name}.git", root / f"{repo.replace('/', '__')}.git"):
            if candidate.is_dir():
                return candidate
        raise FileNotFoundError(f"repository {repo} not found in mirror directory {root} "
                                f"(looked for {repo}, {repo.replace('/', '__')}, {name})")

    def _clone(self, url: str) -> Path:
        dest = cache_dir() / "swebench" / "clones" / hashlib.sha256(url.encode()).hexdigest()[:16]
        if not dest.exists():
            tmp = Path(tempfile.mkdtemp(prefix=".clone-", dir=_mkdir(dest.parent)))
            try:
                git("clone", "-q", "--mirror", url, str(tmp / "repo"))
            except RuntimeError as exc:
                shutil.rmtree(tmp, ignore_errors=True)
                raise FileNotFoundError(f"cannot clone {url}: {exc}") from exc
            os.replace(tmp / "repo", dest)
            shutil.rmtree(tmp, ignore_errors=True)
        return dest

    def bundle(self, repo: str, base_commit: str) -> bytes:
        """A git bundle of `base_commit` and its ancestors only (no later history).

        Cached by (repo, commit): the bytes go into the image build context, whose hash is the
        image tag, so they must not change between runs.
        """
        cached = cache_dir() / "swebench" / "bundles" / f"{repo.replace('/', '__')}-{base_commit}.bundle"
        if cached.exists():
            return cached.read_bytes()
        data = self._make_bundle(repo, base_commit)
        atomic_write(cached, data)
        return data

    def _make_bundle(self, repo: str, base_commit: str) -> bytes:
        local = self.local_repo(repo)
        try:
            git("cat-file", "-e", f"{base_commit}^{{commit}}", cwd=local)
        except RuntimeError:
            raise FileNotFoundError(f"commit {base_commit[:12]} not in repository {repo} ({local})") from None
        with tempfile.TemporaryDirectory() as tmp:
            # a shared bare clone, so the user's mirror gets no new ref
            clone = Path(tmp) / "clone.git"
            git("clone", "-q", "--bare", "--shared", str(local), str(clone))
            git("update-ref", "refs/heads/base", base_commit, cwd=clone)
            out = Path(tmp) / "repo.bundle"
            git("-c", "pack.threads=1", "bundle", "create", "-q", str(out), "refs/heads/base", cwd=clone)
            return out.read_bytes()
