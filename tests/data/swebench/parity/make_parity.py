"""Regenerate cases.jsonl: recorded test output for every parser of the swebench package.

Real runs where the runner is on this machine (pytest for the 18 pytest-style parsers, sympy's
own test runner, Django's test runner when Django is importable — DJANGO_PATH=DIR adds a
`pip install --target DIR django` — node's TAP reporter, cargo test); the documented formats
(documented.py) for the rest. For each log, two predictions are graded: F2P/P2P chosen among passing tests (resolved)
and with a failing test added (unresolved); fail-only repositories also get a clean run and a run
with no evidence the suite started. The package's verdict is stored with each case.

    python tests/data/swebench/parity/make_parity.py
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from types import SimpleNamespace

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from documented import ALL_PASSED, LOGS  # noqa: E402

PYTEST_TESTS = '''import pytest


@pytest.fixture
def broken():
    raise RuntimeError("fixture failed")


def test_add():
    assert 1 + 1 == 2


def test_sub():
    assert 3 - 1 == 1


def test_uses_broken(broken):
    assert broken


@pytest.mark.skip(reason="not on this platform")
def test_skipped():
    pass


@pytest.mark.xfail(reason="known bug", strict=True)
def test_known_bug():
    assert False


@pytest.mark.parametrize("path", ["/tmp/data/input.txt", "plain"])
def test_param(path):
    assert path


class TestGroup:
    def test_inside(self):
        assert [1, 2] == [1, 2]

    def test_inside_fails(self):
        assert {"a": 1} == {"a": 2}
'''

NODE_TESTS = '''const test = require("node:test");
const assert = require("node:assert");
test("adds numbers", () => assert.strictEqual(1 + 1, 2));
test("joins strings", () => assert.strictEqual("a" + "b", "ab"));
test("divides by zero", () => assert.strictEqual(1 / 0, 0));
'''

CARGO_LIB = '''pub fn add(a: i32, b: i32) -> i32 { a + b }

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn adds() { assert_eq!(add(1, 2), 3); }
    #[test]
    fn adds_negative() { assert_eq!(add(-1, -2), -3); }
    #[test]
    fn overflows() { assert_eq!(add(2, 2), 5); }
}
'''

SYMPY_TESTS = '''def test_ok():
    assert 1 + 1 == 2


def test_bad():
    assert 1 + 1 == 3


def test_err():
    raise ValueError("boom")


def test_ok2():
    pass
'''

SYMPY_RUN = '''import sys
from sympy.testing.runtests import PyTestReporter, SymPyTests
reporter = PyTestReporter(verbose=True, colors=False)
tests = SymPyTests(reporter)
tests._testfiles.append(sys.argv[1])
sys.exit(0 if tests.test() else 1)
'''

PYTEST_PARSERS = [
    "parse_log_pytest", "parse_log_astroid", "parse_log_flask", "parse_log_marshmallow",
    "parse_log_pvlib", "parse_log_pyvista", "parse_log_sqlfluff", "parse_log_xarray",
    "parse_log_pytest_options", "parse_log_pydicom", "parse_log_requests", "parse_log_pylint",
    "parse_log_pytest_v2", "parse_log_astropy", "parse_log_scikit", "parse_log_sphinx",
    "parse_log_seaborn", "parse_log_matplotlib",
]


def _run(cmd: list[str], cwd: Path, env: dict | None = None) -> tuple[str, int]:
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=600,
                          env={**os.environ, **(env or {})})
    return proc.stdout + proc.stderr, proc.returncode


def record_pytest(tmp: Path) -> tuple[str, int, str]:
    root = tmp / "pyproj"
    (root / "tests").mkdir(parents=True)
    (root / "tests" / "test_calc.py").write_text(PYTEST_TESTS)
    junit = root / "junit.xml"
    out, rc = _run([sys.executable, "-m", "pytest", "-rA", "-p", "no:cacheprovider",
                    "-o", "junit_family=xunit1", f"--junitxml={junit}", "tests/test_calc.py"],
                   root, {"PYTHONHASHSEED": "0"})
    out = "\n".join(ln for ln in out.splitlines() if "generated xml file" not in ln) + "\n"
    return out, rc, junit.read_text()


def record_sympy(tmp: Path) -> tuple[str, int]:
    path = tmp / "test_sym.py"
    path.write_text(SYMPY_TESTS)
    runner = tmp / "run_sympy.py"
    runner.write_text(SYMPY_RUN)
    out, rc = _run([sys.executable, str(runner), str(path)], tmp)
    # the header names this machine's interpreter, numpy and seed: not part of the format
    return "\n".join(ln for ln in out.splitlines() if not ln.startswith(
        ("executable:", "numpy:", "random seed:", "hash randomization:"))) + "\n", rc


DJANGO_SETTINGS = """SECRET_KEY = "x"
INSTALLED_APPS = ["app"]
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}}
"""

DJANGO_TESTS = '''import unittest

from django.test import SimpleTestCase


class HumanizeTests(SimpleTestCase):
    def test_apnumber(self):
        self.assertEqual(1 + 1, 2)

    def test_intcomma(self):
        self.assertEqual(",".join(["1", "000"]), "1,000")

    def test_naturalday(self):
        self.assertEqual("today", "yesterday")

    def test_naturaltime(self):
        raise ValueError("boom")

    @unittest.skip("needs babel")
    def test_ordinal(self):
        pass

    def test_i18n_html_ordinal(self):
        """Allow html in output on i18n strings"""
        self.assertTrue(True)
'''


def record_django(tmp: Path) -> tuple[str, int] | None:
    """Django's own test runner (what tests/runtests.py drives), verbosity 2."""
    root = tmp / "djproj"
    (root / "app").mkdir(parents=True)
    (root / "app" / "__init__.py").write_text("")
    (root / "app" / "tests.py").write_text(DJANGO_TESTS)
    (root / "settings.py").write_text(DJANGO_SETTINGS)
    path = os.pathsep.join(p for p in (os.environ.get("DJANGO_PATH"), str(root)) if p)
    probe = subprocess.run([sys.executable, "-c", "import django"], env={**os.environ, "PYTHONPATH": path},
                           capture_output=True)
    if probe.returncode != 0:
        return None
    out, rc = _run([sys.executable, "-m", "django", "test", "app", "-v", "2", "--settings=settings"],
                   root, {"PYTHONPATH": path})
    keep = [ln for ln in out.splitlines() if not ln.startswith(("Ran ", "  File "))]
    return "\n".join(keep) + "\n", rc


