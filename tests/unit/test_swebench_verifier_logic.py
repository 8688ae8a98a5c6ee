"""The test verifier's pure parts: log parsers, grading, patch checks and the trust rules that
decide which results count (no containers here; the Docker tests run the same code for real)."""

from __future__ import annotations

import pytest

from agentrm.errors import InputError
from agentrm.verifiers import log_parsers as lp
from agentrm.verifiers.tests_script import (
    DEFAULT_PROTECTED,
    START,
    patch_problem,
    protected_paths,
    touched_paths,
)
from agentrm.verifiers.tests_verifier import (
    ERROR,
    PATCH_FAILED,
    RESOLVED,
    TIMEOUT,
    UNRESOLVED,
    TestSpec,
    grade,
    interpret,
)

PYTEST_RA = """\
============================= test session starts ==============================
tests/test_a.py ..F                                                      [100%]
=========================== short test summary info ============================
PASSED tests/test_a.py::test_one
PASSED tests/test_a.py::TestK::test_two[a - b]
FAILED tests/test_a.py::test_three - AssertionError: assert 1 == 2 - extra
XFAIL tests/test_a.py::test_four - reason
ERROR tests/test_a.py::test_five - fixture 'x' not found
========================= 1 failed, 2 passed, 1 xfailed, 1 error in 0.12s =========================
"""

JUNIT = """<?xml version="1.0" encoding="utf-8"?><testsuites><testsuite name="pytest" errors="0"
failures="1" skipped="1" tests="4"><testcase classname="tests.test_a" name="test_one"
file="tests/test_a.py" line="1" time="0.001" /><testcase classname="tests.test_a.TestK"
name="test_two[a - b]" file="tests/test_a.py" line="5" time="0.001" /><testcase
classname="tests.test_a" name="test_three" file="tests/test_a.py" line="9"><failure
message="assert">boom</failure></testcase><testcase classname="tests.test_a" name="test_four"
file="tests/test_a.py" line="12"><skipped type="pytest.xfail" message="reason" /></testcase>
<testcase classname="tests.test_a" name="test_six" file="tests/test_a.py" line="15"><skipped
type="pytest.skip" message="no" /></testcase></testsuite></testsuites>"""


def test_pytest_short_summary_parser():
    got = lp.parse("pytest", PYTEST_RA)
    assert got == {"tests/test_a.py::test_one": "PASSED",
                   "tests/test_a.py::TestK::test_two[a - b]": "PASSED",
                   "tests/test_a.py::test_three": "FAILED",
                   "tests/test_a.py::test_four": "XFAIL",
                   "tests/test_a.py::test_five": "ERROR"}


def test_pytest_verbose_lines_and_worst_status_wins():
    log = ("tests/t.py::test_x PASSED                                  [ 50%]\n"
           "tests/t.py::test_x ERROR                                   [ 50%]\n"
           "\x1b[32mtests/t.py::test_y PASSED\x1b[0m [100%]\n")
    assert lp.parse("pytest", log) == {"tests/t.py::test_x": "ERROR",
                                       "tests/t.py::test_y": "PASSED"}
    # parse_log_pytest is the swebench package's parser: -rA summary lines only
    assert lp.parse("parse_log_pytest", log) == {}
    assert lp.parse("parse_log_pytest", "PASSED tests/t.py::test_y\n") == {"tests/t.py::test_y": "PASSED"}


def test_junit_parser_builds_pytest_ids():
    assert lp.parse_junit(JUNIT) == {"tests/test_a.py::test_one": "PASSED",
                                     "tests/test_a.py::TestK::test_two[a - b]": "PASSED",
                                     "tests/test_a.py::test_three": "FAILED",
                                     "tests/test_a.py::test_four": "XFAIL",
                                     "tests/test_a.py::test_six": "SKIPPED"}
    with pytest.raises(ValueError):
        lp.parse_junit("<testsuite><testcase")


def test_unittest_parser_and_summary_counts():
    log = "test_a (pkg.mod.T) ... ok\ntest_b (pkg.mod.T) ... FAIL\ntest_c (pkg.mod.T) ... skipped 'x'\n"
    assert lp.parse("unittest", log) == {"pkg.mod.T.test_a": "PASSED", "pkg.mod.T.test_b": "FAILED",
                                         "pkg.mod.T.test_c": "SKIPPED"}
    assert lp.pytest_summary_counts(PYTEST_RA) == {"failed": 1, "passed": 2, "xfailed": 1, "error": 1}


