"""Agent mode: the runtime works on the problem statement inside the instance image; its
`git diff` against base_commit becomes the prediction, graded like any other (in a fresh
container from the pristine image, never in the agent's own).

Two image layouts. agentrm's own instance images have the `agent` user and the repository in
/workspace (on the sandbox's tmpfs, seeded from the image). Official-layout images (the
repository in the row's or spec's workdir, /testbed by default, an environment entered by shell
lines, everything owned by root) get a thin agent layer: a user `swe-agent` with uid 1000 (its
HOME on the sandbox's /tmp tmpfs) owning the repository, and the environment the layout's
activation lines produce, captured once per image and given to the sandbox as its environment,
so every command the agent runs is in it (as the official eval scripts' are)."""

from __future__ import annotations

import logging
import shlex
import threading
from dataclasses import dataclass, field
from typing import Any

from agentrm.errors import InfrastructureError
from agentrm.evals.swebench.dataset import Instance
from agentrm.evals.swebench.images import WORKDIR
from agentrm.evals.swebench.official import Layout
from agentrm.types import FailureKind, Task

log = logging.getLogger("agentrm.evals.swebench.agent")

PROMPT = """The git repository {repo} is checked out in {workdir}. Fix the issue below by \
editing the source code (not the tests). Look at the relevant files first, make the smallest \
change that fixes the issue, check it if you can, then call `submit` without an answer.

<issue>
{problem}
</issue>"""

AGENT_USER = "swe-agent"  # added to official-layout images (uid 1000, never root)
AGENT_UID = 1000
AGENT_HOME = "/tmp"  # the sandboxes' /tmp is a sized tmpfs writable by every user
AGENT_LAYER = """FROM {image}
LABEL agentrm.swebench.agent_of="{image_id}" agentrm.swebench.workdir.agent="{workdir}"
USER root
RUN {{ getent group {uid} >/dev/null || echo '{user}:x:{uid}:' >> /etc/group; }} \\
 && echo '{user}:x:{uid}:{uid}:swe agent:{home}:/bin/bash' >> /etc/passwd \\
 && cd {workdir} && {{ git -c safe.directory='*' ls-files --others --exclude-standard --directory \\
    && printf '__pycache__/\\n*.pyc\\n'; }} >> .git/info/exclude \\
 && chown -R {uid}:{uid} {workdir}
"""
# The exclusions keep what the image and Python leave untracked out of the agent's diff only
# (grading applies that diff to the pristine image).
# variables an activation sets that describe the shell, not the environment
_SHELL_VARS = {"PWD", "OLDPWD", "SHLVL", "_", "PS1", "HOSTNAME", "HOME", "USER", "LOGNAME"}


@dataclass(frozen=True)
class AgentImage:
    """Where the agent works: the image its sandboxes start from, the repository path, the
    user, and the environment (activated) its commands run in."""

    image: str
    workdir: str = WORKDIR
    user: str = "agent"
    env: dict[str, str] = field(default_factory=dict)


_agent_images: dict[tuple[str, Layout], AgentImage] = {}
_agent_locks: dict[tuple[str, Layout], threading.Lock] = {}
_agent_lock = threading.Lock()


def agent_image(image: str, layout: Layout | None, builds: Any = None) -> AgentImage:
    """The agent's view of an instance image (built and probed once per image id and layout;
    instances of different images are prepared in parallel)."""
    if layout is None or layout.workdir == WORKDIR:
        return AgentImage(image)  # agentrm's own layout: the image's `agent` user in /workspace
    from agentrm.sandboxes.engine import client

    key = (str(client().images.get(image).id), layout)  # a re-pulled name is another image
    with _agent_lock:
        lock = _agent_locks.setdefault(key, threading.Lock())
    with lock:
        if key not in _agent_images:
            derived = _agent_layer(image, key[0], layout, builds)
            env = activated_env(derived, layout) if layout.activate else {}
            _agent_images[key] = AgentImage(derived, layout.workdir, AGENT_USER,
                                            {**env, "HOME": AGENT_HOME})
        return _agent_images[key]


def _agent_layer(image: str, image_id: str, layout: Layout, builds: Any) -> str:
    """FROM the instance image: the agent user and the repository handed to it. The tag hashes
    the image id, so a re-pulled image of the same name gets a new layer."""
    from agentrm.evals.swebench.images import _build

    dockerfile = AGENT_LAYER.format(image=image, image_id=image_id, uid=AGENT_UID, user=AGENT_USER,
                                    home=AGENT_HOME, workdir=shlex.quote(layout.workdir))
    return _build(dockerfile, {}, "agentrm/swe-agent", builds)


def activated_env(image: str, layout: Layout) -> dict[str, str]:
    """The variables the layout's activation lines set or change, as the agent user, in a
    one-off container: what `source …/activate; conda activate testbed` leaves behind."""
    from agentrm.sandboxes import SandboxConfig, run_once

    split = "AGENTRM-ACTIVATED"
    script = "; ".join([
        "env -0 > /tmp/.before", "{ " + "; ".join(layout.activate) + "; } >/dev/null || exit 97",
        f"cat /tmp/.before; printf '\\0{split}\\0'; env -0"])
    result = run_once(SandboxConfig(image=image, user=AGENT_USER, workdir=layout.workdir,
                                    env={"HOME": AGENT_HOME}),
                      ["bash", "-c", script], timeout=300)
    if result.exit_code != 0 or split not in result.stdout:
        raise InfrastructureError(f"the environment of {image} could not be activated as the agent "
                                  f"(exit {result.exit_code}): {' '.join(result.stderr.split())[-160:] or '(no output)'}")
    before_text, after_text = result.stdout.split(f"\0{split}\0", 1)

    def parse(text: str) -> dict[str, str]:
        return dict(item.split("=", 1) for item in text.split("\0") if "=" in item)

    before, after = parse(before_text), parse(after_text)
    return {k: v for k, v in after.items()
            if before.get(k) != v and k not in _SHELL_VARS and not k.startswith("BASH_FUNC_")}


