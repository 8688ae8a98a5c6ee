"""The generative-judge PRM on the embedded SmolLM2-135M-Instruct (a real model, no weights
from a hub): one packed pass gives what per-step prompts give one by one."""

from __future__ import annotations

import pytest
import torch

from agentrm.errors import InputError
from agentrm.types import ScoreLevel
from agentrm.verifiers.prm import make_scorer
from agentrm.verifiers.prm_tiny import sample_trajectory

pytestmark = [pytest.mark.model, pytest.mark.slow]


@pytest.fixture(scope="module")
def judge():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # on a busy 2-core box two threads spin-wait
    try:
        from agentrm.models import smollm2_gguf_path

        smollm2_gguf_path()
    except Exception as exc:  # noqa: BLE001
        from conftest import missing

        missing("model", f"embedded SmolLM2: {exc}")
    scorer = make_scorer(style="judge")  # default model: the embedded SmolLM2
    scorer.load()
    yield scorer
    torch.set_num_threads(threads)


def test_judge_on_smollm2_equals_separate_prompts(judge):
    traj = sample_trajectory("s", 2, seed=7)
    rows = judge.score([traj])
    turns = [r.value for r in rows if r.level == ScoreLevel.TURN]
    assert len(turns) == 2 and all(0.0 < v < 1.0 for v in turns)
    enc = judge._formatter.encode_judge(traj)
    model = judge._backend.backbone.model
    head = judge._backend.head
    for k, value in enumerate(turns):  # independent: each prompt on its own, stock causal mask
        ids = torch.tensor([enc.stream[: enc.step_end[k]] + enc.questions[k]])
        with torch.no_grad():
            h = model(input_ids=ids).last_hidden_state[0, -1]
        assert value == pytest.approx(torch.softmax(head(h.float()), -1)[0].item(), abs=1e-4)
    total = [r for r in rows if r.level == ScoreLevel.TRAJECTORY][0]
    assert total.value == pytest.approx(min(turns))


def test_math_shepherd_tag_is_two_tokens_in_smollm2(judge):
    """REWARD_MODELS §1.6: ' ки' splits in this tokenizer; the scorer must refuse it."""
    with pytest.raises(InputError, match="must be one token"):
        make_scorer(style="tag", separator=" ки").load()