def test_unknown_parser_is_an_input_error():
    with pytest.raises(InputError, match="unknown log parser 'nope'"):
        lp.get("nope")


def test_grade_follows_the_swebench_rule():
    statuses = {"f1": "PASSED", "f2": "XFAIL", "p1": "PASSED", "p2": "SKIPPED"}
    ts, res = grade(statuses, ["f1", "f2"], ["p1"])
    assert res == "RESOLVED_FULL" and ts["FAIL_TO_PASS"]["success"] == ["f1", "f2"]
    _, res = grade(statuses, ["f1", "missing"], ["p1"])  # a missing test counts as failed
    assert res == "RESOLVED_PARTIAL"
    _, res = grade(statuses, ["f1", "p2"], ["p1"])  # a SKIPPED F2P test is not a pass
    assert res == "RESOLVED_PARTIAL"
    _, res = grade(statuses, ["f1"], ["p1", "p2"])  # a SKIPPED P2P test is kept (swebench 5)
    assert res == "RESOLVED_FULL"
    _, res = grade({}, [], [])  # empty lists count as fully passed (rate 1)
    assert res == "RESOLVED_FULL"


def test_touched_and_protected_paths():
    patch = ("diff --git a/src/x.py b/src/x.py\n--- a/src/x.py\n+++ b/src/x.py\n@@ -1 +1 @@\n-a\n+b\n"
             "diff --git a/pkg/conftest.py b/pkg/conftest.py\nnew file mode 100644\n--- /dev/null\n"
             "+++ b/pkg/conftest.py\n@@ -0,0 +1 @@\n+x\n"
             "diff --git a/tests/old.py b/tests/new.py\nrename from tests/old.py\nrename to tests/new.py\n")
    touched = touched_paths(patch)
    assert touched == {"src/x.py", "pkg/conftest.py", "tests/old.py", "tests/new.py"}
    assert protected_paths(touched, DEFAULT_PROTECTED) == ["pkg/conftest.py", "tests/new.py", "tests/old.py"]
    # a source package named like a test helper is not protected (django/test/utils.py)
    assert protected_paths({"django/test/utils.py", "pyproject.toml", "a/sitecustomize.py"},
                           DEFAULT_PROTECTED) == ["a/sitecustomize.py", "pyproject.toml"]


@pytest.mark.parametrize("patch,why", [
    ("diff --git a/x b/x\nGIT binary patch\nliteral 3\n", "binary"),
    ("--- a/x\n+++ b/x\nBinary files a/x and b/x differ\n", "binary"),
    ("--- a/x\n+++ b/x\n@@ -1 +1 @@\n-\x00\n+b\n", "NUL"),
    ("just some text\n", "not a unified diff"),
])
def test_patch_problems(patch, why):
    assert why in patch_problem(patch)


SPEC = TestSpec(image="img", fail_to_pass=["t.py::f"], pass_to_pass=["t.py::p"],
                test_patch="--- a/t.py\n+++ b/t.py\n", timeout=30)
PASS_JUNIT = ('<testsuite><testcase classname="t" name="f" file="t.py"/>'
              '<testcase classname="t" name="p" file="t.py"/></testsuite>')


def _out(test_log: str, pre: str = ">>>>> Applied Patch (git apply --verbose)\n") -> str:
    return f"{pre}{START}\n{test_log}"


def test_interpret_resolves_on_consistent_evidence():
    run = interpret(SPEC, _out("PASSED t.py::f\nPASSED t.py::p\n"), 0, False, PASS_JUNIT, [])
    assert run.status == RESOLVED and run.apply_method == "git apply --verbose" and not run.flags


def test_interpret_forged_log_lines_do_not_count():
    junit = '<testsuite><testcase classname="t" name="p" file="t.py"/></testsuite>'
    run = interpret(SPEC, _out("PASSED t.py::f\nPASSED t.py::p\n"), 0, False, junit, [])
    assert run.status == UNRESOLVED and "log_claims_unconfirmed_passes" in run.flags


