"""mini-swe-agent's one-bash-block action format, the action grammar's schema, the prompt
chain (prefix references), and token ids from an OpenAI-compatible endpoint."""

from __future__ import annotations

import json

import pytest
from test_policies_openai import completion, endpoint  # noqa: F401  (fixture)

from agentrm.rollout.policies.grammar import action_schema
from agentrm.rollout.policies.openai import OpenAIPolicy
from agentrm.rollout.policies.parsing import (
    assistant_message,
    parse_bash_block,
    render_bash_block,
    to_text_messages,
)
from agentrm.rollout.policies.tokens import PromptChain, common_prefix
from agentrm.rollout.tools import TOOL_SCHEMAS
from agentrm.types import ToolCall, Turn, full_prompts


def _args(call):
    return json.loads(call["function"]["arguments"])


def test_one_bash_block_is_a_bash_call():
    content, calls = parse_bash_block("I will count.\n```bash\nwc -l data.txt\n```")
    assert content == "I will count."
    assert [c["function"]["name"] for c in calls] == ["bash"]
    assert _args(calls[0]) == {"command": "wc -l data.txt"}


@pytest.mark.parametrize("text", ["no block", "```bash\nls\n```\n```bash\npwd\n```",
                                  "```python\nprint(1)\n```"])
def test_zero_or_several_blocks_are_no_action(text):
    assert parse_bash_block(text)[1] == []


def test_submit_marker_becomes_submit_with_answer():
    _, calls = parse_bash_block("```bash\necho COMPLETE_TASK_AND_SUBMIT_FINAL_OUTPUT 137\n```")
    assert calls[0]["function"]["name"] == "submit" and _args(calls[0]) == {"answer": "137"}
    _, calls = parse_bash_block("```bash\necho COMPLETE_TASK_AND_SUBMIT_FINAL_OUTPUT\n```")
    assert calls[0]["function"]["name"] == "submit" and _args(calls[0]) == {}


def test_bash_block_round_trips_through_the_prompt():
    message = assistant_message("```bash\nls -la\n```", "bash_block")
    rendered = to_text_messages([{"role": "user", "content": "go"}, message], TOOL_SCHEMAS, "bash_block")
    assert rendered[-1]["content"].endswith("```bash\nls -la\n```")
    assert "exactly one bash code block" in rendered[0]["content"]
    submit = assistant_message("```bash\necho COMPLETE_TASK_AND_SUBMIT_FINAL_OUTPUT 7\n```", "bash_block")
    assert render_bash_block(submit["tool_calls"][0]) == "```bash\necho COMPLETE_TASK_AND_SUBMIT_FINAL_OUTPUT 7\n```"


def test_action_schema_pins_name_and_forbids_extra_arguments():
    schema = action_schema(TOOL_SCHEMAS)
    names = [c["properties"]["name"]["const"] for c in schema["anyOf"]]
    assert names == [t["function"]["name"] for t in TOOL_SCHEMAS]
    assert all(c["properties"]["arguments"]["additionalProperties"] is False for c in schema["anyOf"])


def test_common_prefix_against_a_plain_loop():
    import random

    rng = random.Random(0)
    for _ in range(500):
        a = [rng.randrange(3) for _ in range(rng.randrange(12))]
        b = a[: rng.randrange(len(a) + 1)] + [rng.randrange(3) for _ in range(rng.randrange(5))]
        n = 0
        while n < min(len(a), len(b)) and a[n] == b[n]:
            n += 1
        assert common_prefix(a, b) == n


def test_prompt_chain_refers_to_the_same_conversation_only():
    chain = PromptChain()
    m0 = [{"role": "user", "content": "task"}]
    a = chain.trace(m0, [1, 2, 3], [9, 9])
    reply = {"role": "assistant", "content": "x"}
    b = chain.trace([*m0, reply, {"role": "user", "content": "obs"}], [1, 2, 3, 4, 5], [8])
    other = chain.trace([{"role": "user", "content": "other"}, reply], [1, 2, 7], [8])
    assert (a.prefix_len, b.prefix_len, b.prompt_ids) == (0, 3, [4, 5])
    assert other.prefix_len == 0  # its history was never seen: the whole prompt is stored
    turns = [Turn(0, m0, reply, tokens=a), Turn(1, [], reply, tokens=b)]
    assert full_prompts(turns) == [[1, 2, 3], [1, 2, 3, 4, 5]]


def test_openai_endpoint_token_ids_are_recorded(endpoint):  # noqa: F811
    url, replies, requests = endpoint
    call = {"id": "c1", "type": "function", "function": {"name": "bash", "arguments": '{"command": "ls"}'}}
    status, body = completion({"role": "assistant", "content": None, "tool_calls": [call]}, [-0.5, -1.0])
    body["prompt_token_ids"] = [5, 6, 7]
    body["choices"][0]["token_ids"] = [11, 12]
    replies.append((status, body))
    policy = OpenAIPolicy(url, "m")
    out = policy.act([{"role": "user", "content": "hi"}], TOOL_SCHEMAS)
    assert requests[-1][2]["return_token_ids"] is True
    assert (out.tokens.prompt_ids, out.tokens.completion_ids, out.logprobs) == ([5, 6, 7], [11, 12], [-0.5, -1.0])
    assert ToolCall.from_message(out.message["tool_calls"][0]).arguments == {"command": "ls"}


def test_openai_endpoint_without_token_ids(endpoint):  # noqa: F811
    url, replies, requests = endpoint
    replies.append((400, {"error": "Unrecognized request argument supplied: return_token_ids"}))
    replies.append(completion({"role": "assistant", "content": "hello"}))
    out = OpenAIPolicy(url, "m").act([{"role": "user", "content": "hi"}], TOOL_SCHEMAS)
    assert out.tokens is None and out.message["content"] == "hello"
    assert "return_token_ids" not in requests[-1][2]
