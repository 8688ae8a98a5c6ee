"""The OpenAI-endpoint policy's HTTP handling against a loopback HTTP server that replays canned
responses: native tool calls, retries, the text-tools fallback, context overflow, errors.
(The real endpoint, `vllm serve`, is exercised in tests/integration/test_policies_vllm.py.)"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from agentrm.rollout.policies import ContextLimitExceeded, ModelError
from agentrm.rollout.policies.openai import OpenAIPolicy
from agentrm.rollout.tools import TOOL_SCHEMAS
from agentrm.types import ToolCall

MESSAGES = [{"role": "user", "content": "hi"}]


def completion(message, logprobs=None):
    choice = {"message": message, "finish_reason": "stop"}
    if logprobs:
        choice["logprobs"] = {"content": [{"token": "x", "logprob": lp} for lp in logprobs]}
    return 200, {"choices": [choice], "usage": {"prompt_tokens": 11, "completion_tokens": 2}}


@pytest.fixture
def endpoint():
    replies, requests = [], []

    class Handler(BaseHTTPRequestHandler):
        def _reply(self):
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length)) if length else None
            requests.append((self.command, self.path, body))
            status, payload = replies.pop(0)
            data = (payload if isinstance(payload, str) else json.dumps(payload)).encode()
            self.send_response(status)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = _reply

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1", replies, requests
    server.shutdown()


def test_native_tool_calls_usage_and_logprobs(endpoint):
    url, replies, requests = endpoint
    call = {"id": "c9", "type": "function", "function": {"name": "bash", "arguments": '{"command": "ls"}'}}
    replies.append(completion({"role": "assistant", "content": None, "tool_calls": [call]}, [-0.5, -1.0]))
    out = OpenAIPolicy(url, "m").act(MESSAGES, TOOL_SCHEMAS)
    assert ToolCall.from_message(out.message["tool_calls"][0]).arguments == {"command": "ls"}
    assert (out.prompt_tokens, out.completion_tokens, out.logprobs) == (11, 2, [-0.5, -1.0])
    method, path, body = requests[0]
    assert (method, path) == ("POST", "/v1/chat/completions")
    assert body["tools"] == TOOL_SCHEMAS and body["logprobs"] is True and body["model"] == "m"


def test_retries_transient_errors_then_succeeds(endpoint):
    url, replies, requests = endpoint
    replies += [(503, "busy"), completion({"role": "assistant", "content": "hello"})]
    out = OpenAIPolicy(url, "m", retries=1).act(MESSAGES, TOOL_SCHEMAS)
    assert out.message == {"role": "assistant", "content": "hello"} and len(requests) == 2


def test_rejected_tools_switch_to_text_mode_once(endpoint):
    url, replies, requests = endpoint
    text = '<tool_call>{"name": "submit", "arguments": {"answer": "4"}}</tool_call>'
    replies += [(400, '{"error": "\\"auto\\" tool choice requires --enable-auto-tool-choice"}'),
                completion({"role": "assistant", "content": text}),
                completion({"role": "assistant", "content": text})]
    policy = OpenAIPolicy(url, "m")
    out = policy.act(MESSAGES, TOOL_SCHEMAS)
    assert policy.tools_mode == "text"
    assert ToolCall.from_message(out.message["tool_calls"][0]).arguments == {"answer": "4"}
    retry_body = requests[1][2]
    assert "tools" not in retry_body and "<tools>" in retry_body["messages"][0]["content"]
    policy.act(MESSAGES, TOOL_SCHEMAS)
    assert len(requests) == 3  # no second rejection round-trip


def test_context_overflow_and_hard_errors(endpoint):
    url, replies, _ = endpoint
    replies.append((400, "This model's maximum context length is 2048 tokens"))
    with pytest.raises(ContextLimitExceeded):
        OpenAIPolicy(url, "m").act(MESSAGES, TOOL_SCHEMAS)
    replies.append((401, "bad key"))
    with pytest.raises(ModelError, match="HTTP 401"):
        OpenAIPolicy(url, "m").act(MESSAGES, TOOL_SCHEMAS)
    replies.append((200, {"unexpected": True}))
    with pytest.raises(ModelError, match="malformed completion"):
        OpenAIPolicy(url, "m").act(MESSAGES, TOOL_SCHEMAS)


def test_unreachable_endpoint_is_a_model_error():
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(ModelError, match="ConnectError"):
        OpenAIPolicy(f"http://127.0.0.1:{port}/v1", "m", retries=0).act(MESSAGES, TOOL_SCHEMAS)


def test_model_name_from_the_models_list(endpoint):
    url, replies, requests = endpoint
    replies += [(200, {"data": [{"id": "served"}]}), completion({"role": "assistant", "content": "x"})]
    policy = OpenAIPolicy(url)
    policy.act(MESSAGES, TOOL_SCHEMAS)
    assert policy.model == "served" and requests[0][:2] == ("GET", "/v1/models")