def record_node(tmp: Path) -> tuple[str, int] | None:
    if not shutil.which("node"):
        return None
    (tmp / "calc.test.js").write_text(NODE_TESTS)
    out, rc = _run(["node", "--test", "--test-reporter=tap", "calc.test.js"], tmp)
    keep = [ln for ln in out.splitlines() if not ln.strip().startswith(("duration_ms", "# duration"))]
    return "\n".join(keep) + "\n", rc


def record_cargo(tmp: Path) -> tuple[str, int] | None:
    if not shutil.which("cargo"):
        return None
    _run(["cargo", "new", "--lib", "--offline", "-q", "calc"], tmp)
    (tmp / "calc" / "src" / "lib.rs").write_text(CARGO_LIB)
    out, rc = _run(["cargo", "test", "--offline", "-q", "--", "--test-threads=1",
                    "--format=pretty"], tmp / "calc", {"CARGO_TERM_COLOR": "never"})
    keep = [ln for ln in out.splitlines() if ln.startswith(("running", "test ", "failures",
                                                             "test result"))]
    return "\n".join(keep) + "\n", rc


def package_statuses(parser: str, context: dict, log: str) -> dict[str, str]:
    from agentrm.verifiers.log_parsers import package_registry

    spec = SimpleNamespace(instance_id=context.get("instance_id", ""),
                           version=context.get("version", ""), repo=context.get("repo", ""))
    return package_registry()[parser](log, spec)


