"""Text tool-call parsing, prompt rendering for tool-less templates, policy specs, scripts."""

from __future__ import annotations

import json

import pytest

from agentrm.errors import InputError
from agentrm.rollout.policies import ModelError, ScriptedPolicy, make_policy, parse_spec
from agentrm.rollout.policies.parsing import (
    assistant_message,
    parse_tool_calls,
    render_call,
    to_text_messages,
)
from agentrm.rollout.tools import TOOL_SCHEMAS
from agentrm.types import ToolCall


def calls_of(text):
    return [ToolCall.from_message(c) for c in parse_tool_calls(text)[1]]


def test_tagged_calls_with_thoughts():
    text = 'Let me look.\n<tool_call>{"name": "bash", "arguments": {"command": "ls -la"}}</tool_call>'
    content, raw = parse_tool_calls(text)
    assert content == "Let me look."
    (c,) = calls_of(text)
    assert (c.name, c.arguments, c.valid) == ("bash", {"command": "ls -la"}, True)


def test_several_and_unclosed_tags():
    text = ('<tool_call>{"name": "bash", "arguments": {"command": "a"}}</tool_call>'
            '<tool_call>{"name": "submit", "parameters": {"answer": "7"}}')
    assert [(c.name, c.arguments) for c in calls_of(text)] == [
        ("bash", {"command": "a"}), ("submit", {"answer": "7"})]


def test_list_of_calls_in_one_tag():
    text = '<tool_call>[{"name": "bash", "arguments": {"command": "ls"}}, {"name": "submit", "arguments": {}}]</tool_call>'
    assert [c.name for c in calls_of(text)] == ["bash", "submit"]


def test_bad_json_in_tag_is_an_invalid_call_with_name_hint():
    (c,) = calls_of('<tool_call>{"name": "bash", "arguments": {"command": "ls"</tool_call>')
    assert not c.valid and c.name == "bash"
    assert "bad JSON" in c.error


def test_bare_and_fenced_json_objects():
    (c,) = calls_of('{"name": "view_file", "arguments": {"path": "x"}}')
    assert c.arguments == {"path": "x"}
    content, raw = parse_tool_calls('Sure:\n```json\n{"name": "submit", "arguments": {}}\n```')
    assert content == "Sure:" and raw[0]["function"]["name"] == "submit"


@pytest.mark.parametrize("text", ["just prose", "{not json", '{"no": "name"}', ""])
def test_no_call_found(text):
    content, calls = parse_tool_calls(text)
    assert calls == [] and content == text.strip()


def test_round_trip_render_then_parse():
    msg = assistant_message('<tool_call>{"name": "edit_file", "arguments": {"path": "a", "old_str": "x", "new_str": "y"}}</tool_call>')
    again = calls_of(render_call(msg["tool_calls"][0]))
    assert again[0].arguments == {"path": "a", "old_str": "x", "new_str": "y"}


def test_text_messages_put_tools_in_system_and_results_in_user_turns():
    msgs = [{"role": "system", "content": "sys"}, {"role": "user", "content": "task"},
            assistant_message('<tool_call>{"name": "bash", "arguments": {"command": "ls"}}</tool_call>'),
            {"role": "tool", "tool_call_id": "x", "content": "a.txt"}]
    out = to_text_messages(msgs, TOOL_SCHEMAS)
    assert [m["role"] for m in out] == ["system", "user", "assistant", "user"]
    assert out[0]["content"].startswith("sys") and '"name": "edit_file"' in out[0]["content"]
    assert "<tool_call>" in out[2]["content"] and "<tool_response>\na.txt" in out[3]["content"]
    assert all(set(m) == {"role", "content"} for m in out)


def test_tool_instructions_show_the_call_shape_without_a_worked_call():
    """The system prompt's call format names no tool and no arguments a model could copy (a
    small model otherwise repeats the example instead of choosing a tool)."""
    system = to_text_messages([{"role": "user", "content": "task"}], TOOL_SCHEMAS)[0]["content"]
    tools_block, after = system.split("</tools>")
    (shape,) = [line for line in after.splitlines() if "<tool_call>" in line]
    assert all(f'"{t["function"]["name"]}"' not in shape for t in TOOL_SCHEMAS)
    assert calls_of(shape) == [] or not calls_of(shape)[0].valid
    assert all(f'"name": "{t["function"]["name"]}"' in tools_block for t in TOOL_SCHEMAS)


def test_parse_spec_and_bad_specs(tmp_path):
    assert parse_spec("transformers:smollm2?temperature=0.2&max_new_tokens=8&seed=none") == (
        "transformers", "smollm2", {"temperature": 0.2, "max_new_tokens": 8, "seed": None})
    assert parse_spec("openai:http://127.0.0.1:8000/v1#tiny")[1] == "http://127.0.0.1:8000/v1#tiny"
    for bad in ["gpt4", "nope:x", "openai:localhost:8000"]:
        with pytest.raises(InputError):
            make_policy(bad)
    with pytest.raises(InputError, match="no such action file"):
        make_policy(f"scripted:{tmp_path}/missing.jsonl")
    with pytest.raises(InputError, match="unexpected keyword"):
        make_policy("transformers:x?bogus=1")


def test_scripted_policy_formats_and_stateless_cursor(tmp_path):
    path = tmp_path / "acts.jsonl"
    path.write_text("\n".join(json.dumps(a) for a in [
        {"tool": "bash", "args": {"command": "ls"}},
        "<tool_call>{bad</tool_call>",
        {"content": "done", "tool_calls": [{"id": "z", "type": "function",
                                            "function": {"name": "submit", "arguments": "{}"}}]},
    ]))
    policy = make_policy(f"scripted:{path}")
    first = policy.act([{"role": "user", "content": "t"}], TOOL_SCHEMAS).message
    assert first["tool_calls"][0]["function"]["name"] == "bash"
    history = [{"role": "user", "content": "t"}, first, {"role": "tool", "content": "x"}]
    second = policy.act(history, TOOL_SCHEMAS).message
    assert not ToolCall.from_message(second["tool_calls"][0]).valid
    third = policy.act(history + [second], TOOL_SCHEMAS).message  # two assistants so far
    assert third["content"] == "done"
    with pytest.raises(ModelError, match="exhausted"):
        policy.act([first, first, first], TOOL_SCHEMAS)


def test_scripted_replays_a_trajectory_record(tmp_path):
    rec = {"id": "t", "messages": [
        {"role": "user", "content": "q"},
        {"role": "assistant", "content": "", "tool_calls": [
            {"id": "a", "type": "function", "function": {"name": "submit", "arguments": '{"answer": "1"}'}}]}]}
    path = tmp_path / "traj.jsonl"
    path.write_text(json.dumps(rec) + "\n")
    policy = ScriptedPolicy.from_file(path)
    assert policy.act([], TOOL_SCHEMAS).message["tool_calls"][0]["id"] == "a"


def test_bad_action_file_names_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"tool": "bash", "args": {}}\n{oops\n')
    with pytest.raises(InputError, match=r"bad.jsonl:2"):
        ScriptedPolicy.from_file(path)
    path.write_text('{"x": 1}\n')
    with pytest.raises(InputError, match="needs `tool`"):
        ScriptedPolicy.from_file(path)
