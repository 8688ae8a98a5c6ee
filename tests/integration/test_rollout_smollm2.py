"""The embedded default model (SmolLM2-135M-Instruct) drives a few turns of a bundled task in
Docker: the README's main job, with no endpoint."""

from __future__ import annotations

import pytest

from agentrm.rollout.loop import Limits
from agentrm.rollout.run import RunOptions, run
from agentrm.tasks import bundled_tasks
from agentrm.traces import open_store
from agentrm.types import ExitStatus

pytestmark = [pytest.mark.slow, pytest.mark.model, pytest.mark.docker]


def test_smollm2_runs_a_bundled_task(docker_client, tmp_path):
    store = open_store(f"sqlite:///{tmp_path}/t.db")
    task = next(t for t in bundled_tasks() if t.id == "count-lines")
    # Few, short turns: a 135M model on a shared 2-core CPU writes ~10 tokens/s with this prompt.
    summary = run([task], "transformers:smollm2?max_new_tokens=48&temperature=0.7&seed=0",
                  store, run_id="smol", options=RunOptions(limits=Limits(max_turns=3)))
    trajs = list(store.iter_trajectories(run_id="smol"))
    assert len(trajs) == 1 and len(summary.trajectories) == 1
    for t in trajs:
        assert t.exit_status in {ExitStatus.SUBMITTED, ExitStatus.TURN_LIMIT, ExitStatus.FORMAT_ERROR}, t.metadata
        assert t.reward in (0.0, 1.0)
        assert t.turns and all(turn.completion_tokens == len(turn.logprobs) > 0 for turn in t.turns)
        assert t.turns[0].prompt_tokens > 500  # the tool list is in the prompt
    print({t.id: (t.exit_status.value, [turn.assistant for turn in t.turns]) for t in trajs})
