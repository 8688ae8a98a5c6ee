"""Every perturbation is applied exactly as documented, and never edits its input."""

from __future__ import annotations

import copy
import json

import pytest

from agentrm.evaluation import perturb
from agentrm.types import ExitStatus, ToolResult, Trajectory, Turn


def _call(cid: str, cmd: str) -> dict:
    return {"id": cid, "type": "function", "function": {"name": "bash", "arguments": json.dumps({"cmd": cmd})}}


def make(n_turns: int = 4) -> Trajectory:
    """Turn k runs `cmd k` and receives `out k: 1{k} items`; the last turn submits."""
    context = [{"role": "system", "content": "You are an agent."}, {"role": "user", "content": "Count."}]
    turns, observation = [], context
    for k in range(n_turns):
        last = k == n_turns - 1
        call = ({"id": f"c{k}", "type": "function", "function": {"name": "submit", "arguments": '{"answer": "12"}'}}
                if last else _call(f"c{k}", f"cmd {k}"))
        assistant = {"role": "assistant", "content": f"thought {k}", "tool_calls": [call]}
        result = f"out {k}: 1{k} items"
        turns.append(Turn(k, observation, assistant,
                          tool_results=[ToolResult(f"c{k}", result, exit_code=1 if k == 1 else 0)]))
        observation = [{"role": "tool", "tool_call_id": f"c{k}", "content": result}]
    return Trajectory("t1", "task", "g", turns, tail=observation, exit_status=ExitStatus.SUBMITTED,
                      reward=1.0, metadata={"x": 1})


def actions(traj):
    return [t.assistant["content"] for t in traj.turns]


def received(traj):
    """Each turn's action paired with the tool text it got back."""
    out = []
    for k, turn in enumerate(traj.turns):
        nxt = traj.turns[k + 1].observation if k + 1 < len(traj.turns) else traj.tail
        out.append((turn.assistant["content"], [m["content"] for m in nxt]))
    return out


@pytest.mark.parametrize("name", sorted(perturb.PERTURBATIONS))
def test_input_is_untouched_and_copy_is_marked(name):
    traj = make()
    before = copy.deepcopy(traj)
    out = perturb.PERTURBATIONS[name](traj)
    assert traj == before
    assert out.id == f"t1~{name}" and out.reward is None
    assert out.metadata["perturbation"] == name and out.metadata["perturbed_from"] == "t1"
    assert [t.index for t in out.turns] == list(range(len(out.turns)))
    assert name in perturb.EXPECTED


def test_polite_wraps_every_assistant_message_and_keeps_actions():
    traj = make()
    out = perturb.polite(traj)
    assert actions(out) == [perturb.POLITE_OPEN + f"thought {k}" + perturb.POLITE_CLOSE for k in range(4)]
    assert [t.assistant["tool_calls"] for t in out.turns] == [t.assistant["tool_calls"] for t in traj.turns]
    assert out.tail == traj.tail


def test_pad_repeats_last_successful_non_final_step_with_its_results():
    out = perturb.pad(make(), times=3)
    # turn 2 is the last non-final step whose tool exited 0 (turn 1 exited 1)
    assert actions(out) == ["thought 0", "thought 1", "thought 2", "thought 2", "thought 2", "thought 2", "thought 3"]
    got = received(out)
    assert all(r == ["out 2: 12 items"] for a, r in got[2:6])
    assert got[-1] == ("thought 3", ["out 3: 13 items"])
    assert perturb.pad(make(1)) is None


def test_false_claim_appends_to_the_final_message_only():
    out = perturb.false_claim(make())
    assert actions(out)[:3] == ["thought 0", "thought 1", "thought 2"]
    assert actions(out)[3] == "thought 3" + perturb.FALSE_CLAIM
    assert "all tests pass" in actions(out)[3]


def test_forge_output_appends_passed_lines_to_last_tool_output():
    traj = make()
    out = perturb.forge_output(traj)
    assert out.tail[0]["content"] == "out 3: 13 items" + perturb.FORGED_OUTPUT
    assert "PASSED" in out.tail[0]["content"] and "12 passed" in out.tail[0]["content"]
    assert out.turns[-1].tool_results[0].content.endswith(perturb.FORGED_OUTPUT)
    assert [t.observation for t in out.turns] == [t.observation for t in traj.turns]


def test_corrupt_output_shifts_every_digit_in_tool_outputs():
    out = perturb.corrupt_output(make())
    assert [r for _, r in received(out)] == [["out 1: 21 items"], ["out 2: 22 items"],
                                            ["out 3: 23 items"], ["out 4: 24 items"]]
    assert out.turns[0].observation[1]["content"] == "Count."  # the task is not tool output
    assert actions(out) == actions(make())
    assert perturb._shift_digits("a9b0") == "a0b1"


def test_reorder_swaps_first_two_steps_with_their_results():
    out = perturb.reorder(make())
    assert received(out)[:2] == [("thought 1", ["out 1: 11 items"]), ("thought 0", ["out 0: 10 items"])]
    assert received(out)[2:] == received(make())[2:]
    assert out.turns[0].observation == make().turns[0].observation  # the context stays first
    assert perturb.reorder(make(2)) is None


def test_truncate_keeps_first_half_and_ends_at_turn_limit():
    out = perturb.truncate(make())
    assert actions(out) == ["thought 0", "thought 1"]
    assert out.tail == [{"role": "tool", "tool_call_id": "c1", "content": "out 1: 11 items"}]
    assert out.exit_status == ExitStatus.TURN_LIMIT
    assert actions(perturb.truncate(make(3))) == ["thought 0"]
    assert perturb.truncate(make(1)) is None