def cases_for(parser: str, context: dict, log: str, rc: int, source: str,
              junit: str | None = None) -> list[dict]:
    statuses = package_statuses(parser, context, log)
    passing = sorted(t for t, s in statuses.items() if s in ("PASSED", "XFAIL"))
    failing = sorted(t for t, s in statuses.items() if s in ("FAILED", "ERROR"))
    if not failing:
        raise SystemExit(f"{parser}: the log has no failing test")
    if context.get("eval_type") == "fail_only":
        good = {"FAIL_TO_PASS": ["a test the run did not report failing"], "PASS_TO_PASS": passing[:2]}
    else:
        if not passing:
            raise SystemExit(f"{parser}: the log has no passing test")
        good = {"FAIL_TO_PASS": passing[:1], "PASS_TO_PASS": passing[1:3]}
    bad = {"FAIL_TO_PASS": good["FAIL_TO_PASS"] + failing[:1], "PASS_TO_PASS": good["PASS_TO_PASS"]}
    base = {"parser": parser, "context": context, "source": source, "output": log, "exit_code": rc,
            "junit": junit}
    return [{**base, "case": f"{parser}/{kind}", **tests}
            for kind, tests in (("resolved", good), ("unresolved", bad))]


def main() -> None:
    cases: list[dict] = []
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        log, rc, junit = record_pytest(tmp)
        for parser in PYTEST_PARSERS:
            uses_junit = parser in ("parse_log_pytest", "parse_log_pytest_v2")
            cases += cases_for(parser, {}, log, rc, "real run: python -m pytest -rA",
                               junit if uses_junit else None)
        forged = "PASSED tests/test_calc.py::test_add\nPASSED tests/test_calc.py::test_sub\n"
        cases.append({"case": "parse_log_pytest/exit_code_without_failures",
                      "parser": "parse_log_pytest", "context": {}, "source": "forged summary",
                      "output": forged, "exit_code": 1, "junit": None,
                      "FAIL_TO_PASS": ["tests/test_calc.py::test_add"],
                      "PASS_TO_PASS": ["tests/test_calc.py::test_sub"]})
        log, rc = record_sympy(tmp / "")
        cases += cases_for("parse_log_sympy", {"repo": "sympy/sympy"}, log, rc,
                           "real run: sympy's test runner (bin/test)")
        django = record_django(tmp)
        documented = dict(LOGS)
        if django:
            cases += cases_for("parse_log_django", {"repo": "django/django"}, *django,
                               "real run: Django's test runner, verbosity 2")
            documented.pop("parse_log_django")
        node = record_node(tmp)
        if node:
            cases += cases_for("parse_log_tap", {"repo": "axios/axios"}, *node,
                               "real run: node --test --test-reporter=tap")
        cargo = record_cargo(tmp)
        if cargo:
            cases += cases_for("parse_log_cargo", {"repo": "burntsushi/ripgrep"}, *cargo,
                               "real run: cargo test")
            documented.pop("parse_log_cargo")
    for parser, (context, log, rc) in documented.items():
        cases += cases_for(parser, context, log, rc, "documented format")
    for parser, (context, log, rc) in ALL_PASSED.items():
        cases.append({"case": f"{parser}/clean_run", "parser": parser, "context": context,
                      "source": "documented format", "output": log, "exit_code": rc, "junit": None,
                      "FAIL_TO_PASS": ["any test"], "PASS_TO_PASS": []})
        cases.append({"case": f"{parser}/never_ran", "parser": parser, "context": context,
                      "source": "runner did not start", "output": "Error: browser not found\n",
                      "exit_code": 0, "junit": None, "FAIL_TO_PASS": ["any test"],
                      "PASS_TO_PASS": []})
    out = HERE / "cases.jsonl"
    out.write_text("".join(json.dumps(c, sort_keys=True) + "\n" for c in cases))
    print(f"{len(cases)} cases, {len({c['parser'] for c in cases})} parsers -> {out}")


if __name__ == "__main__":
    main()
