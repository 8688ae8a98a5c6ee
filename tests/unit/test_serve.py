"""The HTTP reward server, over a real socket on 127.0.0.1 with the answer verifier."""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request

import pytest

from agentrm.serve import RewardService, make_server


def record(tid: str, answer: str, truth: str = "4") -> dict:
    call = {"id": "c1", "type": "function",
            "function": {"name": "submit", "arguments": json.dumps({"answer": answer})}}
    return {"id": tid, "task_id": "add", "group_id": "g", "reward": None, "answer": truth,
            "metadata": {},
            "messages": [{"role": "user", "content": "What is 2 + 2?"},
                         {"role": "assistant", "content": "", "tool_calls": [call]},
                         {"role": "tool", "tool_call_id": "c1", "content": "submitted"}]}


@pytest.fixture(scope="module")
def server():
    service = RewardService([{"name": "answer", "options": {"mode": "numeric"}}],
                            advantage={"estimator": "grpo", "norm": "mean"})
    srv = make_server(service, "127.0.0.1", 0)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{srv.server_port}"
    srv.shutdown()
    srv.server_close()


def post(url: str, payload) -> tuple[int, dict]:
    data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def test_score_returns_trajectory_scores_and_group_advantages(server):
    status, body = post(server + "/score", {"trajectories": [record("a", "4"), record("b", "5"),
                                                             record("c", "4"), record("d", "x")]})
    assert status == 200
    by_id = {t["id"]: t for t in body["trajectories"]}
    rewards = {tid: by_id[tid]["trajectory_scores"]["answer"] for tid in "abcd"}
    assert rewards == {"a": 1.0, "b": 0.0, "c": 1.0, "d": 0.0}
    # GRPO mean form, one turn per trajectory: A = R - mean(R) = ±0.5 (hand-computed)
    assert {tid: by_id[tid]["advantages"] for tid in "abcd"} == {
        "a": [0.5], "b": [-0.5], "c": [0.5], "d": [-0.5]}


def test_openrlhf_get_reward_shape(server):
    status, body = post(server + "/get_reward", {
        "query": ["Q: 2+2? A: 4", "Q: 2+2? A: 5"], "prompts": ["Q: 2+2? A:", "Q: 2+2? A:"],
        "labels": ["4", "4"]})
    assert status == 200
    assert body["rewards"] == [1.0, 0.0] and body["scores"] == [1.0, 0.0]
    assert body["extra_logs"]["answer"] == [1.0, 0.0]


def test_bad_requests_get_one_line_errors(server):
    status, body = post(server + "/score", b"{not json")
    assert status == 400 and "malformed JSON" in body["error"]
    status, body = post(server + "/score", {"trajectories": "nope"})
    assert status == 400 and "trajectories" in body["error"]
    status, body = post(server + "/get_reward", {"query": ["a"], "labels": ["1", "2"]})
    assert status == 400 and "as long as" in body["error"]
    status, body = post(server + "/nowhere", {})
    assert status == 404
    with urllib.request.urlopen(server + "/health", timeout=10) as response:
        assert json.loads(response.read()) == {"status": "ok", "scorers": ["answer"]}
