"""Official-layout instance images built offline from agentrm's base image.

For machines that cannot pull `swebench/sweb.eval.*` images (and for tests): the repository at
base_commit in /testbed, an environment named `testbed` that the official activation enters
(`source /opt/miniconda3/bin/activate; conda activate testbed`, provided here by a small
activation script over a venv, not by conda), tagged with the official name
`sweb.eval.x86_64.<id>:<tag>`. `kind="venv"` makes a plain venv at /opt/venvs/testbed instead
(rows or specs then name its activation).
"""

from __future__ import annotations

import shlex

from agentrm.evals.swebench.dataset import Instance
from agentrm.evals.swebench.images import BuildLog, _build, _wheel_files, interpreter, wheelhouse
from agentrm.evals.swebench.official import CONDA_ROOT, LOCAL, image_name
from agentrm.evals.swebench.repos import RepoSource
from agentrm.evals.swebench.specs import EnvSpec

CONDA_SHIM = f"""# conda-like activation over venvs in {CONDA_ROOT}/envs (offline stand-in for conda)
conda() {{
  if [ "$1" = activate ]; then . "{CONDA_ROOT}/envs/${{2:-base}}/bin/activate"; else return 2; fi
}}
"""

DOCKERFILE = """FROM {base}
USER root
COPY wheels /tmp/wheels
COPY activate {conda}/bin/activate
COPY repo.bundle /tmp/repo.bundle
RUN {python} -m venv {env}{pip_line} && rm -rf /tmp/wheels
RUN git config --system safe.directory '*' && git config --system user.email x@example.invalid \\
 && git config --system user.name swebench \\
 && git clone -q --no-checkout /tmp/repo.bundle /testbed && rm /tmp/repo.bundle \\
 && cd /testbed && git checkout -q {commit} && git remote remove origin
WORKDIR /testbed
RUN . {env}/bin/activate && {install}
"""


def build_official_style(instance: Instance, spec: EnvSpec, repos: RepoSource,
                         tag: str = "latest", kind: str = "conda",
                         builds: BuildLog | None = None) -> str:
    """Build the instance's official-layout image and tag it `sweb.eval.x86_64.<id>:<tag>`."""
    from agentrm.sandboxes import base_image
    from agentrm.sandboxes.engine import client

    env = f"{CONDA_ROOT}/envs/testbed" if kind == "conda" else "/opt/venvs/testbed"
    python = interpreter(base_image(), spec.python)
    files = {"wheels/.keep": b"", **(_wheel_files(wheelhouse(spec.pip_packages))
                                     if spec.pip_packages else {})}
    files["activate"] = CONDA_SHIM.encode()
    files["repo.bundle"] = repos.bundle(instance.repo, instance.base_commit)
    dockerfile = DOCKERFILE.format(
        base="{base}", conda=CONDA_ROOT, python=python, env=env, commit=instance.base_commit,
        pip_line=(f" && {env}/bin/python -m pip install -q --no-index --find-links /tmp/wheels "
                  + " ".join(shlex.quote(p) for p in spec.pip_packages)) if spec.pip_packages else "",
        install=spec.install or "true")
    built = _build(dockerfile, files, "agentrm/swe-official", builds)
    name = image_name(instance.instance_id, LOCAL, tag)
    repo, _, version = name.rpartition(":")
    client().images.get(built).tag(repo, version)
    return name