def agent_sandbox_config(agent: AgentImage, cfg: Any, run_id: str) -> Any:
    """The sandbox config the driver asks the factory for (its base config with the run id and
    the task's image and network), so a warm pool's expected sandboxes match requested ones."""
    from agentrm.sandboxes import SandboxConfig

    base = SandboxConfig(workdir=agent.workdir, user=agent.user, env=dict(agent.env),
                         network=False, wall_clock_s=cfg.agent_timeout + 600)
    return base.with_(run_id=run_id).with_(image=agent.image, network=False)


def agent_task(inst: Instance, image: str, workdir: str = WORKDIR) -> Task:
    return Task(id=inst.instance_id, image=image,
                instruction=PROMPT.format(repo=inst.repo, workdir=workdir,
                                          problem=inst.problem_statement.strip()),
                verifier={},  # graded after the rollout, in a fresh container (not in-loop)
                metadata={"repo": inst.repo, "base_commit": inst.base_commit,
                          "version": inst.version, "benchmark": "swe-bench"})


@dataclass
class Attempt:
    """One rollout of a group: its patch, trajectory id, and why it is unknown (infrastructure)."""

    patch: str
    trajectory_id: str
    infra: str | None = None


def solve(inst: Instance, image: str | AgentImage, policy: Any, store: Any, run_id: str, cfg: Any,
          sandbox_factory: Any = None) -> list[Attempt]:
    """Roll the policy out `cfg.group_size` times on one instance through the rollout driver.

    The members share the group id RUN/INSTANCE (GRPO/GiGPO compare them) and are the
    trajectories RUN/INSTANCE/K. Each starts afresh (the harness decides what a rerun reuses)."""
    from agentrm.rollout.loop import Limits
    from agentrm.rollout.run import RunOptions, run
    from agentrm.sandboxes import SandboxConfig

    agent = image if isinstance(image, AgentImage) else AgentImage(image)
    options = RunOptions(
        limits=Limits(max_turns=cfg.max_turns, max_seconds=cfg.agent_timeout),
        sandbox=SandboxConfig(workdir=agent.workdir, user=agent.user, env=dict(agent.env),
                              network=False, wall_clock_s=cfg.agent_timeout + 600),
        resume=False, end_run=False, lease=False,  # the eval run (and its lease) is the harness's
        concurrency=max(1, getattr(cfg, "group_size", 1)))  # members at once: one batch for a local model
    summary = run([agent_task(inst, agent.image, agent.workdir)], policy, store,
                  group_size=getattr(cfg, "group_size", 1), sandbox_factory=sandbox_factory,
                  run_id=run_id, options=options, finalize=_take_patch(inst, agent.workdir))
    attempts = []
    for traj in summary.results:
        infra = traj.metadata.get("finalize_error")
        if traj.failure_kind == FailureKind.INFRASTRUCTURE:
            infra = f"agent trajectory ended {traj.exit_status.value}: {traj.metadata.get('error', '')}"
        patch = traj.metadata.get("model_patch", "")
        log.info("%s: agent ended %s, patch of %d bytes", traj.id, traj.exit_status.value, len(patch))
        attempts.append(Attempt(patch, traj.id, infra))
    return attempts


NO_BYTECODE = "':(exclude,glob)**/__pycache__/**' ':(exclude,glob)**/*.pyc'"


def _take_patch(inst: Instance, workdir: str = WORKDIR) -> Any:
    """The member's `git diff` against base_commit, taken in its own sandbox before removal."""
    base = shlex.quote(inst.base_commit or "HEAD")

    # The agent's processes are stopped first and its git config cannot run programs
    # (fsmonitor, hooks, diff drivers). A repository the agent broke so that git fails is its
    # own failure: an empty patch (0), never "infrastructure" (None).
    # Python bytecode the agent's own checks leave behind (pytest, compileall) is never part of
    # a fix, and a patch carrying it fails to apply at grading: it stays out of both steps.
    git = "git -c core.fsmonitor=false -c core.hooksPath=/dev/null"
    cmd = (f"cd {shlex.quote(workdir)} && {git} add -A -- . {NO_BYTECODE} && "
           f"{git} diff --cached --no-color --no-ext-diff --no-textconv {base} -- . {NO_BYTECODE}")

    def finalize(traj: Any, sandbox: Any) -> None:
        diff = sandbox.verify_exec(cmd, timeout=120)
        if diff.exit_code != 0:
            traj.metadata["model_patch"] = ""
            traj.metadata["patch_error"] = (f"git diff failed in the agent's repository (exit "
                                            f"{diff.exit_code}): {diff.stderr.strip()[-200:]}")
            return
        traj.metadata["model_patch"] = diff.stdout

    return finalize
