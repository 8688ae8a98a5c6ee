"""Token-faithful policies on a tiny random-weight model: the ids a turn stores are the ids the
model was given and sampled (checked against an independent render + tokenise), prompts are
stored as prefix references that rebuild exactly, and grammar-constrained decoding (xgrammar)
yields well-formed tool calls where the unconstrained random model yields none."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "data" / "rollout"))
from tiny_model import build_tiny_model  # noqa: E402

from agentrm.rollout.policies import make_policy  # noqa: E402
from agentrm.rollout.policies.chat import prompt_ids, render_prompt  # noqa: E402
from agentrm.rollout.tools import TOOL_SCHEMAS, call_error  # noqa: E402
from agentrm.types import ToolCall, Turn, full_prompts  # noqa: E402

pytestmark = pytest.mark.model
MESSAGES = [{"role": "system", "content": "You are an agent."},
            {"role": "user", "content": "How many lines does data.txt have?"}]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    import torch

    torch.set_num_threads(1)
    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "model")


def _valid(message) -> bool:
    calls = [ToolCall.from_message(c) for c in message.get("tool_calls") or []]
    return bool(calls) and all(call_error(c) is None for c in calls)


def test_turns_store_the_ids_the_model_saw_and_sampled(tiny):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny)
    policy = make_policy(f"transformers:{tiny}?max_new_tokens=10&temperature=1.0&seed=5")
    first = policy.act(MESSAGES, TOOL_SCHEMAS)
    assert first.tokens.prefix_len == 0
    assert first.tokens.prompt_ids == prompt_ids(tok, render_prompt(tok, MESSAGES, TOOL_SCHEMAS))
    assert first.tokens.completion_ids == first.raw["token_ids"]
    assert len(first.logprobs) == len(first.tokens.completion_ids)
    assert first.tokens.tokenizer.startswith(str(tiny)) and first.tokens.template_hash

    history = [*MESSAGES, first.message, {"role": "user", "content": "42 data.txt"}]
    second = policy.act(history, TOOL_SCHEMAS)
    expected = prompt_ids(tok, render_prompt(tok, history, TOOL_SCHEMAS))
    # stored as a reference to the previous prompt plus only the new ids
    assert 0 < second.tokens.prefix_len < len(expected)
    assert len(second.tokens.prompt_ids) == len(expected) - second.tokens.prefix_len
    turns = [Turn(0, MESSAGES, first.message, tokens=first.tokens),
             Turn(1, history[2:], second.message, tokens=second.tokens)]
    assert full_prompts(turns) == [first.tokens.prompt_ids, expected]
    # a broken chain is detected, not silently rebuilt from the wrong ids
    turns[0].tokens.prompt_ids = turns[0].tokens.prompt_ids[:-1] + [0]
    assert full_prompts(turns)[1] is None


def test_constrained_decoding_gives_valid_tool_calls(tiny):
    budget = 120
    plain = make_policy(f"transformers:{tiny}?max_new_tokens={budget}&temperature=1.0&seed=1")
    constrained = make_policy(f"transformers:{tiny}?max_new_tokens={budget}&temperature=1.0&seed=1"
                              "&constrain=true")
    free = [plain.act(MESSAGES, TOOL_SCHEMAS) for _ in range(4)]
    assert not any(_valid(o.message) for o in free)  # a random model writes no tool calls
    outs = [constrained.act(MESSAGES, TOOL_SCHEMAS) for _ in range(6)]
    finished = [o for o in outs if len(o.tokens.completion_ids) < budget]
    assert finished, "no constrained completion ended before the token budget"
    for out in outs:  # every completion is (a prefix of) a call; every finished one is valid
        assert out.raw["text"].startswith('<tool_call>{"name": "')
    assert all(_valid(o.message) for o in finished)


def test_bash_block_format_constrained(tiny):
    policy = make_policy(f"transformers:{tiny}?max_new_tokens=40&temperature=1.0&seed=2"
                         "&constrain=true&action_format=bash_block")
    outs = [policy.act(MESSAGES, TOOL_SCHEMAS) for _ in range(3)]
    for out in outs:
        assert out.raw["text"].startswith("```bash\n")
    finished = [o for o in outs if len(o.tokens.completion_ids) < 40]
    assert all(_valid(o.message) for o in finished)
