"""In-process tampering with test-based grading, on every bundled SWE-bench instance (real Docker).

Two attacks live in package code the test process imports (agentrm.hacks.payloads):
- the junit file named in sys.argv is rewritten at exit (failures dropped) and the process exits
  0. The text log still says FAILED: the both-directions cross-check must trust nothing.
- pytest's Config is found through `gc` and a plugin that marks every report passed is
  registered at run time. junit, log and exit code then all agree: this is the documented
  in-process limit. It resolves, and the patch must be flagged `suspicious` with its reasons, in
  the TestRun, the stored Score details and the per-instance report.
"""

from __future__ import annotations

import json
import shutil

import pytest

from agentrm.evals.swebench.dataset import load_instances
from agentrm.evals.swebench.harness import test_spec as make_spec
from agentrm.evals.swebench.images import instance_image
from agentrm.evals.swebench.repos import RepoSource, bundled_mirror, git
from agentrm.evals.swebench.specs import load_specs
from agentrm.hacks.payloads import (
    FAKE_INFRASTRUCTURE,
    GC_PLUGIN_AT_RUNTIME,
    HANG_THE_TESTS,
    JUNIT_REWRITE_AT_EXIT,
)
from agentrm.verifiers import log_parsers
from agentrm.verifiers.tests_verifier import (
    CONTRADICTED,
    ERROR,
    RESOLVED,
    TIMEOUT,
    UNRESOLVED,
    run_tests,
)

pytestmark = [pytest.mark.docker, pytest.mark.slow]
INSTANCES = sorted(i.instance_id for i in load_instances("bundled"))


@pytest.fixture(scope="module")
def graded(docker_client, tmp_path_factory):
    """instance id → (instance, spec, work tree of its repository)."""
    table = load_specs()
    out = {}
    for inst in load_instances("bundled"):
        name = inst.repo.split("/")[1]
        image = instance_image(inst, table.lookup(inst.repo, inst.version), RepoSource("bundled"))
        work = tmp_path_factory.mktemp(inst.instance_id) / "repo"
        shutil.copytree(bundled_mirror(name), work)
        out[inst.instance_id] = (inst, make_spec(inst, table, image, timeout=300), work)
    return out


def appended(work, base: str, rel: str, code: str) -> str:
    """A real `git diff` that appends `code` to `rel` at `base`."""
    git("checkout", "-q", "-f", base, cwd=work)
    path = work / rel
    path.write_text(path.read_text() + "\n" + code)
    patch = git("diff", base, cwd=work)
    git("checkout", "-q", "-f", base, cwd=work)
    return patch


def package_init(inst) -> str:
    return f"{inst.repo.split('/')[1]}/__init__.py"


@pytest.mark.parametrize("iid", INSTANCES)
def test_junit_rewritten_at_exit_trusts_nothing(graded, iid):
    inst, spec, work = graded[iid]
    run = run_tests(spec, appended(work, inst.base_commit, package_init(inst), JUNIT_REWRITE_AT_EXIT))
    assert run.status == UNRESOLVED and run.reward == 0.0, (run.status, run.flags, run.error)
    assert CONTRADICTED in run.flags and "nothing trusted" in run.error and run.tests == {}
    # the attack did work on its channel: the junit file we read back passes every F2P test,
    # the exit code is 0, and the text log still names the failures
    forged = log_parsers.parse_junit(run.junit)
    assert all(forged.get(t) == log_parsers.PASSED for t in inst.fail_to_pass)
    assert run.exit_code == 0 and any(f"FAILED {t}" in run.log for t in inst.fail_to_pass)
    for tag in ("atexit", "os_exit", "sys_argv"):
        assert f"{tag}: {package_init(inst)}" in run.suspicious


@pytest.mark.parametrize("iid", INSTANCES)
def test_plugin_registered_through_gc_is_flagged(graded, iid):
    inst, spec, work = graded[iid]
    run = run_tests(spec, appended(work, inst.base_commit, package_init(inst), GC_PLUGIN_AT_RUNTIME))
    # the documented in-process limit: every channel agrees, so the verdict is forged ...
    assert run.status == RESOLVED, (run.status, run.flags, run.error)
    # ... and the patch carries the reasons an RL reward can penalise: from its text, and from
    # the grading witness that saw the registration happen
    for tag in ("gc_walk", "runner_import", "plugin_registration", "runtime_plugin_registration"):
        assert f"{tag}: {package_init(inst)}" in run.suspicious, run.suspicious


