"""Parity with the official swebench package: for recorded test output covering every parser in
its PARSER_REGISTRY, agentrm's test verifier (interpret: markers, junit, exit-code cross-check,
grading) gives the same per-test statuses and the same resolved verdict as the package's own
get_logs_eval / get_eval_report on the same log. Data: tests/data/swebench/parity/cases.jsonl
(make_parity.py: real pytest, sympy, node TAP and cargo runs; documented formats otherwise)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agentrm.evals.swebench.specs import package_parser
from agentrm.verifiers import log_parsers
from agentrm.verifiers.tests_script import END, START
from agentrm.verifiers.tests_verifier import RESOLVED, TestSpec, interpret

swebench = pytest.importorskip("swebench")
from swebench.harness.constants import TEST_EXIT_CODE  # noqa: E402
from swebench.harness.grading import get_eval_report, get_logs_eval  # noqa: E402
from swebench.harness.log_parsers import PARSER_REGISTRY  # noqa: E402
from swebench.types import TestSpec as PackageSpec  # noqa: E402

DATA = Path(__file__).resolve().parents[1] / "data" / "swebench" / "parity" / "cases.jsonl"
CASES = [json.loads(line) for line in DATA.read_text().splitlines() if line.strip()]
PRE = "+ git apply --verbose /tmp/patch.diff\n>>>>> Applied Patch (git apply --verbose)\n"


def package_side(case: dict, tmp_path: Path) -> tuple[dict[str, str], bool, dict]:
    """The package's own grading of the official-style test_output.txt."""
    ctx = case["context"]
    log = (f"{PRE}{START}\n{case['output']}{END}\n{TEST_EXIT_CODE}: {case['exit_code']}\n")
    path = tmp_path / "test_output.txt"
    path.write_text(log)
    spec = PackageSpec(instance_id=ctx.get("instance_id", "owner__repo-1"), image="unused",
                       eval_script_list=[], repo=ctx.get("repo", "owner/repo"),
                       version=ctx.get("version", ""), FAIL_TO_PASS=case["FAIL_TO_PASS"],
                       PASS_TO_PASS=case["PASS_TO_PASS"], log_parser=case["parser"],
                       eval_type=ctx.get("eval_type", "pass_and_fail"))
    statuses, found = get_logs_eval(spec, str(path))
    report = get_eval_report(spec, {"instance_id": spec.instance_id, "model_patch": "x"},
                             str(path), include_tests_status=True)[spec.instance_id]
    return (statuses if found else {}), report["resolved"], report.get("tests_status", {})


def agentrm_side(case: dict):
    """What the harness builds for a SWE-bench row naming this parser (the junit file of the
    pytest runs is handed over too: the package's parsers must not be replaced by it)."""
    ctx = case["context"]
    parser = package_parser(case["parser"], **ctx)
    spec = TestSpec(image="unused", fail_to_pass=case["FAIL_TO_PASS"],
                    pass_to_pass=case["PASS_TO_PASS"], log_parser=parser,
                    test_cmd="python -m pytest -rA")
    output = f"{PRE}{START}\n{case['output']}{END}\n"
    return interpret(spec, output, case["exit_code"], False, case.get("junit"), [])


def test_every_package_parser_has_recorded_output():
    """Every PARSER_REGISTRY entry, plus the parsers only MAP_REPO_TO_PARSER_* names."""
    wanted = set(log_parsers.package_registry())
    assert set(PARSER_REGISTRY) <= wanted
    covered = {c["parser"] for c in CASES}
    assert wanted <= covered, sorted(wanted - covered)
    # and each one is exercised both ways: one resolved and one unresolved prediction
    for parser in wanted:
        kinds = {c["case"].rsplit("/", 1)[1] for c in CASES if c["parser"] == parser}
        assert {"resolved", "unresolved"} <= kinds, parser


@pytest.mark.parametrize("case", CASES, ids=[c["case"] for c in CASES])
def test_statuses_and_verdict_match_the_package(case, tmp_path, monkeypatch):
    if case["parser"] not in PARSER_REGISTRY:  # a repo-table parser: let the grader find it
        monkeypatch.setitem(PARSER_REGISTRY, case["parser"],
                            log_parsers.package_registry()[case["parser"]])
    pkg_statuses, pkg_resolved, pkg_report = package_side(case, tmp_path)
    run = agentrm_side(case)
    ours = {k: v for k, v in run.tests.items() if k != log_parsers.SUITE_RAN_ID}
    assert ours == pkg_statuses
    assert (run.status == RESOLVED) == pkg_resolved
    if pkg_report:
        for key in ("FAIL_TO_PASS", "PASS_TO_PASS"):
            assert run.tests_status[key] == pkg_report[key]
    kind = case["case"].rsplit("/", 1)[1]
    expected = {"resolved": True, "clean_run": True}.get(kind, False)
    assert pkg_resolved is expected, "the recorded case no longer means what it says"
