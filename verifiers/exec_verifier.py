"""Execution verifier: run the agent's program (or command, or patched repository) in a fresh
sandbox and compare its output with the expected output.

Spec (task.verifier with kind "exec", task.metadata["exec_verifier"] — the form task files use —,
trajectory.metadata["exec_verifier"], or scorer options, later ones overriding earlier ones):
  source   "answer"  — the agent's answer is a program, written to `path` and run by `command`
           "command" — the agent's answer is a shell command, run as is
           "patch"   — the agent's submission (a git diff) is applied in `workdir`, then `command` runs
  command  default "python3 {path}" (path default /workspace/solution.py)
  cases    [{"stdin": ..., "expected": ...}, …]; or one case from `stdin` + `expected`
           (default: the trajectory's ground-truth answer). Several cases defeat hard-coded output.
  compare  exact | normalised | numeric (abs_tol, rel_tol);  timeout per case (s)
The value is the fraction of cases passed. A crash, a timeout or wrong output is the model's
failure (0 for that case); a sandbox that cannot start or dies is an infrastructure failure
(value None), never 0.
"""

from __future__ import annotations

import logging
import math
import re
import shlex
from collections.abc import Sequence
from typing import Any

from agentrm.errors import AgentrmError, InputError
from agentrm.protocols import ScoringContext
from agentrm.types import Score, Task, Trajectory
from agentrm.verifiers.answer import extract_answer
from agentrm.verifiers.base import ScorerBase

log = logging.getLogger("agentrm.verifiers.exec")

COMPARES = ("exact", "normalised", "numeric")
SOURCES = ("answer", "command", "patch")
_NUM = re.compile(r"[-+]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?")
_FENCE = re.compile(r"```[\w+-]*\n(.*?)```", re.S)


def outputs_match(got: str, want: str, compare: str = "exact", abs_tol: float = 1e-6, rel_tol: float = 1e-6) -> bool:
    """exact: equal after stripping trailing whitespace; normalised: whitespace-collapsed lines,
    case-insensitive, blank lines ignored; numeric: the same count of numbers, each within
    abs_tol + rel_tol·|want| and the words between them equal."""
    if compare == "exact":
        return "\n".join(x.rstrip() for x in got.strip().splitlines()) == "\n".join(x.rstrip() for x in want.strip().splitlines())
    if compare == "normalised":
        lines = lambda s: [" ".join(x.split()).lower() for x in s.splitlines() if x.strip()]  # noqa: E731
        return lines(got) == lines(want)
    if compare == "numeric":
        a, b = _NUM.findall(got), _NUM.findall(want)
        if len(a) != len(b) or not b or _NUM.sub("#", got).split() != _NUM.sub("#", want).split():
            return False
        return all(math.isfinite(float(x)) and abs(float(x) - float(y)) <= abs_tol + rel_tol * abs(float(y))
                   for x, y in zip(a, b, strict=True))
    raise InputError(f"exec verifier compare {compare!r}: choose from {', '.join(COMPARES)}")


def program_of(answer: str) -> str:
    """The program in an answer: the last fenced code block, else the whole text."""
    blocks = _FENCE.findall(answer)
    return blocks[-1] if blocks else answer


class TaskLookup:
    """Tasks by id for scorers that need more than the trajectory (image, setup, verifier spec):
    from a list/dict of Tasks, a tasks file (`-o tasks=FILE`) or the scoring context's store."""

    def __init__(self, tasks: Any = None):
        self.source = tasks
        self.store: Any = None  # the ScoringContext's store, set per score() call
        self._tasks: dict[str, Task] | None = None

    def get(self, task_id: str) -> Task | None:
        if self._tasks is None:
            if isinstance(self.source, dict):
                self._tasks = dict(self.source)
            elif isinstance(self.source, list):
                self._tasks = {t.id: t for t in self.source}
            elif self.source:
                from agentrm.tasks import load_tasks
                self._tasks = {t.id: t for t in load_tasks(self.source)}
            else:
                self._tasks = {}
        if task_id not in self._tasks:
            for store in (self.store,):
                if store is None:
                    continue
                try:
                    self._tasks[task_id] = store.get_task(task_id)
                    break
                except AgentrmError:
                    continue
        return self._tasks.get(task_id)


