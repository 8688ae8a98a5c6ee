"""`agentrm proxy` between real clients and a real `vllm serve` (tiny random model, CPU): the
OpenAI SDK's chat loop, streaming, a client that asks for token ids itself, retries, failures;
then the proxied run through advantages, export and replay. Token ids in the store equal the
ones vLLM returned, and a client that did not ask for them never sees them."""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from pathlib import Path

import httpx
import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "data" / "rollout"))
from tiny_model import build_tiny_model  # noqa: E402

from agentrm.proxy import (  # noqa: E402
    ProxyConfig,
    Recorder,  # noqa: E402
    create_app,
    start,
)
from agentrm.traces import open_store  # noqa: E402
from agentrm.types import full_prompts  # noqa: E402

pytestmark = [pytest.mark.vllm, pytest.mark.model, pytest.mark.timeout(900)]
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
SYSTEM = {"role": "system", "content": "You are an agent."}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "model")


@pytest.fixture(scope="module")
def upstream(tiny, tmp_path_factory, vllm_module):
    from conftest import vllm_serve

    with vllm_serve(tiny, tmp_path_factory.mktemp("serve"), os.environ["VLLM_CPU_KVCACHE_SPACE"]) as ready:
        yield ready()


def serve(app):
    from conftest import serve_asgi

    return serve_asgi(app)


@pytest.fixture(scope="module")
def proxy(upstream, tmp_path_factory):
    url = f"sqlite:///{tmp_path_factory.mktemp('proxy') / 'store.db'}"
    store = open_store(url)
    recorder, app = start(store, ProxyConfig(upstream=upstream, port=0, run_id="px", max_body_mb=1))
    base, server, thread = serve(app)
    yield base, url, store, recorder
    server.should_exit = True
    thread.join(timeout=30)


def test_sdk_chat_loop_is_recorded_turn_by_turn_with_token_ids(proxy, tiny):
    from openai import OpenAI
    from transformers import AutoTokenizer

    base, _, store, recorder = proxy
    client = OpenAI(base_url=f"{base}/t/sdk-1/g/grp/v1", api_key="none")
    messages = [SYSTEM, {"role": "user", "content": "How many lines does data.txt have?"}]
    for observation in ("data.txt has 3 lines", None):
        reply = client.chat.completions.create(model="tiny", messages=messages, max_tokens=12,
                                               temperature=1.0, seed=1)
        extra = reply.model_extra or {}
        assert "prompt_token_ids" not in extra and reply.choices[0].logprobs is None  # not asked
        messages.append({"role": "assistant", "content": reply.choices[0].message.content or ""})
        if observation:
            messages.append({"role": "user", "content": observation})
    closed = httpx.post(f"{base}/t/sdk-1/close", json={"reward": 1.0, "status": "submitted"})
    assert closed.status_code == 200, closed.text
    traj = store.get_trajectory("sdk-1")
    assert traj.group_id == "grp" and traj.reward == 1.0 and traj.exit_status.value == "submitted"
    assert [t.index for t in traj.turns] == [0, 1]
    assert traj.turns[1].observation == [{"role": "user", "content": "data.txt has 3 lines"}]
    tok = AutoTokenizer.from_pretrained(tiny)
    for turn in traj.turns:
        ids = turn.tokens.completion_ids
        assert ids and len(turn.logprobs) == len(ids)
        assert tok.decode(ids, skip_special_tokens=True) == turn.assistant["content"]
    assert all(p is not None for p in full_prompts(traj.turns))  # prefix chain rebuilds


def test_ids_a_client_asked_for_equal_the_stored_ones(proxy):
    base, _, store, recorder = proxy
    body = {"model": "tiny", "messages": [SYSTEM, {"role": "user", "content": "hi"}], "max_tokens": 10,
            "temperature": 1.0, "return_token_ids": True, "logprobs": True}
    data = httpx.post(f"{base}/t/ask-1/v1/chat/completions", json=body, timeout=120).json()
    choice = data["choices"][0]
    recorder.flush()  # turns are written by the recorder's thread, after the reply
    (turn,) = store.get_trajectory("ask-1").turns
    assert turn.tokens.completion_ids == choice["token_ids"]  # what vLLM sampled, verbatim
    assert full_prompts([turn])[0] == data["prompt_token_ids"]
    assert turn.logprobs == pytest.approx([e["logprob"] for e in choice["logprobs"]["content"]])


