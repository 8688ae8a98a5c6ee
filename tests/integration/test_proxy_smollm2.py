"""mini-swe-agent, unchanged, on the builtin tasks with an answer (7 of 8; fix-total is judged by
a test command in the sandbox, which mini-swe-agent's environment does not run) with the
embedded SmolLM2 behind `vllm serve`,
recorded by `agentrm proxy`: two attempts per task (one GiGPO group each), every model call a
turn whose token ids and log-probs are the ones vLLM sampled, then GiGPO advantages and a verl
export that re-tokenises nothing. The tiny-model version of this (test_proxy_harnesses.py) runs
one task; this one shows a real small model through the whole path."""

from __future__ import annotations

import json
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from agentrm.proxy import ProxyConfig, start
from agentrm.traces import open_store
from agentrm.types import full_prompts

pytestmark = [pytest.mark.model, pytest.mark.slow, pytest.mark.docker, pytest.mark.timeout(2400)]
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # litellm: no network fetch
os.environ.setdefault("MSWEA_MODEL_RETRY_STOP_AFTER_ATTEMPT", "2")
GROUP = 2
# the calls are decoded under the tool schema; mini-swe-agent's prompts are ~1.9k SmolLM2 tokens
SERVE_ARGS = ("--max-model-len", "4096", "--enable-auto-tool-choice", "--tool-call-parser", "pythonic",
              "--structured-outputs-config", '{"backend": "xgrammar", "disable_any_whitespace": true}')


@pytest.fixture(scope="module")
def smollm2():
    from agentrm.models import resolve_model

    return Path(resolve_model("smollm2"))


@pytest.fixture(scope="module")
def proxy(smollm2, tmp_path_factory, vllm_module):
    from conftest import serve_asgi, vllm_serve

    with vllm_serve(smollm2, tmp_path_factory.mktemp("serve"), "2", extra_args=SERVE_ARGS) as ready:
        upstream = ready()
        url = f"sqlite:///{tmp_path_factory.mktemp('proxy') / 'store.db'}"
        store = open_store(url)
        _, app = start(store, ProxyConfig(upstream=upstream, port=0, run_id="smol"))
        base, server, thread = serve_asgi(app)
        yield base, url, store
        server.should_exit = True
        thread.join(timeout=30)


def attempt(base: str, task, k: int) -> dict:
    """One mini-swe-agent run with its own model and Docker environment classes; the proxy is
    only its base URL. Returns what the test checks against the store."""
    from conftest import mini_swe_agent_attempt

    traj = f"{task.id}-{k}"
    agent, solved = mini_swe_agent_attempt(f"{base}/t/{traj}/g/{task.id}/v1", task, max_tokens=96)
    closed = httpx.post(f"{base}/t/{traj}/close", json={"reward": float(solved)}, timeout=60)
    assert closed.status_code == 200, closed.text
    responses = [m["extra"]["response"] for m in agent.messages if "response" in (m.get("extra") or {})]
    return {"id": traj, "calls": agent.n_calls, "solved": solved, "responses": responses}


def test_mini_swe_agent_with_smollm2_on_the_builtin_tasks(proxy, smollm2, cli, tmp_path):
    from agentrm.tasks import bundled_tasks

    base, url, store = proxy
    tasks = [t for t in bundled_tasks() if t.answer is not None]
    assert len(tasks) >= 7
    with ThreadPoolExecutor(4) as pool:  # vLLM batches concurrent calls
        runs = list(pool.map(lambda job: attempt(base, *job), [(t, k) for t in tasks for k in range(GROUP)]))
    for run in runs:
        traj = store.get_trajectory(run["id"])
        assert run["calls"] >= 1 and len(traj.turns) == run["calls"] == len(run["responses"])
        assert traj.reward == float(run["solved"])
        for turn, response, prompt in zip(traj.turns, run["responses"], full_prompts(traj.turns), strict=True):
            choice = response["choices"][0]
            assert turn.tokens.completion_ids == choice["token_ids"]  # what vLLM sampled, exactly
            assert prompt == response["prompt_token_ids"]
            assert turn.logprobs == pytest.approx([e["logprob"] for e in choice["logprobs"]["content"]])
    res = cli("advantages", "--run", "smol", "--estimator", "gigpo", "--db", url, "--json")
    assert res.returncode == 0, res.stderr
    advs = store.get_advantages([r["id"] for r in runs])
    assert len(advs) == sum(r["calls"] for r in runs)
    out = tmp_path / "batch.parquet"
    res = cli("export", "--run", "smol", "--estimator", "gigpo", "--format", "verl", "--tokenizer", str(smollm2),
              "--db", url, "-o", str(out), "--json")
    assert res.returncode == 0, res.stderr
    summary = json.loads(res.stdout)
    assert summary["retokenized_rows"] == 0 and out.stat().st_size > 0
    solved = sum(r["solved"] for r in runs)
    valid = sum(t.valid for r in runs for t in store.get_trajectory(r["id"]).turns)
    print(f"SmolLM2 through mini-swe-agent: {solved}/{len(runs)} solved, {len(advs)} turns, "
          f"{valid} valid tool calls")
