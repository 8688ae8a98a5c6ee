"""Test verifier: grade a patch by running tests in a fresh sandbox from the pristine image.

One implementation serves `agentrm eval swe-bench` and the "tests" scorer. Per run:
fresh container → apply the patch (git apply, then --reject, then patch --fuzz) → reset every
protected file the patch touched (test files, conftest.py, pytest config, start-up hooks) →
reset the files the test patch touches and apply it → run the test command → statuses from
junit XML, cross-checked with the text log (both directions) and the exit code → grade
(FORMATS.md §1.4). Patches that reach into the test runner are flagged `suspicious`.

Trust: everything the script prints before the tests start is ours; after that only the exec's
exit code (from the engine) and the junit file are used, and stdout only as a cross-check, since
code under test can print anything. The code under test shares the test process with the
runner, so it can forge every channel at once (a plugin registered at run time); that limit is
not closed here, only flagged (see docs/verifiers.md). "patch_failed", "timeout" and
"error" (infrastructure) are kept apart from a model's unresolved result; the last two never
become a reward of 0. Blame is decided from what the agent cannot touch: the engine's timeout
and a probe of the runner on the pristine tree are infrastructure; whatever happens once patched
code runs (a hang to the in-container timeout, an exit status, any printed error) is the model's.
"""

from __future__ import annotations

import base64
import binascii
import logging
import secrets
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from agentrm.hashing import stable_hash
from agentrm.protocols import ScoringContext
from agentrm.types import Score, Trajectory
from agentrm.verifiers import log_parsers, tests_guard
from agentrm.verifiers.base import ScorerBase
from agentrm.verifiers.tests_script import (
    DEFAULT_PROTECTED,
    END,
    EXIT_TIMEOUT,
    JUNIT_BEGIN,
    JUNIT_END,
    RUNNER_MISSING,
    START,
    eval_script,
    patch_problem,
    protected_paths,
    suspicious_reasons,
    touched_paths,
    uses_guard,
    uses_junit,
)

log = logging.getLogger("agentrm.verifiers.tests")

VERSION = "1"
RESOLVED, UNRESOLVED, PATCH_FAILED, TIMEOUT, ERROR, EMPTY = (
    "resolved", "unresolved", "patch_failed", "timeout", "error", "empty_patch")
FULL, PARTIAL, NO = "RESOLVED_FULL", "RESOLVED_PARTIAL", "RESOLVED_NO"
CONTRADICTED = "junit_contradicts_log"
_PASSING = (log_parsers.PASSED, log_parsers.XFAIL)


@dataclass
class TestSpec:
    """Everything needed to check one task's patch; stored in trajectory metadata for re-scoring."""

    __test__ = False  # not a pytest test class

    image: str
    fail_to_pass: list[str]
    pass_to_pass: list[str]
    test_patch: str = ""
    base_commit: str = "HEAD"
    test_cmd: str = "python -m pytest -rA"
    test_files: list[str] | None = None  # None = the files the test patch touches
    log_parser: str = "pytest"
    eval_script: str | None = None  # a v5 row's literal script replaces test patch + command
    protected: list[str] = field(default_factory=lambda: list(DEFAULT_PROTECTED))
    workdir: str = "/workspace"
    timeout: float = 1800.0
    cpus: float = 1.0
    memory: str = "2g"
    user: str = "root"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TestSpec:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)

    def hash(self) -> str:
        """What changes a verdict (not resources): the resume key's spec part."""
        d = self.to_dict()
        for key in ("cpus", "memory", "user"):
            d.pop(key)
        return stable_hash({"verifier": VERSION, **d})


@dataclass
class TestRun:
    __test__ = False
    status: str
    resolution: str = NO
    patch_applied: bool = False
    tests: dict[str, str] = field(default_factory=dict)
    tests_status: dict[str, dict[str, list[str]]] = field(default_factory=dict)
    exit_code: int | None = None
    apply_method: str | None = None
    reset_files: list[str] = field(default_factory=list)
    flags: list[str] = field(default_factory=list)
    suspicious: list[str] = field(default_factory=list)  # "tag: path" (tests_script._RUNNER_REACH)
    error: str | None = None
    duration_s: float = 0.0
    log: str = field(default="", repr=False)
    junit: str | None = field(default=None, repr=False)
    script: str = field(default="", repr=False)  # the exact eval script (with its patches)

    @property
    def resolved(self) -> bool:
        return self.status == RESOLVED

    @property
    def failure_kind(self) -> str | None:
        # TIMEOUT is the in-container limit the patched code ran into: the model's (a hang must
        # not turn a certain 0 into "unknown"); an engine that never answered is an ERROR
        if self.status == ERROR:
            return "infrastructure"
        return "model" if self.status in (UNRESOLVED, PATCH_FAILED, EMPTY, TIMEOUT) else None

    @property
    def reward(self) -> float | None:
        """1 resolved, 0 a model failure, None when the environment failed (never 0)."""
        if self.status == RESOLVED:
            return 1.0
        return 0.0 if self.failure_kind == "model" else None

    def details(self) -> dict[str, Any]:
        d = {k: v for k, v in asdict(self).items() if k not in ("log", "junit", "script")}
        d["failure_kind"] = self.failure_kind
        return d


