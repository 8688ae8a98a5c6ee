"""Agent mode: the runtime works on the problem statement inside the instance image; its
`git diff` against base_commit becomes the prediction, graded like any other (in a fresh
container from the pristine image, never in the agent's own)."""

from __future__ import annotations

import logging
import shlex
from dataclasses import dataclass
from typing import Any

from agentrm.errors import InfrastructureError
from agentrm.evals.swebench.dataset import Instance
from agentrm.evals.swebench.images import WORKDIR
from agentrm.types import FailureKind, Task

log = logging.getLogger("agentrm.evals.swebench.agent")

PROMPT = """The git repository {repo} is checked out in {workdir}. Fix the issue below by \
editing the source code (not the tests). Look at the relevant files first, make the smallest \
change that fixes the issue, check it if you can, then call `submit` without an answer.

<issue>
{problem}
</issue>"""


def agent_task(inst: Instance, image: str) -> Task:
    return Task(id=inst.instance_id, image=image,
                instruction=PROMPT.format(repo=inst.repo, workdir=WORKDIR,
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


def solve(inst: Instance, image: str, policy: Any, store: Any, run_id: str, cfg: Any,
          sandbox_factory: Any = None) -> list[Attempt]:
    """Roll the policy out `cfg.group_size` times on one instance through the rollout driver.

    The members share the group id RUN/INSTANCE (GRPO/GiGPO compare them) and are the
    trajectories RUN/INSTANCE/K. Each starts afresh (the harness decides what a rerun reuses)."""
    from agentrm.rollout.loop import Limits
    from agentrm.rollout.run import RunOptions, run
    from agentrm.sandboxes import SandboxConfig

    options = RunOptions(
        limits=Limits(max_turns=cfg.max_turns, max_seconds=cfg.agent_timeout),
        sandbox=SandboxConfig(workdir=WORKDIR, network=False, wall_clock_s=cfg.agent_timeout + 600),
        resume=False, end_run=False)  # the eval run is the harness's
    summary = run([agent_task(inst, image)], policy, store, group_size=getattr(cfg, "group_size", 1),
                  sandbox_factory=sandbox_factory, run_id=run_id, options=options,
                  finalize=_take_patch(inst))
    attempts = []
    for traj in summary.results:
        infra = traj.metadata.get("finalize_error")
        if traj.failure_kind == FailureKind.INFRASTRUCTURE:
            infra = f"agent trajectory ended {traj.exit_status.value}: {traj.metadata.get('error', '')}"
        patch = traj.metadata.get("model_patch", "")
        log.info("%s: agent ended %s, patch of %d bytes", traj.id, traj.exit_status.value, len(patch))
        attempts.append(Attempt(patch, traj.id, infra))
    return attempts


def _take_patch(inst: Instance) -> Any:
    """The member's `git diff` against base_commit, taken in its own sandbox before removal."""
    base = shlex.quote(inst.base_commit or "HEAD")

    def finalize(traj: Any, sandbox: Any) -> None:
        diff = sandbox.exec(["bash", "-c", f"cd {WORKDIR} && git add -A && git diff --cached "
                                           f"--no-color --no-ext-diff {base}"],
                            timeout=120, stateless=True)
        if diff.exit_code != 0:
            raise InfrastructureError(f"git diff in the agent's sandbox failed: {diff.stdout[-200:]}")
        traj.metadata["model_patch"] = diff.stdout

    return finalize
