"""ATIF both ways through a real SQLite store: a file imported and exported again is the same
document (step rewards, metrics, token ids, timestamps, extras, system-step observations), its
step rewards are `atif` scores in the store, a rescored step exports its new value, and a
trajectory agentrm recorded itself survives export → import with its sampled ids."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agentrm.traces import open_store
from agentrm.traces.formats import ATIF_SCORER, read_atif, write_atif
from agentrm.traces.io import read_trajectories
from agentrm.types import (
    ExitStatus,
    Score,
    ScoreLevel,
    TokenTrace,
    Trajectory,
    Turn,
    full_prompts,
    token_hash,
)

DATA = Path(__file__).parents[1] / "data" / "traces"
FILES = ["sample.atif.json", "rich.atif.json", "sparse.atif.json"]


def _through_store(tmp_path, path: Path):
    store = open_store(f"sqlite:///{tmp_path / 'atif.db'}")
    store.import_trajectories(read_trajectories(path), run_id="atif")
    [traj] = list(store.iter_trajectories(run_id="atif"))
    return store, traj


@pytest.mark.parametrize("name", FILES)
def test_import_then_export_gives_the_same_document(tmp_path, name):
    original = json.loads((DATA / name).read_text())
    store, traj = _through_store(tmp_path, DATA / name)
    exported = write_atif(traj, store.get_scores([traj.id]))
    assert exported == original
    assert json.loads(json.dumps(exported)) == original  # plain JSON, nothing agentrm-only in it


def test_step_rewards_are_scores_and_a_rescored_step_exports_its_new_value(tmp_path):
    store, traj = _through_store(tmp_path, DATA / "rich.atif.json")
    got = {s.turn_index: s.value for s in store.get_scores([traj.id], scorer=ATIF_SCORER)}
    # steps 3, 4 and 7 are the agent's turns 0, 1, 2; step 4 keeps its reward in the step's extra
    assert got == {0: 0.25, 1: -0.5, 2: 1.0}
    assert traj.reward == 0.5 and traj.task_id == "weather-lookup"
    store.write_scores([Score(scorer=ATIF_SCORER, trajectory_id=traj.id, value=0.75,
                              level=ScoreLevel.TURN, turn_index=1)])
    steps = write_atif(traj, store.get_scores([traj.id]))["steps"]
    assert steps[3]["extra"] == {"reward": 0.75, "judge": "too terse"}
    assert steps[2]["metrics"]["extra"] == {"reward": 0.25, "reasoning_tokens": 3}


def test_token_ids_become_the_turns_sampled_ids(tmp_path):
    _, traj = _through_store(tmp_path, DATA / "rich.atif.json")
    last = traj.turns[-1]
    doc = json.loads((DATA / "rich.atif.json").read_text())
    metrics = doc["steps"][6]["metrics"]
    assert last.tokens.completion_ids == metrics["completion_token_ids"]
    assert full_prompts(traj.turns)[-1] == metrics["prompt_token_ids"]
    assert last.logprobs == metrics["logprobs"]


def test_a_recorded_trajectory_exports_and_reads_back_with_its_ids(tmp_path):
    prompt0, prompt1 = [1, 5, 6, 2, 1], [1, 5, 6, 2, 1, 9, 9, 2, 1, 7, 2, 1]
    turns = [
        Turn(index=0, observation=[{"role": "system", "content": "sys"}, {"role": "user", "content": "count"}],
             assistant={"role": "assistant", "content": "",
                        "tool_calls": [{"id": "c1", "type": "function",
                                        "function": {"name": "bash", "arguments": '{"command": "wc -l f"}'}}]},
             prompt_tokens=5, completion_tokens=2, logprobs=[-0.5, -0.25], started_at=1767225600.0,
             tokens=TokenTrace(prompt_ids=prompt0, completion_ids=[9, 9], prompt_hash=token_hash(prompt0))),
        Turn(index=1, observation=[{"role": "tool", "tool_call_id": "c1", "content": "3 f"}],
             assistant={"role": "assistant", "content": "3"}, prompt_tokens=12, completion_tokens=2,
             logprobs=[-0.125, -1.0], started_at=1767225601.5,
             tokens=TokenTrace(prompt_ids=prompt1[5:], completion_ids=[3, 2], prefix_len=5,
                               prompt_hash=token_hash(prompt1))),
    ]
    native = Trajectory(id="run-1/count/0", task_id="count", group_id="count", turns=turns,
                        exit_status=ExitStatus.SUBMITTED, reward=1.0, policy="tiny")
    doc = write_atif(native, [Score(scorer=ATIF_SCORER, trajectory_id=native.id, value=0.5,
                                    level=ScoreLevel.TURN, turn_index=1)])
    assert [s["source"] for s in doc["steps"]] == ["system", "user", "agent", "agent"]
    assert doc["steps"][2]["tool_calls"][0]["arguments"] == {"command": "wc -l f"}
    assert doc["steps"][2]["observation"]["results"] == [{"source_call_id": "c1", "content": "3 f"}]
    assert doc["steps"][3]["metrics"]["prompt_token_ids"] == prompt1
    assert doc["steps"][3]["timestamp"] == "2026-01-01T00:00:01.500000Z"
    path = tmp_path / "native.atif.json"
    path.write_text(json.dumps(doc))
    store, back = _through_store(tmp_path, path)
    assert [t.assistant for t in back.turns] == [t.assistant for t in turns]
    assert [t.observation for t in back.turns] == [t.observation for t in turns]
    assert full_prompts(back.turns) == [prompt0, prompt1]
    assert [t.tokens.completion_ids for t in back.turns] == [[9, 9], [3, 2]]
    assert [t.logprobs for t in back.turns] == [[-0.5, -0.25], [-0.125, -1.0]]
    assert [t.started_at for t in back.turns] == [1767225600.0, 1767225601.5]
    assert back.reward == 1.0 and back.task_id == "count"
    assert [(s.turn_index, s.value) for s in store.get_scores([back.id], scorer=ATIF_SCORER)] == [(1, 0.5)]


def test_the_reader_alone_keeps_what_it_kept_before():
    [t] = list(read_atif(DATA / "sample.atif.json"))
    assert t.metadata["format"] == "ATIF-v1.4" and t.metadata["agent"]["name"] == "terminus"
    assert (t.turns[0].prompt_tokens, t.turns[0].logprobs) == (120, [-0.1, -0.5, -0.02])


@pytest.mark.postgres
def test_round_trip_on_postgresql(fresh_postgres_url):
    original = json.loads((DATA / "rich.atif.json").read_text())
    store = open_store(fresh_postgres_url)
    try:
        store.import_trajectories(read_trajectories(DATA / "rich.atif.json"), run_id="atif-pg")
        [traj] = list(store.iter_trajectories(run_id="atif-pg"))
        assert write_atif(traj, store.get_scores([traj.id])) == original
        assert len(store.get_scores([traj.id], scorer=ATIF_SCORER)) == 3
    finally:
        store.close()
