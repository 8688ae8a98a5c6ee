"""Task files: loading, validation errors naming path:line, the bundled suite, answer checks."""

from __future__ import annotations

import json

import pytest

from agentrm.errors import InputError
from agentrm.tasks import bundled_tasks, load_tasks
from agentrm.tasks.check import answer_matches, outcome_reward
from agentrm.types import ExitStatus, Task


def test_bundled_suite_is_small_varied_and_checkable():
    tasks = bundled_tasks()
    assert 6 <= len(tasks) <= 12 and len({t.id for t in tasks}) == len(tasks)
    categories = {t.metadata["category"] for t in tasks}
    assert {"find", "count", "fix", "compute"} <= categories
    for t in tasks:
        assert t.setup and (t.answer is not None or t.verifier.get("kind") == "command")
    assert load_tasks("builtin") == tasks


def test_jsonl_and_yaml_load_the_same(tmp_path):
    rows = [{"id": "a", "instruction": "do a", "answer": 1, "setup": "touch x"},
            {"id": "b", "instruction": "do b", "verifier": {"kind": "command", "command": "true"}}]
    jl = tmp_path / "t.jsonl"
    jl.write_text("# comment\n" + "\n".join(json.dumps(r) for r in rows) + "\n")
    import yaml
    yl = tmp_path / "t.yaml"
    yl.write_text(yaml.safe_dump(rows))
    a, b = load_tasks(jl), load_tasks(yl)
    assert a == b and a[0].answer == "1" and a[0].setup == ["touch x"]


@pytest.mark.parametrize("rows,match", [
    (['{"id": "a", "instruction": "x"}', '{"id": "a", "instruction": "y"}'], r"t.jsonl:2: duplicate task id"),
    (['{"id": "a"}'], r"t.jsonl:1: task needs a non-empty string `instruction`"),
    (['{"id": "a", "instruction": "x", "prompt": 1}'], r"t.jsonl:1: unknown task field\(s\) prompt"),
    (['{"id": "a", "instruction": "x", "setup": [1]}'], r"`setup` must be"),
    (['{"id": "a", "instruction": "x", "verifier": {"kind": "magic"}}'], r"verifier kind 'magic'"),
    (['{"id": "a", "instruction": "x", "verifier": {"mode": "numeric"}}'], r"needs `answer`"),
    (['', '[1,'], r"t.jsonl:2: not JSON"),
])
def test_bad_rows_name_file_and_line(tmp_path, rows, match):
    path = tmp_path / "t.jsonl"
    path.write_text("\n".join(rows))
    with pytest.raises(InputError, match=match):
        load_tasks(path)


def test_yaml_errors_carry_lines(tmp_path):
    path = tmp_path / "t.yaml"
    path.write_text("tasks:\n  - id: a\n    instruction: x\n  - id: b\n")
    with pytest.raises(InputError, match=r"t.yaml:4: task needs"):
        load_tasks(path)
    path.write_text("tasks: [\n")
    with pytest.raises(InputError, match=r"t.yaml:\d+: not valid YAML"):
        load_tasks(path)
    with pytest.raises(InputError, match="no such task file"):
        load_tasks(tmp_path / "missing.yaml")


@pytest.mark.parametrize("got,want,mode,ok", [
    ("137", "137", "numeric", True), ("The answer is 137.", "137", "numeric", True),
    ("1,000", "1000", "numeric", True), ("136", "137", "numeric", False), ("none", "1", "numeric", False),
    ("`delta.bin`", "delta.bin", "exact", True), ("delta", "delta.bin", "exact", False),
    ("./project/a.txt", "project/a.txt", "path", True), ("a.txt", "project/a.txt", "path", False),
    ("it is NEEDLE here", "needle", "contains", True), ("v1.2", r"v\d\.\d", "regex", True),
])
def test_answer_modes(got, want, mode, ok):
    assert answer_matches(got, want, mode) is ok


def test_outcome_reward_never_zero_for_infrastructure():
    task = Task(id="t", instruction="x", answer="1")
    for status in (ExitStatus.SANDBOX_ERROR, ExitStatus.MODEL_ERROR, ExitStatus.CRASHED):
        assert outcome_reward(task, status, "1")[0] is None
    for status in (ExitStatus.TURN_LIMIT, ExitStatus.FORMAT_ERROR, ExitStatus.TIME_LIMIT):
        assert outcome_reward(task, status, None)[0] == 0.0
    assert outcome_reward(task, ExitStatus.SUBMITTED, "1")[0] == 1.0
    assert outcome_reward(Task(id="u", instruction="x"), ExitStatus.SUBMITTED, "1") == (None, {})
