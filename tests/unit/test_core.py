"""Core nouns and hashes: the contracts every stage relies on."""

from __future__ import annotations

import json

from agentrm.hashing import anchor_key, normalise_observation_text, stable_hash
from agentrm.types import ExitStatus, FailureKind, ToolCall, Trajectory, Turn


def test_stable_hash_ignores_key_order_and_is_sha256_prefix():
    import hashlib

    a = stable_hash({"b": 1, "a": [1, 2]})
    assert a == stable_hash({"a": [1, 2], "b": 1})
    expected = hashlib.sha256(b'{"a":[1,2],"b":1}').hexdigest()[:16]
    assert a == expected


def test_anchor_key_ignores_volatile_output_but_not_content():
    obs1 = [{"role": "tool", "tool_call_id": "call_1", "content": "built at 2026-11-21 10:00:01 in 3.2s\nok"}]
    obs2 = [{"role": "tool", "tool_call_id": "call_9", "content": "built at 2026-11-22 11:59:59 in 0.4s\nok"}]
    obs3 = [{"role": "tool", "tool_call_id": "call_1", "content": "built at 2026-11-21 10:00:01 in 3.2s\nFAIL"}]
    assert anchor_key(obs1) == anchor_key(obs2)
    assert anchor_key(obs1) != anchor_key(obs3)


def test_normalise_observation_text_replaces_tmp_paths_and_hex():
    text = "wrote /tmp/tmpab12_x/out.txt commit 3f2a9c1d0e4b5a6f"
    assert normalise_observation_text(text) == "wrote <TMP> commit <HEX>"


def test_tool_call_parsing_marks_bad_json_invalid():
    good = ToolCall.from_message({"id": "c", "function": {"name": "bash", "arguments": '{"cmd": "ls"}'}})
    assert good.valid and good.arguments == {"cmd": "ls"}
    bad = ToolCall.from_message({"id": "c", "function": {"name": "bash", "arguments": '{"cmd": '}})
    assert not bad.valid and "bad JSON" in bad.error
    not_object = ToolCall.from_message({"id": "c", "function": {"name": "bash", "arguments": "[1]"}})
    assert not not_object.valid
    as_dict = ToolCall.from_message({"id": "c", "function": {"name": "bash", "arguments": {"cmd": "ls"}}})
    assert as_dict.valid and json.loads(as_dict.raw_arguments) == {"cmd": "ls"}


def test_trajectory_messages_rebuild_the_conversation_in_order():
    sys_msg = {"role": "system", "content": "s"}
    user = {"role": "user", "content": "u"}
    a1 = {"role": "assistant", "content": None, "tool_calls": [
        {"id": "1", "type": "function", "function": {"name": "bash", "arguments": "{}"}}]}
    t1 = {"role": "tool", "tool_call_id": "1", "content": "out"}
    a2 = {"role": "assistant", "content": "done"}
    traj = Trajectory("t", "task", "g", turns=[Turn(0, [sys_msg, user], a1), Turn(1, [t1], a2)])
    assert traj.messages() == [sys_msg, user, a1, t1, a2]


def test_failure_kind_separates_model_from_infrastructure():
    assert ExitStatus.SANDBOX_ERROR.failure_kind is FailureKind.INFRASTRUCTURE
    assert ExitStatus.CRASHED.failure_kind is FailureKind.INFRASTRUCTURE
    assert ExitStatus.FORMAT_ERROR.failure_kind is FailureKind.MODEL
    assert ExitStatus.SUBMITTED.failure_kind is None


def test_arguments_valid_agrees_with_from_message():
    """Import checks validity without building calls; it must judge exactly as from_message."""
    for raw in ['{"cmd": "ls"}', '{"cmd": ', "[1]", "", "null", '"s"', "{}", {"cmd": "ls"}, {},
                "NaN", '{"a": NaN}', "  {\"a\": 1}  ", "{\"a\": 1} x", "\ud800"]:
        call = {"id": "c", "function": {"name": "bash", "arguments": raw}}
        assert ToolCall.arguments_valid(raw) == ToolCall.from_message(call).valid, raw
