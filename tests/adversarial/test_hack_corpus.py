"""The shipped reward-hack corpus against the real verifiers (Docker): every hack is rejected,
or accepted only with a `suspicious` flag (the documented in-process limit of test grading).

Built-in tasks: fix-total (a command verifier) gets every command/any hack, count-lines (an
answer verifier) every answer hack. SWE-bench: agentrm__textkit-1 in agent mode gets every
SWE-bench hack. One test per hack, so a finding still open shows up by name.
"""

from __future__ import annotations

import json

import pytest

from agentrm.hacks.audit import HackResult, run_swebench_hacks, run_task_hacks
from agentrm.hacks.corpus import BY_NAME, CORPUS, TARGETS, applies
from agentrm.tasks import bundled_tasks

TASK_HACKS = [h.name for h in CORPUS if h.target != "swebench"]
SWE_HACKS = [h.name for h in CORPUS if h.target == "swebench"]
TASKS = {t.id: t for t in bundled_tasks() if t.id in ("fix-total", "count-lines")}


def test_corpus_is_well_formed():
    assert len({h.name for h in CORPUS}) == len(CORPUS)
    for h in CORPUS:
        assert h.target in TARGETS and h.expected in ("rejected", "flagged") and h.description
        assert h.actions[-1]["tool"] == "submit", h.name  # every trajectory ends by submitting
    # the corpus covers every finding of the issue it was built from, and the adversarial tests
    for finding in range(1, 6):
        assert any(h.source == f"issue 14 finding {finding}" for h in CORPUS), finding
    assert {h.source for h in CORPUS} >= {"tests/adversarial/test_swebench_cheats.py",
                                          "tests/adversarial/test_verifier_hacks.py"}
    assert [h.name for h in CORPUS if h.expected == "flagged"] == ["gc-plugin-at-runtime"]


def check(result: HackResult) -> None:
    detail = json.dumps(result.to_dict())
    assert result.status != "not_run", detail
    assert result.passed, detail  # rejected, or accepted with the reasons flagged
    if BY_NAME[result.hack].expected == "rejected":
        assert not result.accepted, detail


@pytest.fixture(scope="module")
def task_results(docker_client):
    hacks = [BY_NAME[n] for n in TASK_HACKS]
    results = run_task_hacks(list(TASKS.values()), hacks, concurrency=2)
    return {(r.hack, r.target): r for r in results}


@pytest.mark.docker
@pytest.mark.slow
@pytest.mark.parametrize("name", TASK_HACKS)
def test_task_hack_is_rejected(task_results, name):
    ran = [r for (hack, _), r in task_results.items() if hack == name]
    expected = [t for t in TASKS.values() if applies(BY_NAME[name], "command" if t.id == "fix-total" else "answer")]
    assert len(ran) == len(expected) > 0
    for result in ran:
        check(result)


@pytest.fixture(scope="module")
def swe_results(docker_client, tmp_path_factory):
    hacks = [BY_NAME[n] for n in SWE_HACKS]
    results = run_swebench_hacks("bundled", ["agentrm__textkit-1"], hacks, timeout=30,
                                 work_dir=str(tmp_path_factory.mktemp("hacks")))
    return {r.hack: r for r in results}


@pytest.mark.docker
@pytest.mark.slow
@pytest.mark.parametrize("name", SWE_HACKS)
def test_swebench_hack_is_rejected_or_flagged(swe_results, name):
    check(swe_results[name])
    if name == "gc-plugin-at-runtime":  # the in-process limit: it resolves, and says why it may not count
        result = swe_results[name]
        assert result.accepted and {r.split(":")[0] for r in result.reasons} >= {
            "gc_walk", "runner_import", "plugin_registration"}


def test_cli_lists_the_corpus_and_refuses_bad_input(cli):
    listed = cli("audit", "hacks", "--list", "--json")
    assert listed.returncode == 0
    assert [h["name"] for h in json.loads(listed.stdout)] == [h.name for h in CORPUS]
    bad = cli("audit", "hacks", "--hack", "no-such-hack", "--tasks", "builtin")
    assert bad.returncode == 2 and "no-such-hack" in bad.stderr
    assert cli("audit", "hacks").returncode == 2  # nothing to attack
    assert cli("audit", "hacks", "--task", "nope").returncode == 2


@pytest.mark.docker
@pytest.mark.slow
def test_cli_exit_status_follows_the_verdicts(cli, docker_client, tmp_path):
    # a deliberately weak verifier ("contains") accepts the answer spray: exit 1, reported as
    # ACCEPTED; the same task with a numeric verifier rejects it: exit 0
    rows = [{"id": "weak", "instruction": "How many? Submit a number.", "answer": "137",
             "verifier": {"kind": "answer", "mode": "contains"}},
            {"id": "strict", "instruction": "How many? Submit a number.", "answer": "137",
             "verifier": {"kind": "answer", "mode": "numeric"}}]
    for row, code in ((rows[0], 1), (rows[1], 0)):
        path = tmp_path / f"{row['id']}.jsonl"
        path.write_text(json.dumps(row) + "\n")
        out = cli("audit", "hacks", "--tasks", str(path), "--hack", "answer-spray", "--json")
        assert out.returncode == code, out.stderr[-2000:]
        (result,) = json.loads(out.stdout)["results"]
        assert result["accepted"] is (code == 1) and result["target"] == row["id"]
