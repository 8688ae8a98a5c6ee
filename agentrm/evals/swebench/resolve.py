"""Per instance: which image to grade in, where the repository is in it, how its environment is
entered, which test command and which log parser. One function per image kind:

- a row naming its `image` (SWE-bench v5) or `--namespace` (official names): the image is pulled
  per `--pull` if missing; the layout is the official one (/testbed, conda env `testbed`, root)
  unless the row or spec says otherwise, or the image is one of agentrm's own (/workspace);
- otherwise agentrm builds base → env → instance offline, with the spec's Python.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

from agentrm.errors import InfrastructureError
from agentrm.evals.swebench import images, official
from agentrm.evals.swebench.dataset import Instance
from agentrm.evals.swebench.official import Layout
from agentrm.evals.swebench.repos import RepoSource
from agentrm.evals.swebench.specs import EnvSpec, SpecTable, package_parser
from agentrm.verifiers.tests_verifier import TestSpec

WORKDIR_LABEL = "agentrm.swebench.workdir"
AGENTRM_LAYOUT = Layout(workdir=images.WORKDIR, activate=(), user="root")


@dataclass
class Resolved:
    image: str
    layout: Layout
    spec: TestSpec
    pulled: bool = False
    notes: list[str] = field(default_factory=list)


@dataclass
class ImageOptions:
    namespace: str = official.NONE
    tag: str = "latest"
    pull: str = "missing"


def resolve(inst: Instance, table: SpecTable, repos: RepoSource, opts: ImageOptions,
            timeout: float | None, builds: images.BuildLog | None = None) -> Resolved:
    """Image, layout and test spec of one instance; KeyError/FileNotFoundError/AgentrmError
    (one line each) when the instance cannot be graded here."""
    env = _lookup(table, inst)
    prebuilt = inst.image or (official.image_name(inst.instance_id, opts.namespace, opts.tag)
                              if opts.namespace != official.NONE else None)
    if prebuilt:
        if env is None and not inst.eval_script:  # before any pull: nothing to run the tests with
            raise KeyError(f"no test command for {inst.repo} {inst.version}: the row has no "
                           f"eval_script and no spec matches (add one with --specs FILE)")
        present = _present(prebuilt)
        image = _ensure(prebuilt, opts.pull, present, builds)
        default = AGENTRM_LAYOUT if _is_ours(image) else official.official_layout()
        layout = official.layout_for(inst.row, env.layout_fields() if env else {}, default)
        if env is not None and env.python:
            check_python(image, layout, env.python)
        return Resolved(image, layout, test_spec(inst, env, image, layout, timeout),
                        pulled=not present)
    if env is None:
        env = table.lookup(inst.repo, inst.version)  # raises the one-line KeyError
    image = images.instance_image(inst, env, repos, builds)
    return Resolved(image, AGENTRM_LAYOUT, test_spec(inst, env, image, AGENTRM_LAYOUT, timeout))


_py_lock = threading.Lock()
_py_seen: dict[tuple[str, Layout], str] = {}


def check_python(image: str, layout: Layout, wanted: str) -> None:
    """A pre-built image brings its own interpreter: make sure it is the one the spec names
    (asked once per image and layout, inside the activated environment)."""
    with _py_lock:
        key = (image, layout)
        if key not in _py_seen:
            from agentrm.sandboxes import SandboxConfig, run_once

            probe = layout.wrap("python -c 'import sys; print(\"%d.%d\" % sys.version_info[:2])'")
            result = run_once(SandboxConfig(image=image, user=layout.user, workdir="/"),
                              ["bash", "-c", probe], timeout=120)
            lines = result.stdout.strip().splitlines()
            _py_seen[key] = lines[-1].strip() if result.exit_code == 0 and lines else "no python"
    if _py_seen[key] != wanted:
        raise InfrastructureError(f"the spec needs Python {wanted}; image {image} provides "
                                  f"{_py_seen[key]} in its environment")


def _ensure(name: str, pull: str, present: bool, builds: images.BuildLog | None) -> str:
    """ensure_image, with a log entry for each pull (or failed one) under the run directory."""
    if builds is None or (present and pull != "always"):
        return official.ensure_image(name, pull)
    started = time.monotonic()
    try:
        image = official.ensure_image(name, pull)
    except FileNotFoundError as exc:
        builds.note(name, [f"not available after {time.monotonic() - started:.1f}s: {exc}"])
        raise
    builds.note(name, [f"pulled (--pull {pull}) in {time.monotonic() - started:.1f}s"])
    return image


def _lookup(table: SpecTable, inst: Instance) -> EnvSpec | None:
    try:
        return table.lookup(inst.repo, inst.version)
    except KeyError:
        return None


def parser_of(inst: Instance, env: EnvSpec | None) -> str:
    """The row's parser (a swebench name), else the package's parser for the repository
    (MAP_REPO_TO_PARSER), else the spec's (agentrm's own names, e.g. pytest with junit)."""
    eval_type = inst.row.get("eval_type") or _eval_type(inst.repo)
    name = inst.log_parser or _repo_parser(inst.repo)
    if name:
        return package_parser(name, instance_id=inst.instance_id, repo=inst.repo,
                              version=inst.version, eval_type=eval_type)
    return env.log_parser if env else "pytest"


def test_spec(inst: Instance, env: EnvSpec | None, image: str, layout: Layout,
              timeout: float | None) -> TestSpec:
    protected = (list(env.protected) if env
                 else TestSpec.__dataclass_fields__["protected"].default_factory())
    test_cmd = "" if inst.eval_script or env is None else layout.wrap(env.test_cmd)
    return TestSpec(
        image=image, fail_to_pass=inst.fail_to_pass, pass_to_pass=inst.pass_to_pass,
        test_patch=inst.test_patch, base_commit=inst.base_commit or "HEAD", test_cmd=test_cmd,
        log_parser=parser_of(inst, env), eval_script=v5_script(inst.eval_script),
        workdir=layout.workdir, user=layout.user, protected=protected,
        timeout=float(timeout or (env.timeout if env else 1800.0)))


def v5_script(script: str | None) -> str | None:
    """A row's eval script with the package's exit-code recording, ending with the test
    command's own exit status (the script's last command is a reset), so the grader's
    exit-code cross-check sees the tests' status."""
    if not script:
        return None
    from swebench.harness.constants import TEST_EXIT_CODE_VAR
    from swebench.harness.utils import parse_eval_script, record_test_exit_code

    lines = record_test_exit_code(parse_eval_script(script))
    if not any(line.startswith(f"{TEST_EXIT_CODE_VAR}=") for line in lines):
        return script
    return "\n".join(["#!/bin/bash", "set -uxo pipefail", *lines,
                      f"exit ${{{TEST_EXIT_CODE_VAR}:-1}}"]) + "\n"