def test_streaming_passes_through_and_is_recorded_whole(proxy, tiny):
    from openai import OpenAI

    base, _, store, recorder = proxy
    client = OpenAI(base_url=f"{base}/v1", api_key="none",
                    default_headers={"X-Agentrm-Trajectory": "stream-1", "X-Agentrm-Group": "g-stream"})
    chunks = list(client.chat.completions.create(
        model="tiny", messages=[SYSTEM, {"role": "user", "content": "list files"}], max_tokens=16,
        temperature=1.0, stream=True))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert all("token_ids" not in (c.choices[0].model_extra or {}) for c in chunks if c.choices)
    deadline = time.monotonic() + 30  # queued once the stream ended, just after the last chunk
    while not _exists(store, "stream-1") or not store.get_trajectory("stream-1").turns:
        recorder.flush()
        assert time.monotonic() < deadline
        time.sleep(0.1)
    (turn,) = store.get_trajectory("stream-1").turns
    assert turn.assistant["content"] == text and turn.metadata["proxy"]["streamed"]
    assert turn.tokens.completion_ids and len(turn.logprobs) == len(turn.tokens.completion_ids)
    assert store.get_trajectory("stream-1").group_id == "g-stream"


def _exists(store, traj_id):
    try:
        store.get_trajectory(traj_id)
        return True
    except Exception:  # noqa: BLE001
        return False


def test_a_retry_is_recorded_once_and_bad_requests_are_clear(proxy):
    base, _, store, recorder = proxy
    body = {"model": "tiny", "messages": [SYSTEM, {"role": "user", "content": "again"}], "max_tokens": 6}
    for _ in range(2):
        assert httpx.post(f"{base}/t/retry-1/v1/chat/completions", json=body, timeout=120).status_code == 200
    recorder.flush()
    assert len(store.get_trajectory("retry-1").turns) == 1
    anonymous = httpx.post(f"{base}/v1/chat/completions", json=body, timeout=60)
    assert anonymous.status_code == 400 and "X-Agentrm-Trajectory" in anonymous.json()["error"]["message"]
    big = httpx.post(f"{base}/t/big/v1/chat/completions", content=b"x" * (2 << 20),
                     headers={"content-type": "application/json"}, timeout=60)
    assert big.status_code == 413
    assert httpx.post(f"{base}/t/nobody/close", json={}).status_code == 404


def test_an_upstream_that_fails_mid_run_is_a_502(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]
    store = open_store(f"sqlite:///{tmp_path / 'dead.db'}")
    store.begin_run({}, run_id="dead")
    config = ProxyConfig(upstream=f"http://127.0.0.1:{dead}/v1", port=0)
    base, server, thread = serve(create_app(config, Recorder(store, "dead", config.base())))
    try:
        resp = httpx.post(f"{base}/t/x/v1/chat/completions", json={"model": "m", "messages": []}, timeout=30)
        assert resp.status_code == 502 and "upstream" in resp.json()["error"]["message"]
        assert not list(store.iter_trajectories(run_id="dead"))  # nothing recorded
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def test_proxied_run_goes_through_advantages_export_and_replay(proxy, tiny, cli, tmp_path):
    base, url, store, recorder = proxy
    for k, reward in enumerate((1.0, 0.0)):
        body = {"model": "tiny", "messages": [SYSTEM, {"role": "user", "content": "count"}],
                "max_tokens": 8, "temperature": 1.0}
        assert httpx.post(f"{base}/t/grp-a-{k}/g/grp-a/v1/chat/completions", json=body,
                          timeout=120).status_code == 200
        assert httpx.post(f"{base}/t/grp-a-{k}/close", json={"reward": reward}).status_code == 200
    res = cli("advantages", "--run", "px", "--estimator", "grpo", "--db", url, "--json")
    assert res.returncode == 0, res.stderr
    out = tmp_path / "batch.parquet"
    res = cli("export", "--run", "px", "--estimator", "grpo", "--format", "verl", "--tokenizer", str(tiny),
              "--db", url, "-o", str(out), "--json")
    assert res.returncode == 0, res.stderr
    meta = json.loads(res.stdout)
    assert meta["rows"] >= 2 and meta["retokenized_rows"] == 0  # the proxied ids, verbatim
    res = cli("replay", "grp-a-0", "--db", url)
    assert res.returncode == 0, res.stderr
