"""Interchange formats: turn splitting, validation, canonical JSONL, ATIF and SWE-agent mapping."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agentrm.errors import InputError
from agentrm.hashing import anchor_key
from agentrm.traces.io import (
    dumps_record,
    read_trajectories,
    record_from_trajectory,
    trajectory_from_record,
    write_jsonl,
)
from agentrm.types import ExitStatus

DATA = Path(__file__).resolve().parents[1] / "data" / "traces"


def _call(i, args='{"command": "ls"}'):
    return {"id": i, "type": "function", "function": {"name": "bash", "arguments": args}}


def test_each_assistant_message_is_a_turn_acting_on_the_messages_since_the_last():
    msgs = [{"role": "system", "content": "s"}, {"role": "user", "content": "u"},
            {"role": "assistant", "content": None, "tool_calls": [_call("a"), _call("b")]},
            {"role": "tool", "tool_call_id": "a", "content": "A"},
            {"role": "tool", "tool_call_id": "b", "content": "B"},
            {"role": "assistant", "content": "x", "tool_calls": [_call("c", '{"command": ')]},
            {"role": "tool", "tool_call_id": "c", "content": "bad args"}]
    t = trajectory_from_record({"id": "t", "task_id": "k", "messages": msgs})
    assert [turn.observation for turn in t.turns] == [msgs[0:2], msgs[3:5]]
    assert [turn.assistant for turn in t.turns] == [msgs[2], msgs[5]]
    assert t.tail == msgs[6:]
    assert [turn.anchor_key for turn in t.turns] == [anchor_key(msgs[0:2]), anchor_key(msgs[3:5])]
    assert [r.call_id for r in t.turns[0].tool_results] == ["a", "b"]
    assert [r.content for r in t.turns[1].tool_results] == ["bad args"]
    assert [turn.valid for turn in t.turns] == [True, False]  # malformed arguments = invalid action
    assert t.group_id == "k" and t.exit_status is ExitStatus.IMPORTED and t.messages() == msgs


def test_record_keys_and_canonical_line():
    t = trajectory_from_record({"id": "t", "task_id": "k", "group_id": "g", "reward": 1,
                                "messages": [{"role": "user", "content": "é"}], "metadata": {"a": 1}})
    rec = record_from_trajectory(t)
    assert list(rec) == ["id", "task_id", "group_id", "messages", "reward", "answer", "metadata",
                         "exit_status", "policy"]
    assert dumps_record(rec) == ('{"id":"t","task_id":"k","group_id":"g","messages":[{"role":"user",'
                                 '"content":"é"}],"reward":1.0,"answer":null,"metadata":{"a":1},'
                                 '"exit_status":"imported","policy":null}')


def test_lone_surrogates_fall_back_to_ascii_escapes(tmp_path):
    t = trajectory_from_record({"id": "t", "task_id": "k", "messages": [{"role": "user", "content": "x\ud800é"}]})
    path = tmp_path / "s.jsonl"
    write_jsonl([t], path)
    assert "\\ud800" in path.read_text("ascii")
    again = list(read_trajectories(path))
    assert again[0].messages() == t.messages()


_text = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=20)
_plain = st.fixed_dictionaries({"role": st.sampled_from(["system", "user", "developer"]), "content": _text})


@st.composite
def conversations(draw):
    msgs = draw(st.lists(_plain, max_size=3))
    for k in range(draw(st.integers(0, 4))):
        n_calls = draw(st.integers(0, 2))
        calls = [_call(f"c{k}_{j}", draw(st.sampled_from(['{"a": 1}', "{bad", "[]"]))) for j in range(n_calls)]
        msg = {"role": "assistant", "content": draw(st.one_of(st.none(), _text))}
        if calls:
            msg["tool_calls"] = calls
        msgs.append(msg)
        msgs += [{"role": "tool", "tool_call_id": c["id"], "content": draw(_text)} for c in calls]
        msgs += draw(st.lists(_plain, max_size=1))
    return msgs


@settings(max_examples=60, deadline=None)
@given(msgs=conversations(), reward=st.one_of(st.none(), st.floats(-5, 5)),
       meta=st.dictionaries(st.text(max_size=5), st.integers(), max_size=3))
def test_record_round_trip_is_identity(msgs, reward, meta):
    rec = {"id": "t", "task_id": "k", "group_id": "g", "messages": msgs, "reward": reward,
           "answer": None, "metadata": meta, "exit_status": "imported", "policy": None}
    t = trajectory_from_record(json.loads(json.dumps(rec)))
    assert len(t.turns) == sum(m["role"] == "assistant" for m in msgs)
    assert record_from_trajectory(t) == rec
    line = dumps_record(rec)
    assert dumps_record(record_from_trajectory(trajectory_from_record(json.loads(line)))) == line


def test_write_jsonl_to_a_stream():
    buf = io.StringIO()
    ts = list(read_trajectories(DATA / "good.jsonl"))
    assert write_jsonl(ts, buf) == 3 and buf.getvalue().count("\n") == 3


def test_atif_mapping():
    [t] = list(read_trajectories(DATA / "sample.atif.json"))
    assert (t.id, t.task_id, t.reward, t.policy) == ("atif-traj-7", "hello-file", 1.0, "smollm2")
    assert len(t.turns) == 3 and t.tail == []
    first = t.turns[0]
    assert [m["role"] for m in first.observation] == ["system", "user"]
    assert first.assistant["tool_calls"][0]["function"] == {"name": "bash", "arguments": '{"command": "echo hi > hello.txt"}'}
    assert first.assistant["reasoning_content"] == "echo is enough"
    assert (first.prompt_tokens, first.completion_tokens, first.logprobs) == (120, 18, [-0.1, -0.5, -0.02])
    assert t.turns[1].observation == [{"role": "tool", "tool_call_id": "tc-1", "content": ""}]
    assert t.turns[1].tool_results[0].content == "hi\n"  # the result attached to step 4's call
    assert t.metadata["format"] == "ATIF-v1.4"


def test_swe_agent_mapping():
    [t] = list(read_trajectories(DATA / "demo__repo-1.traj"))
    assert t.id == "demo__repo-1" and t.exit_status is ExitStatus.SUBMITTED
    assert [turn.duration_s for turn in t.turns] == [0.42, 1.5]
    assert t.turns[0].metadata == {"thought": "Let me find the file.", "action": "find_file utils.py"}
    assert set(t.turns[0].assistant) == {"role", "content"}  # SWE-agent bookkeeping keys dropped
    assert t.tail[0]["content"].startswith("diff --git") and t.metadata["submission"]


def test_swe_agent_without_history_is_rebuilt_from_steps(tmp_path):
    doc = json.loads((DATA / "demo__repo-1.traj").read_text())
    doc["history"] = []
    doc["trajectory"][0]["query"] = [{"role": "user", "content": "fix it"}]
    path = tmp_path / "x.traj"
    path.write_text(json.dumps(doc))
    [t] = list(read_trajectories(path))
    assert [m["role"] for m in t.messages()] == ["user", "assistant", "user", "assistant", "user"]


def test_mini_swe_agent_mapping():
    [t] = list(read_trajectories(DATA / "demo__repo-2.traj.json"))
    assert t.id == "demo__repo-2" and len(t.turns) == 2 and t.exit_status is ExitStatus.SUBMITTED
    assert all(m["role"] != "exit" for m in t.messages())


def test_unknown_format_option():
    with pytest.raises(InputError, match="unknown trace format"):
        read_trajectories(DATA / "good.jsonl", fmt="csv")
