"""Any OpenAI-compatible chat endpoint with tool calling (`vllm serve`, SGLang, llama.cpp, a
hosted API), over plain httpx.

Token ids: the request asks for them (`return_token_ids`, a vLLM extension that returns
`prompt_token_ids` and each choice's `token_ids`); when the server sends them they are recorded
as the turn's TokenTrace. An endpoint that rejects the field is asked again without it, once.

An endpoint started without a tool parser rejects `tools`; the policy then switches, once, to
text mode (tools described in the system prompt, calls parsed from the reply), which is also
where a reply without native `tool_calls` is parsed.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from typing import Any

import httpx

from agentrm.protocols import PolicyOutput
from agentrm.rollout.policies.base import ContextLimitExceeded, ModelError
from agentrm.rollout.policies.parsing import parse_tool_calls, to_text_messages
from agentrm.rollout.policies.tokens import PromptChain
from agentrm.types import Message

log = logging.getLogger("agentrm.rollout.policies.openai")
_RETRYABLE = {408, 429, 500, 502, 503, 504}


class OpenAIPolicy:
    def __init__(self, base_url: str, model: str | None = None, *, api_key: str | None = None,
                 temperature: float = 0.7, top_p: float = 1.0, max_tokens: int = 512,
                 logprobs: bool = True, timeout: float = 300.0, retries: int = 2,
                 tools_mode: str = "native", token_ids: bool = True, name: str | None = None):
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.name = name or f"openai:{self.base_url}#{model or ''}"
        self.params = {"temperature": temperature, "top_p": top_p, "max_tokens": max_tokens}
        self.logprobs, self.retries, self.tools_mode = logprobs, retries, tools_mode
        self.token_ids = token_ids
        self._chain = PromptChain()
        key = api_key or os.environ.get("OPENAI_API_KEY") or "EMPTY"
        self._client = httpx.Client(timeout=timeout, headers={"Authorization": f"Bearer {key}"})

    def _model_name(self) -> str:
        if self.model is None:  # like `vllm serve`'s single model: ask the endpoint
            data = self._request("GET", "/models", None)
            models = data.get("data") or []
            if not models:
                raise ModelError(f"{self.base_url}/models lists no model; give one as URL#MODEL")
            self.model = models[0]["id"]
        return self.model

    def _request(self, method: str, path: str, body: dict | None) -> dict:
        for attempt in range(self.retries + 1):
            try:
                resp = self._client.request(method, self.base_url + path, json=body)
            except httpx.HTTPError as exc:
                error = f"{type(exc).__name__}: {exc}"
            else:
                if resp.status_code < 400:
                    return resp.json()
                error = f"HTTP {resp.status_code}: {resp.text[:300]}"
                if resp.status_code not in _RETRYABLE:
                    raise _http_error(self.base_url + path, resp.status_code, resp.text)
            if attempt < self.retries:
                time.sleep(0.5 * 2**attempt)
        raise ModelError(f"{self.base_url}{path}: {error}")

    def act(self, messages: Sequence[Message], tools: Sequence[dict[str, Any]]) -> PolicyOutput:
        model = self._model_name()
        try:
            return self._complete(model, messages, tools)
        except _ToolsRejected:
            if self.tools_mode == "text":
                raise
            log.warning("%s rejected native tools; describing them in the prompt instead", self.base_url)
            self.tools_mode = "text"
            return self.act(messages, tools)
        except _TokenIdsRejected as exc:
            if not self.token_ids:
                raise ModelError(str(exc)) from exc
            log.warning("%s rejected return_token_ids; turns will have no token ids", self.base_url)
            self.token_ids = False
            return self.act(messages, tools)

    def _complete(self, model: str, messages: Sequence[Message], tools: Sequence[dict]) -> PolicyOutput:
        body: dict[str, Any] = {"model": model, **self.params}
        if self.tools_mode == "native":
            body.update(messages=list(messages), tools=list(tools), tool_choice="auto")
        else:
            body["messages"] = to_text_messages(list(messages), list(tools))
        if self.logprobs:
            body["logprobs"] = True
        if self.token_ids:
            body["return_token_ids"] = True
        data = self._request("POST", "/chat/completions", body)
        try:
            choice = data["choices"][0]
            msg = choice["message"]
        except (KeyError, IndexError, TypeError) as exc:
            raise ModelError(f"{self.base_url}: malformed completion: {str(data)[:200]}") from exc
        message: Message = {"role": "assistant", "content": msg.get("content") or ""}
        if msg.get("tool_calls"):
            message["tool_calls"] = [{"id": c.get("id") or f"call_{i}", "type": "function",
                                      "function": c.get("function") or {}}
                                     for i, c in enumerate(msg["tool_calls"])]
        else:
            content, calls = parse_tool_calls(message["content"])
            if calls:
                message = {"role": "assistant", "content": content, "tool_calls": calls}
        usage = data.get("usage") or {}
        lp = (choice.get("logprobs") or {}).get("content")
        prompt_ids, completion_ids = data.get("prompt_token_ids"), choice.get("token_ids")
        tokens = None
        if isinstance(prompt_ids, list) and isinstance(completion_ids, list):
            tokens = self._chain.trace(messages, prompt_ids, completion_ids,
                                       tokenizer=f"{self.base_url}#{model}")
        return PolicyOutput(message, prompt_tokens=usage.get("prompt_tokens"),
                            completion_tokens=usage.get("completion_tokens"),
                            logprobs=[float(t["logprob"]) for t in lp] if lp else None,
                            raw={"finish_reason": choice.get("finish_reason")}, tokens=tokens)

    def close(self) -> None:
        self._client.close()


class _ToolsRejected(ModelError):
    pass


class _TokenIdsRejected(ModelError):
    pass


def _http_error(url: str, status: int, text: str) -> Exception:
    lowered = text.lower()
    if status in (400, 422) and "return_token_ids" in lowered:
        return _TokenIdsRejected(f"{url}: {text[:200]}")
    if status == 400 and ("tool" in lowered and ("auto" in lowered or "parser" in lowered)):
        return _ToolsRejected(f"{url}: {text[:200]}")
    if status == 400 and ("context length" in lowered or "maximum context" in lowered
                          or "max_model_len" in lowered or "too long" in lowered):
        return ContextLimitExceeded(f"{url}: {text[:200]}")
    return ModelError(f"{url}: HTTP {status}: {text[:300]}")