def grade(statuses: dict[str, str], fail_to_pass: Sequence[str], pass_to_pass: Sequence[str],
          parser: str = "") -> tuple[dict[str, dict[str, list[str]]], str]:
    """SWE-bench resolution, by the official package's grading (see log_parsers.grade)."""
    return log_parsers.grade(statuses, fail_to_pass, pass_to_pass, parser)


def run_tests(spec: TestSpec, patch: str | None, sandbox_factory: Any = None) -> TestRun:
    """Grade `patch` against `spec` in a fresh sandbox. Never raises for a bad patch or a broken
    environment: those come back as statuses."""
    started = time.monotonic()
    if not patch or not patch.strip():
        return TestRun(EMPTY, duration_s=0.0)
    suspicious = suspicious_reasons(patch, protected_paths(touched_paths(patch), spec.protected))
    problem = patch_problem(patch)
    if problem:
        return TestRun(PATCH_FAILED, error=problem, suspicious=suspicious)
    try:
        run = _run_in_sandbox(spec, patch if patch.endswith("\n") else patch + "\n", sandbox_factory)
    except Exception as exc:  # noqa: BLE001 - any engine failure is an infrastructure error
        log.warning("test run failed in the environment: %s", exc)
        run = TestRun(ERROR, error=f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
    run.suspicious = suspicious + run.suspicious  # the patch text, then the run's witness
    run.duration_s = round(time.monotonic() - started, 3)
    return run


def _sandbox_config(spec: TestSpec):
    from agentrm.sandboxes import SandboxConfig

    # root, as the SWE-bench harness grades (datasets are validated that way); it also skips the
    # agent user's tmpfs workspace, so the image's tree is used as is, with nothing to restore
    return SandboxConfig(image=spec.image, workdir=spec.workdir, network=False, cpus=spec.cpus,
                         memory=spec.memory, wall_clock_s=spec.timeout + 600,
                         output_cap=16 << 20, user=spec.user)


def _run_in_sandbox(spec: TestSpec, patch: str, factory: Any) -> TestRun:
    nonce = secrets.token_hex(12)
    tmp = f"/tmp/agentrm-{secrets.token_hex(8)}"
    junit = f"{tmp}/{secrets.token_hex(8)}.xml"
    reset = protected_paths(touched_paths(patch), spec.protected)
    script = eval_script(spec, tmp, junit, reset, model_patch=patch, nonce=nonce)
    # one process: inputs ride in the script, results come back on stdout (see tests_script)
    if factory is None:  # the script is a fresh container's main process (docker run -i)
        from agentrm.sandboxes import run_once

        result = run_once(_sandbox_config(spec), ["bash", "-s"], input=script,
                          timeout=spec.timeout + 60)
    else:  # another Sandbox backend
        with factory(spec) as sb:
            result = sb.exec(["bash", "-s"], input=script, timeout=spec.timeout + 60, stateless=True)
    output, junit_text = split_junit(result.stdout + (result.stderr or ""), nonce)
    output, guard_text = split_junit(output, nonce, tests_guard.BEGIN, tests_guard.END)
    run = interpret(spec, output, result.exit_code, bool(result.timed_out),
                    junit_text if _uses_junit(spec) else None, reset)
    pre = output.partition(START)[0]
    if uses_guard(spec) and START in output and tests_guard.UNAVAILABLE not in pre:
        run.suspicious += tests_guard.reasons(guard_text, junit_text is not None)
    run.script = script
    return run


def split_junit(output: str, nonce: str, begin_marker: str = JUNIT_BEGIN,
                end_marker: str = JUNIT_END) -> tuple[str, str | None]:
    """Take a block bash printed after the tests (the junit file by default; the last block
    carrying this run's nonce) out of the output; return (output without it, its text or None)."""
    begin, end = f"{begin_marker} {nonce}\n", f"\n{end_marker} {nonce}"
    start = output.rfind(begin)
    stop = output.find(end, start + len(begin)) if start >= 0 else -1
    if start < 0 or stop < 0:
        return output, None
    encoded = output[start + len(begin):stop].strip()
    rest = output[:start] + output[stop + len(end):].lstrip("\n")
    if not encoded:
        return rest, None
    try:
        return rest, base64.b64decode(encoded, validate=True).decode("utf-8", errors="replace")
    except (binascii.Error, ValueError):
        return rest, None


def _uses_junit(spec: TestSpec) -> bool:
    return uses_junit(spec)


def interpret(spec: TestSpec, output: str, exit_code: int, timed_out: bool,
              junit_text: str | None, reset: list[str]) -> TestRun:
    """Turn the script's output, the exec's exit code and the junit file into a TestRun."""
    pre, started, rest = output.partition(START)
    run = TestRun(UNRESOLVED, log=output, junit=junit_text, reset_files=reset, exit_code=exit_code)
    run.apply_method = next((ln.split("(", 1)[1].rstrip(")") for ln in pre.splitlines()
                             if ln.startswith(">>>>> Applied Patch (")), None)
    if ">>>>> Patch Apply Failed" in pre:
        run.status, run.error = PATCH_FAILED, "patch did not apply (git apply, --reject, patch --fuzz)"
        return run
    run.patch_applied = True
    for marker, why in ((">>>>> Test Patch Apply Failed", "test patch did not apply"),
                        (">>>>> Reset Failed", "could not reset the repository"),
                        (RUNNER_MISSING, "the test runner does not start on the pristine tree")):
        if marker in pre:
            run.status, run.error = ERROR, why
            return run
    if not started:
        run.status, run.error = ERROR, f"eval script ended before the tests (exit {exit_code})"
        return run
    if timed_out:  # the engine's own deadline: the container never finished
        run.status, run.error = ERROR, f"grading container did not finish in {spec.timeout + 60:g}s"
        return run
    if exit_code == EXIT_TIMEOUT:
        run.status, run.error = TIMEOUT, f"tests exceeded {spec.timeout:g}s"
        return run
    test_log = rest.rsplit(END, 1)[0] if END in rest else rest
    run.tests = _statuses(spec, test_log, exit_code, junit_text, run.flags)
    if CONTRADICTED in run.flags:
        run.error = ("the junit file reports PASSED for tests the log reports FAILED/ERROR: "
                     "nothing trusted")
    run.tests_status, run.resolution = grade(run.tests, spec.fail_to_pass, spec.pass_to_pass,
                                               spec.log_parser)
    run.status = RESOLVED if run.resolution == FULL else UNRESOLVED
    return run


def _statuses(spec: TestSpec, test_log: str, exit_code: int, junit_text: str | None,
              flags: list[str]) -> dict[str, str]:
    """Structured results first; the text log may only confirm them; the exit code must agree."""
    text = log_parsers.parse(spec.log_parser, test_log)
    if _uses_junit(spec):
        if junit_text is None:
            flags.append("no_junit")
            return {}
        try:
            final = log_parsers.parse_junit(junit_text)
        except ValueError:
            flags.append("bad_junit")
            return {}
        if any(s == log_parsers.PASSED and final.get(t) != log_parsers.PASSED for t, s in text.items()):
            flags.append("log_claims_unconfirmed_passes")
        # the other direction: a junit file rewritten after the run (at exit, say) passes tests
        # the runner printed as failed; one such test and neither channel is trusted
        bad = (log_parsers.FAILED, log_parsers.ERROR)
        if any(s in bad and final.get(t) in _PASSING for t, s in text.items()):
            flags.append(CONTRADICTED)
            return {}
    else:
        final = text
    failing = any(s in (log_parsers.FAILED, log_parsers.ERROR) for s in final.values())
    if exit_code != 0 and not failing:
        flags.append("exit_code_without_failures")  # forged or never-ran: trust nothing
        return {}
    if exit_code == 0 and failing:
        flags.append("failures_with_exit_code_0")
    return final


class TestVerifier(ScorerBase):
    """The "tests" scorer: re-grades a trajectory's patch from the TestSpec in its metadata
    (metadata["tests_verifier"]) and its patch (metadata["model_patch"], else the runtime's
    "submission"). A trajectory without a spec gets an abstention (None), not a 0."""

    __test__ = False
    name = "tests"
    version = VERSION

    def __init__(self, timeout: float | None = None, sandbox_factory: Any = None):
        self.timeout = timeout
        self.sandbox_factory = sandbox_factory

    def config(self) -> dict[str, Any]:
        return {"timeout": self.timeout}

    def score(self, trajectories: Sequence[Trajectory], context: ScoringContext | None = None) -> list[Score]:
        out = []
        for traj in trajectories:
            spec_data = traj.metadata.get("tests_verifier")
            verifier = traj.metadata.get("verifier")
            if not spec_data and isinstance(verifier, dict) and verifier.get("kind") == "tests":
                spec_data = verifier  # a task's {"kind": "tests", "image": ..., ...} copied along
            if not spec_data:
                out.append(self.trajectory_score(traj.id, None, status="no_test_spec"))
                continue
            spec = TestSpec.from_dict(spec_data)
            if self.timeout:
                spec.timeout = float(self.timeout)
            patch = traj.metadata.get("model_patch")
            if patch is None:  # a runtime trajectory: submit without an answer submits `git diff`
                patch = traj.metadata.get("patch") or traj.metadata.get("submission")
            run = run_tests(spec, patch, self.sandbox_factory)
            out.append(self.trajectory_score(traj.id, run.reward, **run.details()))
        return out


def make_scorer(timeout: float | str | None = None, **_ignored: Any) -> TestVerifier:
    """Registry factory. Options meant for model scorers (model, device, ...) do not apply."""
    return TestVerifier(timeout=float(timeout) if timeout else None)
