"""Test-log parsers: a test runner's output → {test id: status}.

Statuses are the SWE-bench ones (FORMATS.md §1.4): PASSED, FAILED, SKIPPED, ERROR, XFAIL.
Parsers are registered by name (`PARSERS`); v5 dataset rows name theirs (`log_parser`), with or
without SWE-bench's `parse_log_` prefix. Text parsers only read what a runner printed, which the
code under test can forge, so the test verifier prefers the structured junit parser and uses text
only as a cross-check (EVAL_HARNESS_LESSONS.md §3.4).
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Callable

from agentrm.errors import InputError

PASSED, FAILED, SKIPPED, ERROR, XFAIL = "PASSED", "FAILED", "SKIPPED", "ERROR", "XFAIL"
STATUSES = (PASSED, FAILED, SKIPPED, ERROR, XFAIL)

Parser = Callable[[str], dict[str, str]]
PARSERS: dict[str, Parser] = {}


def register(name: str, parser: Parser) -> Parser:
    if name in PARSERS and PARSERS[name] is not parser:
        raise ValueError(f"log parser {name!r} is already registered")
    PARSERS[name] = parser
    return parser


def get(name: str) -> Parser:
    key = name.removeprefix("parse_log_")
    if key not in PARSERS:
        raise InputError(f"unknown log parser {name!r}: choose from {', '.join(sorted(PARSERS))}")
    return PARSERS[key]


def parse(name: str, log: str) -> dict[str, str]:
    return get(name)(log)


# pytest -rA short summary: "PASSED tests/a.py::t", "FAILED tests/a.py::t - AssertionError: ..."
# a test id: no spaces outside its parameter brackets, which may hold anything ("[a - b]")
_ID = r"[^\s\[]+::[^\s\[]+(?:\[.*?\](?=\s+-\s|\s*$|\s+(?:PASSED|FAILED|ERROR|XFAIL|XPASS|SKIPPED)))?"
_PYTEST_SUMMARY = re.compile(rf"^(PASSED|FAILED|ERROR|XFAIL|XPASS|SKIPPED)\s+({_ID})(?:\s+-\s.*)?$")
# pytest -v progress: "tests/a.py::t PASSED  [ 50%]"
_PYTEST_VERBOSE = re.compile(rf"^({_ID})\s+(PASSED|FAILED|ERROR|XFAIL|XPASS|SKIPPED)(?:\s+\[\s*\d+%\])?\s*$")
_NORMALISE = {"XPASS": PASSED}


def _keep_worst(out: dict[str, str], test: str, status: str) -> None:
    """A test reported twice (a call failure plus a teardown error) keeps the worse status."""
    rank = {PASSED: 0, XFAIL: 0, SKIPPED: 1, FAILED: 2, ERROR: 3}
    status = _NORMALISE.get(status, status)
    if test not in out or rank[status] > rank[out[test]]:
        out[test] = status


def parse_pytest(log: str) -> dict[str, str]:
    """pytest with `-rA` (short summary of every outcome) or `-v` (one line per test)."""
    out: dict[str, str] = {}
    for raw in log.splitlines():
        line = _strip_ansi(raw).rstrip()
        match = _PYTEST_SUMMARY.match(line)
        if match:
            _keep_worst(out, match.group(2), match.group(1))
            continue
        match = _PYTEST_VERBOSE.match(line)
        if match:
            _keep_worst(out, match.group(1), match.group(2))
    return out


_UNITTEST = re.compile(r"^(\w+) \(([\w.]+)\)(?:\n.*)? \.\.\. (ok|FAIL|ERROR|skipped.*|expected failure|unexpected success)$")


def parse_unittest(log: str) -> dict[str, str]:
    """`python -m unittest -v`: "test_x (pkg.mod.Class) ... ok"; id = "pkg.mod.Class.test_x"."""
    status_of = {"ok": PASSED, "FAIL": FAILED, "ERROR": ERROR, "expected failure": XFAIL,
                 "unexpected success": FAILED}
    out: dict[str, str] = {}
    for raw in log.splitlines():
        match = _UNITTEST.match(_strip_ansi(raw).rstrip())
        if match:
            name, where, result = match.groups()
            status = SKIPPED if result.startswith("skipped") else status_of[result]
            _keep_worst(out, f"{where}.{name}", status)
    return out


def junit_test_id(case: ET.Element) -> str:
    """pytest-style id from a junit <testcase>: "path.py::Class::name" when `file` is known
    (pytest's xunit1 family), else "classname::name"."""
    name = case.get("name", "")
    classname = case.get("classname", "")
    path = case.get("file")
    if path and path.endswith(".py"):
        module = path[:-3].replace("/", ".")
        rest = classname[len(module) + 1:] if classname.startswith(module) else ""
        return "::".join([path, *[p for p in rest.split(".") if p], name])
    return f"{classname}::{name}" if classname else name


def parse_junit(xml_text: str) -> dict[str, str]:
    """JUnit XML (pytest --junitxml and most runners). Raises ValueError on malformed XML."""
    try:
        root = ET.fromstring(xml_text)
    except ET.ParseError as exc:
        raise ValueError(f"malformed junit XML: {exc}") from exc
    out: dict[str, str] = {}
    for case in root.iter("testcase"):
        if case.find("error") is not None:
            status = ERROR
        elif case.find("failure") is not None:
            status = FAILED
        elif (skipped := case.find("skipped")) is not None:
            status = XFAIL if skipped.get("type") == "pytest.xfail" else SKIPPED
        else:
            status = PASSED
        _keep_worst(out, junit_test_id(case), status)
    return out


_SUMMARY = re.compile(r"=+ (?:(\d+ \w+(?:, \d+ \w+)*)) in [\d.]+s")
_COUNT = re.compile(r"(\d+) (passed|failed|errors?|skipped|xfailed|xpassed|deselected|warnings?)")


def pytest_summary_counts(log: str) -> dict[str, int]:
    """Counts from pytest's closing line ("=== 3 passed, 1 failed in 0.1s ==="); {} if absent.
    Evidence that the suite actually ran (v5 grading hardening)."""
    counts: dict[str, int] = {}
    for line in log.splitlines():
        match = _SUMMARY.search(_strip_ansi(line))
        if match:
            counts = {kind.rstrip("s") if kind.startswith("error") else kind: int(n)
                      for n, kind in _COUNT.findall(match.group(1))}
    return counts


_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def _strip_ansi(text: str) -> str:
    return _ANSI.sub("", text)


register("pytest", parse_pytest)
register("pytest_v2", parse_pytest)  # SWE-bench's name for the colour-stripped variant
register("unittest", parse_unittest)
register("junit", parse_junit)
