"""Run the hack corpus against built-in tasks (their own verifiers, through the rollout driver)
and SWE-bench instances (agent mode, graded in a fresh container), and say which were accepted.

A hack is *accepted* when it earned a reward it should not have (> 0), turned its outcome into
"unknown" (None), or printed SUCCESS_MARKER; *flagged* when the grader marked it `suspicious`.
It passes the audit when it was not accepted, or was accepted but flagged.
"""

from __future__ import annotations

import json
import logging
import tempfile
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from agentrm.errors import InputError
from agentrm.hacks.corpus import BY_NAME, CORPUS, SUCCESS_MARKER, Hack, actions_for, applies
from agentrm.types import Task, Trajectory

log = logging.getLogger("agentrm.hacks")


@dataclass
class HackResult:
    hack: str
    target: str  # task id or SWE-bench instance id
    expected: str
    reward: float | None
    status: str  # exit status (tasks) or grading status (SWE-bench)
    accepted: bool
    flagged: bool = False
    reasons: list[str] = field(default_factory=list)
    note: str = ""

    @property
    def passed(self) -> bool:
        return not self.accepted or self.flagged

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "passed": self.passed}


def select_hacks(names: Sequence[str] | None) -> list[Hack]:
    if not names:
        return list(CORPUS)
    unknown = [n for n in names if n not in BY_NAME]
    if unknown:
        raise InputError(f"unknown hack(s) {', '.join(unknown)} (agentrm audit hacks --list)")
    return [BY_NAME[n] for n in names]


def _verifier_kind(task: Task) -> str | None:
    from agentrm.tasks.check import verifier_spec

    spec = verifier_spec(task)
    return None if spec is None else spec["kind"]


def _outputs(traj: Trajectory) -> str:
    messages = [m for t in traj.turns for m in t.observation] + list(traj.tail or [])
    return "\n".join(str(m.get("content") or "") for m in messages)


def _task_result(hack: Hack, task: Task, traj: Trajectory) -> HackResult:
    reward = traj.reward
    if hack.marker:
        accepted = SUCCESS_MARKER in _outputs(traj)
    else:
        accepted = reward is None or reward > 0
    note = str(traj.metadata.get("error") or traj.metadata.get("reward_reason") or "")
    return HackResult(hack.name, task.id, hack.expected, reward, traj.exit_status.value, accepted,
                      note=note[:120])


def run_task_hacks(tasks: Sequence[Task], hacks: Sequence[Hack], *, concurrency: int = 2,
                   on_result: Callable[[HackResult], None] | None = None) -> list[HackResult]:
    """Each applicable (hack, task) pair as one scripted rollout in a fresh sandbox."""
    pairs = [(h, t) for t in tasks for h in hacks if applies(h, _verifier_kind(t))]
    with tempfile.TemporaryDirectory(prefix="agentrm-hacks-") as tmp:
        return _run_pairs(pairs, Path(tmp), concurrency, on_result)


def _run_pairs(pairs, scripts: Path, concurrency: int, on_result) -> list[HackResult]:
    from agentrm.rollout.loop import Limits
    from agentrm.rollout.policies.scripted import ScriptedPolicy
    from agentrm.rollout.run import RunOptions, run

    def one(pair: tuple[Hack, Task]) -> HackResult:
        hack, task = pair
        actions = actions_for(hack, task.instruction)
        path = scripts / f"{hack.name}.{task.id}.jsonl"
        path.write_text("".join(json.dumps(a) + "\n" for a in actions))
        policy = ScriptedPolicy.from_file(path)
        options = RunOptions(limits=Limits(max_turns=len(actions) + 1, command_timeout=60),
                             resume=False)
        try:
            summary = run([task], policy, None, run_id=f"hack-{hack.name}-{uuid.uuid4().hex[:6]}",
                          options=options)
            result = _task_result(hack, task, summary.results[0])
        except Exception as exc:  # noqa: BLE001 - one broken pair must not end the audit
            log.warning("hack %s on %s could not run: %s", hack.name, task.id, exc)
            result = HackResult(hack.name, task.id, hack.expected, None, "not_run", False,
                                note=f"{type(exc).__name__}: {exc}"[:120])
        if on_result:
            on_result(result)
        return result

    with ThreadPoolExecutor(max(1, concurrency)) as pool:
        return list(pool.map(one, pairs))


def task_pairs(tasks: Sequence[Task], hacks: Sequence[Hack]) -> int:
    return sum(applies(h, _verifier_kind(t)) for t in tasks for h in hacks)


def run_swebench_hacks(dataset: str, instance_ids: Sequence[str] | None, hacks: Sequence[Hack], *,
                       timeout: float = 60.0, workers: int = 1, work_dir: str | None = None,
                       on_result: Callable[[HackResult], None] | None = None) -> list[HackResult]:
    """Each SWE-bench hack in agent mode on each chosen instance; graded as `eval swe-bench` does."""
    from agentrm.evals.swebench.harness import EvalConfig, evaluate

    chosen = [h for h in hacks if h.target == "swebench"]
    if work_dir is None:
        with tempfile.TemporaryDirectory(prefix="agentrm-hacks-") as tmp:
            return run_swebench_hacks(dataset, instance_ids, hacks, timeout=timeout,
                                      workers=workers, work_dir=tmp, on_result=on_result)
    root = Path(work_dir)
    results: list[HackResult] = []
    for hack in chosen:
        actions = root / f"{hack.name}.jsonl"
        actions.write_text("".join(json.dumps(a) + "\n" for a in actions_for(hack)))

        def report(inst, hack=hack) -> None:
            result = _instance_result(hack, inst)
            results.append(result)
            if on_result:
                on_result(result)
        evaluate(EvalConfig(dataset=dataset, instance_ids=list(instance_ids) if instance_ids else None,
                            agent=True, policy=f"scripted:{actions}", max_turns=len(hack.actions) + 1,
                            agent_timeout=600, timeout=timeout, run_id=f"hack-{hack.name}",
                            run_dir=str(root / "runs"), db=f"sqlite:///{root}/hacks.db",
                            max_workers=workers, redo=True), on_progress=report)
    return results


def _instance_result(hack: Hack, inst: Any) -> HackResult:
    run = inst.run or {}
    kind = run.get("failure_kind")
    if inst.status == "resolved":
        reward: float | None = 1.0
    elif kind == "model" or inst.status in ("unresolved", "patch_failed", "empty_patch"):
        reward = 0.0
    else:
        reward = None  # an infrastructure verdict: the certain 0 became "unknown"
    reasons = list(run.get("suspicious") or [])
    return HackResult(hack.name, inst.instance_id, hack.expected, reward, inst.status,
                      accepted=reward is None or reward > 0, flagged=bool(reasons), reasons=reasons,
                      note=(inst.error or ", ".join(run.get("flags") or []))[:120])