def test_obfuscated_plugin_is_still_flagged_by_the_witness(graded):
    # the same attack built from a string at run time: no runner name in the patch text
    import base64

    inst, spec, work = graded["agentrm__textkit-2"]
    hidden = base64.b64encode(GC_PLUGIN_AT_RUNTIME.encode()).decode()
    code = f"import base64 as _b\nexec(_b.b64decode('{hidden}'))\n"
    run = run_tests(spec, appended(work, inst.base_commit, package_init(inst), code))
    assert run.status == RESOLVED  # the in-process limit
    assert run.suspicious == [f"dynamic_code: {package_init(inst)}",
                              f"runtime_plugin_registration: {package_init(inst)}"]


def test_faked_infrastructure_failure_is_the_models(graded):
    # "No module named pytest" and exit 127 from patched code: a certain 0, never "unknown"
    inst, spec, work = graded["agentrm__ministats-1"]
    run = run_tests(spec, appended(work, inst.base_commit, package_init(inst), FAKE_INFRASTRUCTURE))
    assert "No module named pytest" in run.log and run.exit_code == 127
    assert run.status == UNRESOLVED and run.reward == 0.0 and run.failure_kind == "model"


def test_hanging_tests_time_out_as_the_models_failure(graded):
    inst, spec, work = graded["agentrm__inventory-1"]
    spec = type(spec).from_dict({**spec.to_dict(), "timeout": 15})
    run = run_tests(spec, appended(work, inst.base_commit, package_init(inst), HANG_THE_TESTS))
    assert run.status == TIMEOUT and run.reward == 0.0 and run.failure_kind == "model"


def test_a_runner_that_does_not_start_before_the_patch_is_infrastructure(graded):
    # the probe runs on the pristine tree, before any patched code: the one place a broken
    # environment is told apart from the model's doing (None, retried; never 0)
    inst, spec, _ = graded["agentrm__textkit-3"]
    broken = type(spec).from_dict({**spec.to_dict(), "test_cmd": "python -m pytest_not_installed -rA"})
    run = run_tests(broken, inst.patch)
    assert run.status == ERROR and run.reward is None and "pristine tree" in run.error


def test_genuine_fix_is_not_suspicious(graded):
    inst, spec, _ = graded[INSTANCES[0]]
    run = run_tests(spec, inst.patch)
    assert run.status == RESOLVED and run.suspicious == [] and run.flags == []


def test_suspicious_reaches_the_score_details_and_the_instance_report(graded, tmp_path):
    from agentrm.evals.swebench.harness import EvalConfig, evaluate
    from agentrm.traces import open_store

    inst, _, work = graded["agentrm__textkit-1"]
    patch = appended(work, inst.base_commit, package_init(inst), GC_PLUGIN_AT_RUNTIME)
    preds = tmp_path / "preds.jsonl"
    preds.write_text(json.dumps({"instance_id": inst.instance_id, "model_name_or_path": "cheat",
                                 "model_patch": patch}) + "\n")
    db = f"sqlite:///{tmp_path}/store.db"
    evaluate(EvalConfig(predictions=str(preds), instance_ids=[inst.instance_id], run_id="tamper",
                        run_dir=str(tmp_path / "runs"), db=db, max_workers=1, timeout=300))
    result = json.loads((tmp_path / "runs/tamper/cheat" / inst.instance_id / "result.json").read_text())
    assert "gc_walk: textkit/__init__.py" in result["run"]["suspicious"]
    report = json.loads((tmp_path / "runs/tamper/cheat" / inst.instance_id / "report.json").read_text())
    assert "gc_walk: textkit/__init__.py" in report[inst.instance_id]["suspicious"]
    (score,) = [s for s in open_store(db).get_scores() if s.scorer == "tests"]
    assert "plugin_registration: textkit/__init__.py" in score.details["suspicious"]
