"""Harnesses that know nothing of agentrm, recorded by `agentrm proxy` in front of a real
`vllm serve` (tiny random model, CPU, tool calls decoded under the tools' JSON schema):

- an OpenAI SDK tool-call loop (tool_choice="required", the tools run for real in a work
  directory), streaming and not: every call lands as a turn with its tool calls, the tool
  results as the next turn's observation, and the ids vLLM sampled;
- mini-swe-agent 2.x (its LitellmModel, tool-calling mode) in its own Docker environment on the
  builtin task count-lines: each model call is a turn, also the ones whose reply it rejected;
- the proxied run through `agentrm score` (a tiny PRM), GiGPO `advantages` and `export`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "data" / "rollout"))
from tiny_model import build_tiny_model  # noqa: E402

from agentrm.proxy import ProxyConfig, start  # noqa: E402
from agentrm.traces import open_store  # noqa: E402
from agentrm.types import full_prompts  # noqa: E402

pytestmark = [pytest.mark.model, pytest.mark.timeout(1200)]
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # litellm: no network fetch
os.environ.setdefault("MSWEA_MODEL_RETRY_STOP_AFTER_ATTEMPT", "2")  # a failing upstream fails fast
COMMANDS = ["ls", "pwd", "wc -l data.txt"]
TOOLS = [{"type": "function", "function": {
    "name": "bash", "description": "Run a shell command in the work directory.",
    "parameters": {"type": "object", "properties": {"command": {"type": "string", "enum": COMMANDS}},
                   "required": ["command"], "additionalProperties": False}}}]
# tool_choice "required" needs a tool-call parser to be set; compact JSON keeps calls short;
# mini-swe-agent's own prompts are 2.1k tokens of the tiny tokenizer (the last --max-model-len wins)
TOOL_ARGS = ("--max-model-len", "4096", "--enable-auto-tool-choice", "--tool-call-parser", "pythonic",
             "--structured-outputs-config", '{"backend": "xgrammar", "disable_any_whitespace": true}')


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "model")


@pytest.fixture(scope="module")
def upstream(tiny, tmp_path_factory, vllm_module):
    from conftest import vllm_serve

    with vllm_serve(tiny, tmp_path_factory.mktemp("serve"), os.environ["VLLM_CPU_KVCACHE_SPACE"],
                    extra_args=TOOL_ARGS) as ready:
        yield ready()


@pytest.fixture(scope="module")
def proxy(upstream, tmp_path_factory):
    from conftest import serve_asgi

    url = f"sqlite:///{tmp_path_factory.mktemp('proxy') / 'store.db'}"
    store = open_store(url)
    recorder, app = start(store, ProxyConfig(upstream=upstream, port=0, run_id="hx"))
    base, server, thread = serve_asgi(app)
    yield base, url, store, recorder
    server.should_exit = True
    thread.join(timeout=30)


def _run_tool(command: str, workdir: Path) -> str:
    assert command in COMMANDS  # the schema's enum: the model can ask for nothing else
    done = subprocess.run(command, shell=True, cwd=workdir, capture_output=True, text=True, timeout=30)
    return done.stdout + done.stderr


def _streamed_reply(client, **kwargs) -> tuple[str, list[dict]]:
    """Content and tool calls rebuilt from the SDK's chunks, as a streaming harness does."""
    content, calls = "", {}
    for chunk in client.chat.completions.create(stream=True, **kwargs):
        if not chunk.choices:
            continue
        delta = chunk.choices[0].delta
        content += delta.content or ""
        for call in delta.tool_calls or []:
            slot = calls.setdefault(call.index, {"id": None, "type": "function",
                                                 "function": {"name": "", "arguments": ""}})
            slot["id"] = call.id or slot["id"]
            if call.function is not None:
                slot["function"]["name"] += call.function.name or ""
                slot["function"]["arguments"] += call.function.arguments or ""
    return content, [calls[k] for k in sorted(calls)]


def test_openai_sdk_tool_loop_is_recorded_with_calls_results_and_ids(proxy, tmp_path):
    from openai import OpenAI

    base, _, store, recorder = proxy
    (tmp_path / "data.txt").write_text("a\nb\nc\n")
    client = OpenAI(base_url=f"{base}/t/tools-1/g/tools/v1", api_key="none")
    messages = [{"role": "system", "content": "You are an agent."},
                {"role": "user", "content": "How many lines does data.txt have?"}]
    sent_calls, results = [], []
    for step in range(3):
        args = dict(model="tiny", messages=messages, tools=TOOLS, tool_choice="required", max_tokens=160,
                    temperature=1.0, seed=step)
        if step == 1:  # the middle call streams
            content, calls = _streamed_reply(client, **args)
        else:
            message = client.chat.completions.create(**args).choices[0].message
            content = message.content or ""
            calls = [c.model_dump(include={"id", "type", "function"}) for c in message.tool_calls or []]
        assert calls, f"step {step}: no tool call under tool_choice=required"
        messages.append({"role": "assistant", "content": content, "tool_calls": calls})
        step_results = [{"role": "tool", "tool_call_id": c["id"],
                         "content": _run_tool(json.loads(c["function"]["arguments"])["command"], tmp_path)}
                        for c in calls]
        messages += step_results
        sent_calls.append(calls)
        results.append(step_results)
    assert httpx.post(f"{base}/t/tools-1/close", json={"reward": 1.0, "status": "submitted"}).status_code == 200
    traj = store.get_trajectory("tools-1")
    assert [t.index for t in traj.turns] == [0, 1, 2] and traj.group_id == "tools"
    for k, turn in enumerate(traj.turns):
        got = [(c["id"], c["function"]["name"], json.loads(c["function"]["arguments"]))
               for c in turn.assistant["tool_calls"]]
        assert got == [(c["id"], c["function"]["name"], json.loads(c["function"]["arguments"]))
                       for c in sent_calls[k]]
        assert turn.valid and turn.tokens.completion_ids and len(turn.logprobs) == len(turn.tokens.completion_ids)
        if k:
            assert turn.observation == results[k - 1]  # the tool results the harness sent back
    assert traj.turns[1].metadata["proxy"]["streamed"] and not traj.turns[0].metadata["proxy"]["streamed"]
    assert all(p is not None for p in full_prompts(traj.turns))  # each prompt extends the last


