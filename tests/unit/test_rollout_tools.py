"""Tools: schemas, argument validation, edit_file's exact-replace errors, submit."""

from __future__ import annotations

import json

import pytest

from agentrm.errors import SandboxGone
from agentrm.rollout.tools import TOOL_SCHEMAS, call_error, clip, execute_tool_call
from agentrm.testing import DirSandbox
from agentrm.types import ToolCall


def call(name, args):
    raw = args if isinstance(args, str) else json.dumps(args)
    return ToolCall.from_message({"id": "c1", "function": {"name": name, "arguments": raw}})


@pytest.fixture
def sb(tmp_path):
    box = DirSandbox(tmp_path / "ws")
    box.write_file("/workspace/a.txt", "one\ntwo\ntwo\nthree\n")
    return box


def test_schemas_are_openai_functions():
    names = [s["function"]["name"] for s in TOOL_SCHEMAS]
    assert names == ["bash", "view_file", "edit_file", "submit"]
    for s in TOOL_SCHEMAS:
        assert s["type"] == "function"
        params = s["function"]["parameters"]
        assert set(params["required"]) <= set(params["properties"])


@pytest.mark.parametrize("name,args,expect", [
    ("bash", '{"command": "ls"', "bad JSON"),
    ("rm_rf", {"x": 1}, "unknown tool"),
    ("bash", {}, "missing argument(s) command"),
    ("bash", {"command": 3}, "must be a string"),
    ("view_file", {"path": "a", "start_line": True}, "must be a integer"),
    ("bash", {"command": "ls", "sudo": True}, "unexpected argument"),
    ("bash", "[1, 2]", "not an object"),
])
def test_malformed_calls_are_observations_not_crashes(sb, name, args, expect):
    c = call(name, args)
    assert expect in call_error(c)
    result = execute_tool_call(sb, c)
    assert result.content.startswith("Error:") and expect in result.content
    assert sb.commands == []  # nothing ran


def test_bash_reports_exit_code_and_events(sb):
    r = execute_tool_call(sb, call("bash", {"command": "echo hi; echo oops >&2; exit 3"}))
    assert r.exit_code == 3
    assert r.content.splitlines() == ["hi", "oops", "[exit code 3]"]
    assert r.output_events and r.duration_s is not None


def test_view_file_numbers_lines_and_ranges(sb):
    r = execute_tool_call(sb, call("view_file", {"path": "a.txt", "start_line": 2, "end_line": 3}))
    assert r.content == "2  two\n3  two"
    missing = execute_tool_call(sb, call("view_file", {"path": "/workspace/nope.txt"}))
    assert missing.exit_code == 1 and "cannot read /workspace/nope.txt" in missing.content


def test_edit_file_exact_replace_and_clear_errors(sb):
    ok = execute_tool_call(sb, call("edit_file", {"path": "a.txt", "old_str": "three", "new_str": "3"}))
    assert ok.exit_code == 0 and "line 4" in ok.content
    assert sb.read_file("/workspace/a.txt") == b"one\ntwo\ntwo\n3\n"
    twice = execute_tool_call(sb, call("edit_file", {"path": "a.txt", "old_str": "two", "new_str": "2"}))
    assert "occurs 2 times" in twice.content and twice.exit_code == 1
    absent = execute_tool_call(sb, call("edit_file", {"path": "a.txt", "old_str": "four", "new_str": "4"}))
    assert "not found" in absent.content
    empty = execute_tool_call(sb, call("edit_file", {"path": "a.txt", "old_str": "", "new_str": "x"}))
    assert "empty" in empty.content
    assert sb.read_file("/workspace/a.txt") == b"one\ntwo\ntwo\n3\n"  # failed edits change nothing


def test_submit_answer_or_git_diff(sb):
    assert execute_tool_call(sb, call("submit", {"answer": " 42 "})).content == " 42 "
    sb.exec("cd /workspace && git init -q && git add -A && git -c user.email=a@b.c -c user.name=a "
            "commit -qm x && echo four >> a.txt")
    patch = execute_tool_call(sb, call("submit", {}))
    assert patch.exit_code == 0 and "+four" in patch.content and "a/a.txt" in patch.content


def test_sandbox_gone_propagates(tmp_path):
    box = DirSandbox(tmp_path, die_after=1)
    with pytest.raises(SandboxGone):
        execute_tool_call(box, call("bash", {"command": "true"}))


def test_clip_keeps_head_and_tail():
    text = "A" * 100 + "B" * 100
    out, clipped = clip(text, 50)
    assert clipped and out.startswith("A" * 25) and out.endswith("B" * 25) and "150 characters" in out
    assert clip("short", 50) == ("short", False)