def test_interpret_nonzero_exit_without_failures_trusts_nothing():
    run = interpret(SPEC, _out(""), 1, False, PASS_JUNIT, [])
    assert run.status == UNRESOLVED and "exit_code_without_failures" in run.flags and run.tests == {}


def test_interpret_missing_junit_trusts_no_text():
    run = interpret(SPEC, _out("PASSED t.py::f\nPASSED t.py::p\n"), 0, False, None, [])
    assert run.status == UNRESOLVED and run.flags == ["no_junit"]


def test_interpret_separates_patch_failure_timeout_and_infrastructure():
    assert interpret(SPEC, ">>>>> Patch Apply Failed\n", 91, False, None, []).status == PATCH_FAILED
    timeout = interpret(SPEC, _out("..."), 124, False, None, [])
    # the in-container timeout and anything printed after the patched code ran are the model's
    assert timeout.status == TIMEOUT and timeout.reward == 0.0 and timeout.failure_kind == "model"
    faked = interpret(SPEC, _out("/opt/venv/bin/python: No module named pytest\n"), 127, False, None, [])
    assert faked.status == UNRESOLVED and faked.reward == 0.0
    infra = interpret(SPEC, ">>>>> Runner Missing\n", 93, False, None, [])  # probed before the patch
    assert infra.status == ERROR and infra.reward is None
    assert interpret(SPEC, _out("..."), -1, True, None, []).status == ERROR  # the engine's deadline
    assert interpret(SPEC, ">>>>> Test Patch Apply Failed\n", 92, False, None, []).status == ERROR
    unresolved = interpret(SPEC, _out(""), 1, False,
                           PASS_JUNIT.replace('name="f" file="t.py"/>', 'name="f" file="t.py"><failure/></testcase>'), [])
    assert unresolved.status == UNRESOLVED and unresolved.reward == 0.0


def test_spec_round_trip_and_hash_ignores_resources():
    again = TestSpec.from_dict({**SPEC.to_dict(), "cpus": 4.0, "unknown": 1})
    assert again.hash() == SPEC.hash() and again.cpus == 4.0


def test_junit_block_is_taken_from_the_last_block_with_this_runs_nonce():
    import base64

    from agentrm.verifiers.tests_script import JUNIT_BEGIN, JUNIT_END
    from agentrm.verifiers.tests_verifier import split_junit

    def block(nonce, xml):
        return f"{JUNIT_BEGIN} {nonce}\n{base64.b64encode(xml.encode()).decode()}\n{JUNIT_END} {nonce}\n"

    forged = block("guess", PASS_JUNIT) + block("n1", "<forged/>")  # printed by code under test
    out = "log\n" + forged + "more\n" + block("n1", "<real/>")
    rest, xml = split_junit(out, "n1")
    assert xml == "<real/>" and "<real/>" not in rest and rest.startswith("log\n")
    assert split_junit("no block here", "n1") == ("no block here", None)
    empty = f"{JUNIT_BEGIN} n1\n\n{JUNIT_END} n1\n"
    assert split_junit(empty, "n1")[1] is None


def test_eval_script_is_valid_bash_and_embeds_patches_verbatim(tmp_path):
    import subprocess

    from agentrm.verifiers.tests_script import eval_script

    patch = "--- a/x\n+++ b/x\n@@ -1 +1 @@\n-$HOME `id` {braces}\n+'quotes' \"and\" \\back\n"
    script = eval_script(SPEC, "/tmp/d", "/tmp/d/j.xml", ["conftest.py"], model_patch=patch, nonce="n")
    path = tmp_path / "eval.sh"
    path.write_text(script)
    assert subprocess.run(["bash", "-n", str(path)], capture_output=True).returncode == 0
    assert patch in script and "AGENTRM_EOF_n" in script


def test_tests_scorer_abstains_without_a_spec_and_is_registered():
    from agentrm.types import Trajectory
    from agentrm.verifiers.registry import make_scorer

    scorer = make_scorer("tests", model="ignored", device="cpu", timeout="60")
    assert scorer.name == "tests" and scorer.config() == {"timeout": 60.0}
    [score] = scorer.score([Trajectory("t1", "task", "g")])
    assert score.value is None and score.details["status"] == "no_test_spec"
    assert score.level.value == "trajectory" and score.config_hash == scorer.config_hash()
