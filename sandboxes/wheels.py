"""Python dependencies without network in the build: `pip download` on the host into a
wheelhouse, copied into the build context, installed with `pip install --no-index`."""

from __future__ import annotations

import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from agentrm.errors import InputError, PrerequisiteError
from agentrm.sandboxes.images import build_image

# The base image's interpreter (Debian bookworm): wheels are fetched for it, not for the host.
TARGET = ["--python-version", "3.11", "--implementation", "cp", "--abi", "cp311",
          "--platform", "manylinux2014_x86_64", "--platform", "manylinux_2_17_x86_64",
          "--platform", "manylinux_2_28_x86_64", "--platform", "any", "--only-binary=:all:"]


def download_wheels(requirements: Sequence[str], dest: Path) -> list[Path]:
    """Fetch wheels for `requirements` (pip specifiers) and their dependencies into `dest`."""
    reqs = [r.strip() for r in requirements if r.strip()]
    if not reqs:
        raise InputError("no requirements given")
    dest.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "--quiet", "-d", str(dest), *TARGET, *reqs]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise PrerequisiteError(f"pip download {' '.join(reqs)} failed: {tail}")
    return sorted(dest.glob("*.whl"))


def python_image(requirements: Sequence[str], name: str = "agentrm/py",
                 wheelhouse: Path | None = None) -> str:
    """An image FROM the base with `requirements` installed from a host-made wheelhouse.
    The tag hashes the wheels themselves, so a new release makes a new image."""
    with tempfile.TemporaryDirectory(prefix="agentrm-wheels-") as tmp:
        house = wheelhouse or Path(tmp)
        if wheelhouse is None:
            download_wheels(requirements, house)
        files = {f"wheels/{p.name}": p.read_bytes() for p in sorted(house.glob("*.whl"))}
        if not files:
            raise InputError("wheelhouse has no wheels", path=str(house))
        reqs = " ".join(f"'{r}'" for r in requirements)
        dockerfile = ("FROM {base}\nCOPY wheels /tmp/wheels\n"
                      f"RUN pip install --no-index --find-links /tmp/wheels {reqs} "
                      "&& rm -rf /tmp/wheels\n")
        return build_image(dockerfile, files, name=name)