def _repo_parser(repo: str) -> str | None:
    for func in _repo_map().get(repo, ()):
        return func.__name__
    return None


def _repo_map() -> dict[str, Any]:
    """MAP_REPO_TO_PARSER_<language> of the package, merged."""
    import importlib

    out: dict[str, Any] = {}
    for mod in ("python", "javascript", "c", "go", "java", "php", "ruby", "rust"):
        module = importlib.import_module(f"swebench.harness.log_parsers.{mod}")
        for name in dir(module):
            if name.startswith("MAP_REPO_TO_PARSER"):
                out.update({repo: (func,) for repo, func in getattr(module, name).items()})
    return out


def _eval_type(repo: str) -> str:
    from swebench.harness.constants import FAIL_ONLY_REPOS

    return "fail_only" if repo in FAIL_ONLY_REPOS else ""


def _present(name: str) -> bool:
    from agentrm.evals.swebench.official import _present as present
    from agentrm.sandboxes.engine import client

    return present(client(), name)


def _is_ours(image: str) -> bool:
    """agentrm's instance images say where their repository is (a label); others are laid out
    like the official ones."""
    from agentrm.sandboxes.engine import client

    labels = client().images.get(image).labels or {}
    return labels.get(WORKDIR_LABEL) == images.WORKDIR

