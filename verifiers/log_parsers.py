"""Test-log parsers: a test runner's output → {test id: status}.

Statuses are the SWE-bench ones: PASSED, FAILED, SKIPPED, ERROR, XFAIL.
Names: `parse_log_X` is exactly the official `swebench` package's parser X (every one in its
PARSER_REGISTRY: django, sympy, matplotlib, jest, cargo, ...); a bare name is agentrm's own parser
when it has one (pytest, pytest_v2, unittest, junit), else the package's. Some package parsers
read the instance (its version or id); a parser spec carries that context after an `@`:
`parse_log_calypso@version=10.0,instance_id=Automattic__wp-calypso-1`, and `eval_type=fail_only`
for the repositories SWE-bench grades on failures only. Grading (`grade`) is the package's.
Text parsers only read what a runner printed, which the code under test can forge, so the test
verifier prefers the structured junit parser and uses text only as a cross-check.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Callable, Sequence
from types import SimpleNamespace
from typing import Any

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


PASS_AND_FAIL, FAIL_ONLY = "pass_and_fail", "fail_only"
SUITE_RAN_ID = "(suite ran)"  # see _package_parser: evidence, not a test


_REGISTRY: dict[str, Callable[..., dict[str, str]]] = {}


def package_registry() -> dict[str, Callable[..., dict[str, str]]]:
    """The `swebench` package's PARSER_REGISTRY plus the parsers its MAP_REPO_TO_PARSER_* tables
    name that the registry lacks (imported on first use: about a second)."""
    if not _REGISTRY:
        import importlib

        from swebench.harness.log_parsers import PARSER_REGISTRY

        found = dict(PARSER_REGISTRY)
        for lang in ("python", "javascript", "c", "go", "java", "php", "ruby", "rust"):
            module = importlib.import_module(f"swebench.harness.log_parsers.{lang}")
            for table in (v for k, v in vars(module).items() if k.startswith("MAP_REPO_TO_PARSER")):
                for func in table.values():
                    found.setdefault(func.__name__, func)
        _REGISTRY.update(found)
    return _REGISTRY


def parser_spec(name: str, **context: Any) -> str:
    """`name@k=v,...` for the context a package parser reads (empty values are dropped)."""
    items = [f"{k}={v}" for k, v in sorted(context.items()) if v not in (None, "")]
    return f"{name}@{','.join(items)}" if items else name


def split_spec(spec: str) -> tuple[str, dict[str, str]]:
    name, _, rest = spec.partition("@")
    context = dict(kv.split("=", 1) for kv in rest.split(",") if "=" in kv)
    return name, context


def names() -> list[str]:
    return sorted(set(PARSERS) | set(package_registry()))


def get(name: str) -> Parser:
    """The parser for a name or parser spec; an InputError lists the known names."""
    bare, context = split_spec(name)
    key = bare.removeprefix("parse_log_")
    if bare.startswith("parse_") or key not in PARSERS:
        registry = package_registry()
        func = registry.get(bare) or registry.get(f"parse_log_{key}")
        if func is not None:
            return _package_parser(func, context)
    if key not in PARSERS:
        raise InputError(f"unknown log parser {bare!r}: choose from {', '.join(names())}")
    return PARSERS[key]


def _package_parser(func: Callable[..., dict[str, str]], context: dict[str, str]) -> Parser:
    """A package parser bound to its instance context. For fail-only grading an empty map is
    ambiguous (all passed, or never ran): the package's own evidence test (SUITE_RAN) decides,
    recorded as the SUITE_RAN_ID entry so `grade` can tell the two apart."""
    spec = SimpleNamespace(instance_id=context.get("instance_id", ""),
                           version=context.get("version", ""), repo=context.get("repo", ""),
                           log_parser=func.__name__, FAIL_TO_PASS=[], PASS_TO_PASS=[])

    def parse_with_context(log: str) -> dict[str, str]:
        out = dict(func(log, spec))
        if not out and context.get("eval_type") == FAIL_ONLY:
            from swebench.harness.grading import SUITE_RAN

            if SUITE_RAN.search(log):
                out[SUITE_RAN_ID] = PASSED
        return out

    return parse_with_context


def parse(name: str, log: str) -> dict[str, str]:
    return get(name)(log)


def grade(statuses: dict[str, str], fail_to_pass: Sequence[str], pass_to_pass: Sequence[str],
          parser: str = "") -> tuple[dict[str, dict[str, list[str]]], str]:
    """The package's grading (get_eval_tests_report + get_resolution_status): F2P passes iff
    PASSED or XFAIL (missing or SKIPPED fail), P2P is kept iff PASSED, XFAIL or SKIPPED;
    RESOLVED_FULL iff all of both. Fail-only repositories (eval_type in the parser spec) count
    every test not reported FAILED, but only when the suite is known to have run."""
    from swebench.harness.constants import EvalType
    from swebench.harness.grading import get_eval_tests_report, get_resolution_status

    eval_type = split_spec(parser)[1].get("eval_type", PASS_AND_FAIL)
    if eval_type == FAIL_ONLY and not statuses:
        eval_type = PASS_AND_FAIL  # no evidence the suite ran: nothing counts as passed
    statuses = {k: v for k, v in statuses.items() if k != SUITE_RAN_ID}
    gold = {"FAIL_TO_PASS": list(fail_to_pass), "PASS_TO_PASS": list(pass_to_pass),
            "FAIL_TO_FAIL": [], "PASS_TO_FAIL": []}
    report = get_eval_tests_report(statuses, gold, eval_type=EvalType(eval_type))
    return report, get_resolution_status(report)


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
