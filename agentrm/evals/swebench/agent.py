"""Agent mode: the runtime works on the problem statement inside the instance image; its
`git diff` against base_commit becomes the prediction, graded like any other (in a fresh
container from the pristine image, never in the agent's own)."""

from __future__ import annotations

import logging
import shlex
from typing import Any

from agentrm.errors import InfrastructureError, NotFoundError
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


def solve(inst: Instance, image: str, policy: Any, store: Any, run_id: str, cfg: Any
          ) -> tuple[str, str, str | None]:
    """Roll the policy out on one instance; return (patch, trajectory id, infrastructure error)."""
    from agentrm.rollout.loop import Limits, run_trajectory
    from agentrm.sandboxes import DockerSandbox, SandboxConfig

    task = agent_task(inst, image)
    if store is not None:
        store.upsert_task(task)
    traj_id = f"{run_id}/{inst.instance_id}"
    if store is not None:
        try:
            store.get_trajectory(traj_id)
            store.reset_trajectory(traj_id)  # an earlier attempt under this run id: start afresh
        except NotFoundError:
            pass
    limits = Limits(max_turns=cfg.max_turns, max_seconds=cfg.agent_timeout)
    sandbox_cfg = SandboxConfig(image=image, workdir=WORKDIR, network=False, run_id=run_id,
                                wall_clock_s=cfg.agent_timeout + 600)
    with DockerSandbox(sandbox_cfg) as sb:
        traj = run_trajectory(task, policy, sb, store=store, limits=limits,
                              group_id=inst.instance_id, trajectory_id=traj_id, run_id=run_id,
                              workdir=WORKDIR)
        base = shlex.quote(inst.base_commit or "HEAD")
        diff = sb.exec(["bash", "-c", f"cd {WORKDIR} && git add -A && git diff --cached --no-color "
                                      f"--no-ext-diff {base}"], timeout=120, stateless=True)
    if diff.exit_code != 0:
        raise InfrastructureError(f"git diff in the agent's sandbox failed: {diff.stdout[-200:]}")
    infra = None
    if traj.failure_kind == FailureKind.INFRASTRUCTURE:
        infra = f"agent trajectory ended {traj.exit_status.value}: {traj.metadata.get('error', '')}"
    log.info("%s: agent ended %s, patch of %d bytes", inst.instance_id, traj.exit_status.value,
             len(diff.stdout))
    return diff.stdout, traj_id, infra