class ExecVerifier(ScorerBase):
    name = "exec"
    version = "1"

    def __init__(self, source: str | None = None, command: str | None = None, path: str | None = None,
                 expected: str | None = None, stdin: str | None = None, cases: list | None = None,
                 compare: str | None = None, abs_tol: float | None = None, rel_tol: float | None = None,
                 timeout: float | None = None, image: str | None = None, tasks: Any = None,
                 sandbox_factory: Any = None):
        given = dict(source=source, command=command, path=path, expected=expected, stdin=stdin, cases=cases,
                     compare=compare, abs_tol=abs_tol, rel_tol=rel_tol, timeout=timeout, image=image)
        self.options = {k: v for k, v in given.items() if v is not None}
        self._check(self.options, "scorer options")
        self._lookup = TaskLookup(tasks)
        self.sandbox_factory = sandbox_factory

    def config(self) -> dict[str, Any]:
        return dict(self.options)

    @staticmethod
    def _check(spec: dict[str, Any], where: str) -> None:
        if spec.get("source", "answer") not in SOURCES:
            raise InputError(f"exec verifier source {spec['source']!r} ({where}): choose from {', '.join(SOURCES)}")
        if spec.get("compare", "exact") not in COMPARES:
            raise InputError(f"exec verifier compare {spec['compare']!r} ({where}): choose from {', '.join(COMPARES)}")

    # -- where the spec comes from ------------------------------------------------------------
    def task(self, task_id: str) -> Task | None:
        return self._lookup.get(task_id)

    def spec(self, traj: Trajectory) -> tuple[dict[str, Any], Task | None]:
        task = self.task(traj.task_id)
        spec: dict[str, Any] = {}
        if task is not None and (task.verifier or {}).get("kind") == "exec":
            spec.update({k: v for k, v in task.verifier.items() if k != "kind"})
        if task is not None:  # task files keep it in metadata (their verifier is the runtime's check)
            spec.update(task.metadata.get("exec_verifier") or {})
        spec.update(traj.metadata.get("exec_verifier") or {})
        spec.update(self.options)
        self._check(spec, f"trajectory {traj.id}")
        return spec, task

    # -- scoring -------------------------------------------------------------------------------
    def score(self, trajectories: Sequence[Trajectory], context: ScoringContext | None = None) -> list[Score]:
        self._lookup.store = context.store if context is not None else None
        self._context_factory = context.sandbox_factory if context is not None else None
        return [self.score_one(t) for t in trajectories]

    def score_one(self, traj: Trajectory) -> Score:
        if (abstention := self.infrastructure_abstention(traj)) is not None:
            return abstention
        spec, task = self.spec(traj)
        source = spec.get("source", "answer")
        cases = spec.get("cases") or [{"stdin": spec.get("stdin"), "expected": spec.get("expected", traj.answer)}]
        if any(c.get("expected") is None for c in cases):
            return self.trajectory_score(traj.id, None, abstain="no expected output")
        work = traj.metadata.get("submission") if source == "patch" else extract_answer(traj)
        if not work or not str(work).strip():
            return self.trajectory_score(traj.id, 0.0, reason=f"nothing to run (no {source})")
        if source == "answer" and _NUM.fullmatch(str(work).strip()):
            return self._not_a_program(traj, task, str(work).strip())
        try:
            results = self._run(spec, task, source, str(work), cases)
        except AgentrmError as exc:  # SandboxGone, InfrastructureError, image build failures
            return self.trajectory_score(traj.id, None, error=str(exc)[:300], failure="infrastructure")
        except Exception as exc:  # noqa: BLE001 - the docker engine failing is not the model's fault
            log.exception("exec verifier: sandbox failure on %s", traj.id)
            return self.trajectory_score(traj.id, None, error=f"{type(exc).__name__}: {exc}"[:300],
                                         failure="infrastructure")
        if isinstance(results, str):
            return self.trajectory_score(traj.id, 0.0, reason=results)
        passed = sum(r["passed"] for r in results)
        why = {} if passed == len(results) else {"reason": failure_reason(results, cases)}
        return self.trajectory_score(traj.id, passed / len(results), cases=results, source=source, **why)

    def _not_a_program(self, traj: Trajectory, task: Task | None, answer: str) -> Score:
        """A bare number is a value, never run as a program. When the task asks for a program
        that is the agent's miss (0); otherwise the scorer does not apply here (abstain)."""
        declared = bool(self.options or traj.metadata.get("exec_verifier") or (task is not None and (
            (task.verifier or {}).get("kind") == "exec" or task.metadata.get("exec_verifier"))))
        if declared:
            return self.trajectory_score(traj.id, 0.0, answer=answer[:100], reason=(
                f"the answer {answer[:40]!r} is a number, not the program the task asks for"))
        return self.trajectory_score(traj.id, None, answer=answer[:100], abstain=(
            f"the answer {answer[:40]!r} is a value, not a program, and task {traj.task_id!r} "
            "declares no exec check: score values with the answer scorer"))

    def _sandbox(self, spec: dict[str, Any], task: Task | None):
        if self.sandbox_factory is not None:
            return self.sandbox_factory(spec, task)
        from agentrm.sandboxes import SandboxConfig
        make = getattr(self, "_context_factory", None)
        if make is None:  # the caller's business (pipeline.default_context gives Docker)
            from agentrm.errors import PrerequisiteError
            raise PrerequisiteError("the exec verifier needs a sandbox factory in its ScoringContext")
        image = spec.get("image") or (task.image if task else None)
        return make(SandboxConfig(image=image, network=False, wall_clock_s=600))

    def _run(self, spec: dict[str, Any], task: Task | None, source: str, work: str, cases: list) -> list | str:
        path = spec.get("path", "/workspace/solution.py")
        timeout = float(spec.get("timeout", 30))
        with self._sandbox(spec, task) as sb:
            for cmd in (task.setup if task else []):
                r = sb.exec(cmd, timeout=300, stateless=True)
                if not r.ok:  # the task's own set-up failing is not the agent's fault
                    from agentrm.errors import InfrastructureError
                    raise InfrastructureError(f"task setup failed (exit {r.exit_code}): {cmd[:80]!r}")
            if source == "answer":
                sb.write_file(path, program_of(work))
                command = spec.get("command", "python3 {path}").format(path=shlex.quote(path))
            elif source == "command":
                command = work
            else:
                sb.write_file("/tmp/agent.patch", work)
                r = sb.exec("git apply /tmp/agent.patch || patch -p1 --forward < /tmp/agent.patch",
                            timeout=120, stateless=True, workdir=spec.get("workdir", "/workspace"))
                if not r.ok:
                    return f"patch does not apply: {(r.stderr or r.stdout)[-200:]}"
                command = spec.get("command", "python3 {path}").format(path=shlex.quote(path))
            return [self._case(sb, command, case, spec, timeout) for case in cases]

    @staticmethod
    def _case(sb: Any, command: str, case: dict[str, Any], spec: dict[str, Any], timeout: float) -> dict[str, Any]:
        stdin = case.get("stdin")
        r = sb.exec(["bash", "-c", command], timeout=timeout, input=stdin if stdin is not None else "",
                    workdir=spec.get("workdir", "/workspace"))
        ok = (not r.timed_out and r.exit_code == 0 and outputs_match(
            r.stdout, str(case["expected"]), spec.get("compare", "exact"),
            float(spec.get("abs_tol", 1e-6)), float(spec.get("rel_tol", 1e-6))))
        return {"passed": ok, "exit_code": r.exit_code, "timed_out": r.timed_out, "stdout": r.stdout[-300:]}


def failure_reason(results: list[dict[str, Any]], cases: list[dict[str, Any]]) -> str:
    """One line on the first failing case: timed out, crashed, or expected vs got."""
    failed = [i for i, r in enumerate(results) if not r["passed"]]
    i = failed[0]
    r, head = results[i], f"{len(failed)}/{len(results)} cases failed; case {i + 1}: "
    if r["timed_out"]:
        return head + "timed out"
    if r["exit_code"] != 0:
        return head + f"exit code {r['exit_code']}"
    return head + f"expected {str(cases[i]['expected'])[:60]!r}, got {r['stdout'].strip()[-60:]!r}"


def make_scorer(**options: Any) -> ExecVerifier:
    return ExecVerifier(**options)