@pytest.mark.docker
def test_mini_swe_agent_through_the_proxy(proxy, docker_client, tiny):
    """mini-swe-agent's own model and environment classes, pointed at the proxy by its base URL."""
    from conftest import mini_swe_agent_attempt
    from transformers import AutoTokenizer

    from agentrm.tasks import bundled_tasks

    base, _, store, recorder = proxy
    task = next(t for t in bundled_tasks() if t.id == "count-lines")
    agent, solved = mini_swe_agent_attempt(f"{base}/t/mswea-1/g/count-lines/v1", task, max_tokens=192)
    closed = httpx.post(f"{base}/t/mswea-1/close", json={"reward": float(solved)})
    assert closed.status_code == 200, closed.text
    traj = store.get_trajectory("mswea-1")
    assert agent.n_calls >= 1 and len(traj.turns) == agent.n_calls  # rejected replies included
    assert traj.group_id == "count-lines" and traj.reward == float(solved)
    assert traj.turns[0].observation[1]["content"] == agent.messages[1]["content"]  # the task prompt
    sent = [m for m in agent.messages if m.get("role") == "assistant"]
    recorded = {json.dumps(t.assistant.get("tool_calls"), sort_keys=True) for t in traj.turns}
    for m in sent:  # every reply mini-swe-agent kept is a recorded turn, calls and all
        calls = [{"id": c["id"], "type": "function", "function": c["function"]} for c in m.get("tool_calls") or []]
        assert json.dumps(calls or None, sort_keys=True) in recorded
    # token-exact: each turn holds the ids vLLM sampled for that call, as litellm handed them over
    responses = [m["extra"]["response"] for m in agent.messages if "response" in (m.get("extra") or {})]
    assert len(responses) == len(traj.turns)
    for turn, response, prompt in zip(traj.turns, responses, full_prompts(traj.turns), strict=True):
        assert turn.tokens.completion_ids == response["choices"][0]["token_ids"]
        assert prompt == response["prompt_token_ids"]
        assert turn.logprobs == pytest.approx([e["logprob"] for e in response["choices"][0]["logprobs"]["content"]])
    tok = AutoTokenizer.from_pretrained(tiny)
    first_prompt = tok.decode(full_prompts(traj.turns)[0])
    assert first_prompt.startswith("<|im_start|>system") and task.instruction in first_prompt


def test_proxied_run_is_scored_given_gigpo_advantages_and_exported(proxy, tiny, cli, tmp_path):
    from agentrm.verifiers.prm_tiny import build_tiny_prm

    base, url, store, recorder = proxy
    for k, reward in enumerate((1.0, 0.0)):
        messages = [{"role": "system", "content": "You are an agent."},
                    {"role": "user", "content": "How many lines does data.txt have?"}]
        for step in range(2):
            reply = httpx.post(f"{base}/t/sg-{k}/g/sg/v1/chat/completions", timeout=300, json={
                "model": "tiny", "messages": messages, "max_tokens": 12, "temperature": 1.0, "seed": 10 * k + step})
            assert reply.status_code == 200, reply.text
            messages += [{"role": "assistant", "content": reply.json()["choices"][0]["message"]["content"] or ""},
                         {"role": "user", "content": "data.txt: 3 lines"}]
        assert httpx.post(f"{base}/t/sg-{k}/close", json={"reward": reward}).status_code == 200
    prm = build_tiny_prm(tmp_path / "prm", "token-cls")
    res = cli("score", "--run", "hx", "--db", url, "--model", str(prm), "--style", "token-cls", "--json")
    assert res.returncode == 0, res.stderr
    rows = [r for r in json.loads(res.stdout) if r["trajectory_id"] in ("sg-0", "sg-1")]
    assert len([r for r in rows if r["level"] == "turn"]) == 4 and all(r["value"] is not None for r in rows)
    res = cli("advantages", "--run", "hx", "--estimator", "gigpo", "--db", url, "--json")
    assert res.returncode == 0, res.stderr
    advs = {(a.trajectory_id, a.turn_index): a.value for a in store.get_advantages(["sg-0", "sg-1"])}
    assert len(advs) == 4 and advs[("sg-0", 0)] > 0 > advs[("sg-1", 0)]  # outcome 1 vs 0 in one group
    out = tmp_path / "batch.parquet"
    res = cli("export", "--run", "hx", "--estimator", "gigpo", "--format", "verl", "--tokenizer", str(tiny),
              "--db", url, "-o", str(out), "--json")
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["retokenized_rows"] == 0 and out.stat().st_size > 0
