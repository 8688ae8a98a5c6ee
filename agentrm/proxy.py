"""`agentrm proxy`: a recording gateway in front of any OpenAI-compatible model server, so an
agent harness that knows nothing of agentrm leaves token-exact trajectories in the store.

The harness points its base URL at `http://127.0.0.1:PORT/t/TRAJECTORY/v1` (or
`/t/TRAJECTORY/g/GROUP/v1`, or plain `/v1` with the headers `X-Agentrm-Trajectory` and
`X-Agentrm-Group`). Every chat completion is forwarded to the upstream and recorded as a turn:
the messages since the previous assistant message (the observation), the reply (content and
tool calls), the upstream's prompt and completion token ids and log-probs, and timings. The
proxy asks the upstream for token ids (`return_token_ids`, vLLM's extension) and log-probs
when the client did not, and removes them from what that client sees. Streaming replies pass
through chunk by chunk and are recorded whole once they end.

Turns are keyed by their request: the same messages sent again for a trajectory (a client
retry) overwrite the turn they made instead of adding one, and any new request is the next
turn, also when the harness dropped a reply it could not parse and asked again (mini-swe-agent
does that on format errors). A trajectory ends with
`POST /t/TRAJECTORY/close` (optional JSON `{"reward": R, "status": "submitted"}`) or after
`idle_timeout` seconds without a request (status `imported`, reward unknown): its outcome
reward usually arrives later (`agentrm traces`, the reward server). The harness's sandbox is
its own business.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import orjson

from agentrm import telemetry
from agentrm.config import option
from agentrm.errors import InputError, NotFoundError, PrerequisiteError
from agentrm.types import ExitStatus, Message, ToolCall, Trajectory, Turn

log = logging.getLogger("agentrm.proxy")
TRAJECTORY_HEADER = "x-agentrm-trajectory"
GROUP_HEADER = "x-agentrm-group"
TASK_HEADER = "x-agentrm-task"
ADDED = ("return_token_ids", "logprobs")  # what the proxy may add to a request
# The writer wakes every WRITE_LINGER_S and commits what was queued meanwhile: one commit for
# many turns costs the request path less CPU (and GIL) than one per turn.
WRITE_BATCH = 256
WRITE_LINGER_S = 0.02


@dataclass
class ProxyConfig:
    """Where to forward, where to listen, what to record under."""

    upstream: str = option("", "The OpenAI-compatible server to forward to (e.g. http://127.0.0.1:8000/v1).",
                           "--upstream", metavar="URL")
    port: int = option(8400, "Port on 127.0.0.1 (0: any free port); the proxy has no auth, so it "
                       "never listens beyond this host.")
    run_id: str | None = option(None, "Record into this run (default proxy-TIMESTAMP).", metavar="ID")
    idle_timeout: float = option(600.0, "Close a trajectory after this many seconds without a request.")
    max_body_mb: float = option(32.0, "Largest request body accepted (MiB).")
    timeout: float = option(600.0, "Seconds to wait for the upstream per request.")

    def base(self) -> str:
        url = self.upstream.rstrip("/")
        if not url.startswith(("http://", "https://")):
            raise InputError(f"--upstream {self.upstream!r}: give an http(s) URL such as http://127.0.0.1:8000/v1")
        return url if url.endswith("/v1") else url + "/v1"


def check_upstream(config: ProxyConfig) -> list[str]:
    """The upstream's model ids; an unreachable upstream is one clear error before listening."""
    import httpx

    url = config.base() + "/models"
    try:
        resp = httpx.get(url, timeout=10)
        resp.raise_for_status()
        return [m.get("id") for m in resp.json().get("data") or []]
    except (httpx.HTTPError, ValueError) as exc:
        raise PrerequisiteError(f"--upstream {config.upstream}: cannot list models at {url} "
                                f"({type(exc).__name__}: {exc})") from None


# ---------------------------------------------------------------------------------- recording

@dataclass
class Exchange:
    """One chat completion as the proxy saw it."""

    messages: list[Message]
    reply: Message
    model: str
    prompt_ids: list[int] | None = None
    completion_ids: list[int] | None = None
    logprobs: list[float] | None = None
    usage: dict[str, Any] = field(default_factory=dict)
    started_at: float = 0.0
    duration_s: float = 0.0
    streamed: bool = False


def request_key(messages: list[Message]) -> str:
    """Identity of a request within its trajectory: the same messages again are a retry."""
    import hashlib

    text = json.dumps(messages, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def turn_of(exchange: Exchange, upstream: str, chain: Any, index: int, key: str = "") -> Turn:
    """The exchange as turn `index`: its observation is what came after the last assistant
    message of the request."""
    from agentrm.hashing import anchor_key

    messages = exchange.messages
    last = max((i for i, m in enumerate(messages) if m.get("role") == "assistant"), default=-1)
    observation = [dict(m) for m in messages[last + 1:]]
    tokens = None
    if exchange.prompt_ids is not None and exchange.completion_ids is not None:
        tokens = chain.trace(messages, exchange.prompt_ids, exchange.completion_ids,
                             tokenizer=f"{upstream}#{exchange.model}")
    calls = exchange.reply.get("tool_calls") or []
    valid = all(ToolCall.arguments_valid(c.get("function", {}).get("arguments")) for c in calls)
    return Turn(index=index, observation=observation, assistant=exchange.reply,
                anchor_key=anchor_key(observation),
                prompt_tokens=exchange.usage.get("prompt_tokens") or (len(exchange.prompt_ids or []) or None),
                completion_tokens=exchange.usage.get("completion_tokens")
                or (len(exchange.completion_ids or []) or None),
                logprobs=exchange.logprobs, started_at=exchange.started_at,
                duration_s=exchange.duration_s, valid=valid, tokens=tokens,
                metadata={"proxy": {"streamed": exchange.streamed, "model": exchange.model, "request": key}})


class Recorder:
    """Writes exchanges to the store as turns; thread-safe, idempotent per turn index.

    `submit` queues an exchange for one writer thread, so a client gets its reply without
    waiting for the database; the queue is bounded (a slow store slows clients down rather
    than filling memory), and `flush` waits until everything queued is written (closing a
    trajectory flushes first)."""

    def __init__(self, store: Any, run_id: str, upstream: str, queue_size: int = 1024):
        from collections import deque

        from agentrm.rollout.policies.tokens import PromptChain

        self.store, self.run_id, self.upstream = store, run_id, upstream
        self.chain = PromptChain(size=4096)
        self.open: dict[str, float] = {}  # trajectory id -> last request time
        self.begun: set[str] = set()  # trajectories this process began (and has not closed)
        self.turn_keys: dict[str, dict[str, int]] = {}  # trajectory -> request key -> turn index
        self.lock = threading.Lock()
        self.queue_size = queue_size
        self.pending: deque[tuple[str, str, str, Exchange]] = deque()
        self.submitted = 0  # under self.lock
        self.written = 0  # under self.done: turns the writer has finished with (landed or not)
        self.done = threading.Condition()
        self.writer = threading.Thread(target=self._write, name="proxy-recorder", daemon=True)
        self.writer.start()

    def submit(self, traj_id: str, group_id: str, task_id: str, exchange: Exchange) -> None:
        """Queue a turn; blocks while the queue is full."""
        while not self.try_submit(traj_id, group_id, task_id, exchange):
            time.sleep(WRITE_LINGER_S / 4)

    def try_submit(self, traj_id: str, group_id: str, task_id: str, exchange: Exchange) -> bool:
        """Queue a turn unless the queue is full (then False: call `submit` off the event loop).

        Queuing wakes no thread: the writer polls (see _write), because waking it for every
        turn handed it the GIL in the middle of the next request."""
        with self.lock:
            self.open[traj_id] = time.monotonic()  # a queued turn keeps it from the idle reaper
            if len(self.pending) >= self.queue_size:
                return False
            self.pending.append((traj_id, group_id, task_id, exchange))
            self.submitted += 1
        return True

    def flush(self) -> None:
        """Wait until every turn queued before this call is written."""
        with self.lock:
            target = self.submitted
        with self.done:
            self.done.wait_for(lambda: self.written >= target)

    def _write(self) -> None:
        while True:
            time.sleep(WRITE_LINGER_S)  # what arrives meanwhile goes in the same commit
            while self.pending:
                batch = []
                while self.pending and len(batch) < WRITE_BATCH:
                    batch.append(self.pending.popleft())
                try:
                    self.record_batch(batch)
                except Exception:  # noqa: BLE001 - one failed write must not stop the recorder
                    if len(batch) == 1:
                        log.exception("proxy: could not record a turn of %s", batch[0][0])
                    else:
                        self._one_by_one(batch)  # the others still land
                finally:
                    with self.done:
                        self.written += len(batch)
                        self.done.notify_all()

    def _one_by_one(self, batch: list[tuple[str, str, str, Exchange]]) -> None:
        for item in batch:
            try:
                self.record_batch([item])
            except Exception:  # noqa: BLE001
                log.exception("proxy: could not record a turn of %s", item[0])

    def record(self, traj_id: str, group_id: str, task_id: str, exchange: Exchange) -> Turn:
        return self.record_batch([(traj_id, group_id, task_id, exchange)])[0]

    def record_batch(self, batch: list[tuple[str, str, str, Exchange]]) -> list[Turn]:
        """Write exchanges as turns in one transaction. A trajectory this process has not begun
        is begun, unless the store has it (a proxy restarted mid-trajectory): then its stored
        turns' request keys carry on. The recorder's own state changes only once the write
        succeeded, so a failed batch can be retried item by item."""
        with self.lock:
            unknown = list(dict.fromkeys(item[0] for item in batch if item[0] not in self.begun))
        stored = {t.id: t for t in self.store.iter_trajectories(ids=unknown)} if unknown else {}
        begin: list[Trajectory] = []
        keys_of: dict[str, dict[str, int]] = {}
        planned = []
        with self.lock:
            for traj_id, group_id, task_id, exchange in batch:
                if traj_id not in keys_of:
                    if traj_id in self.begun:
                        keys_of[traj_id] = dict(self.turn_keys[traj_id])
                    elif traj_id in stored:
                        keys_of[traj_id] = {(t.metadata.get("proxy") or {}).get("request", ""): t.index
                                            for t in stored[traj_id].turns}
                    else:
                        keys_of[traj_id] = {}
                        begin.append(Trajectory(
                            id=traj_id, task_id=task_id, group_id=group_id, run_id=self.run_id,
                            policy=f"proxy:{self.upstream}#{exchange.model}",
                            metadata={"source": "agentrm proxy", "upstream": self.upstream}))
                key = request_key(exchange.messages)
                keys = keys_of[traj_id]
                index = keys.get(key)
                if index is None:
                    index = keys[key] = max(keys.values(), default=-1) + 1
                planned.append((traj_id, exchange, index, key))
        written = [(traj_id, turn_of(exchange, self.upstream, self.chain, index, key))
                   for traj_id, exchange, index, key in planned]
        self.store.append_turns(written, begin=begin)
        with self.lock:
            self.turn_keys.update(keys_of)
            self.begun.update(keys_of)
        return [turn for _, turn in written]

    def close(self, traj_id: str, status: ExitStatus = ExitStatus.IMPORTED,
              reward: float | None = None) -> bool:
        self.flush()
        with self.lock:
            known = self.open.pop(traj_id, None) is not None
            self.begun.discard(traj_id)
            self.turn_keys.pop(traj_id, None)
        if not known:
            try:
                if self.store.get_trajectory(traj_id).exit_status is not ExitStatus.RUNNING:
                    return False
            except NotFoundError:
                return False
        self.store.end_trajectory(traj_id, status, reward)
        return True

    def close_idle(self, idle_s: float) -> list[str]:
        now = time.monotonic()
        with self.lock:
            stale = [t for t, seen in self.open.items() if now - seen > idle_s]
        for traj_id in stale:
            self.close(traj_id)
        return stale

    def close_all(self) -> None:
        self.flush()
        for traj_id in list(self.open):
            self.close(traj_id)


# ---------------------------------------------------------------------------------- streaming

class StreamAccumulator:
    """Rebuilds the whole reply from chat-completion chunks (content, tool-call deltas by
    index, token ids, log-probs, usage)."""

    def __init__(self):
        self.content: list[str] = []
        self.calls: dict[int, dict[str, Any]] = {}
        self.prompt_ids: list[int] | None = None
        self.completion_ids: list[int] = []
        self.logprobs: list[float] = []
        self.usage: dict[str, Any] = {}
        self.model = ""
        self.saw_ids = False

    def add(self, chunk: dict[str, Any]) -> None:
        self.model = chunk.get("model") or self.model
        if isinstance(chunk.get("prompt_token_ids"), list):
            self.prompt_ids = chunk["prompt_token_ids"]
        if chunk.get("usage"):
            self.usage = chunk["usage"]
        for choice in chunk.get("choices") or []:
            if choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta") or {}
            if delta.get("content"):
                self.content.append(delta["content"])
            for call in delta.get("tool_calls") or []:
                slot = self.calls.setdefault(int(call.get("index", 0)), {
                    "id": None, "type": "function", "function": {"name": "", "arguments": ""}})
                slot["id"] = call.get("id") or slot["id"]
                fn = call.get("function") or {}
                slot["function"]["name"] += fn.get("name") or ""
                slot["function"]["arguments"] += fn.get("arguments") or ""
            if isinstance(choice.get("token_ids"), list):
                self.saw_ids = True
                self.completion_ids.extend(choice["token_ids"])
            for entry in ((choice.get("logprobs") or {}).get("content") or []):
                self.logprobs.append(float(entry["logprob"]))

    def reply(self) -> Message:
        message: Message = {"role": "assistant", "content": "".join(self.content)}
        if self.calls:
            message["tool_calls"] = [{**c, "id": c["id"] or f"call_{i}"} for i, c in sorted(self.calls.items())]
        return message


def _loads(raw: bytes | str) -> Any:
    """orjson on the request path (several times faster); json judges what orjson refuses
    (NaN, integers over 64 bits), so what parses is what json would parse."""
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return json.loads(raw)


def _dumps(value: Any) -> bytes:
    try:
        return orjson.dumps(value)
    except TypeError:  # non-str keys, integers over 64 bits
        return json.dumps(value, ensure_ascii=False).encode()


def _strip(payload: dict[str, Any], added: set[str]) -> dict[str, Any]:
    """Remove from a reply (or chunk) what only the proxy asked for."""
    if "return_token_ids" in added:
        payload.pop("prompt_token_ids", None)
        for choice in payload.get("choices") or []:
            choice.pop("token_ids", None)
    if "logprobs" in added:
        for choice in payload.get("choices") or []:
            choice["logprobs"] = None
    return payload


def _event(event: bytes, acc: StreamAccumulator, added: set[str]) -> tuple[bytes, bool]:
    """One server-sent event: fed to the accumulator, and rewritten without what only the
    proxy asked for (passed through as it came when nothing was added). (event, was [DONE])."""
    lines, done, changed = event.split(b"\n"), False, False
    for k, line in enumerate(lines):
        if not line.startswith(b"data:"):
            continue
        payload = line[5:].strip()
        if payload == b"[DONE]":
            done = True
            continue
        try:
            chunk = _loads(payload)
        except ValueError:
            continue
        if isinstance(chunk, dict):
            acc.add(chunk)
            if added:
                lines[k] = b"data: " + _dumps(_strip(chunk, added))
                changed = True
    return (b"\n".join(lines) if changed else event), done


def _usage(span: Any, exchange: Exchange) -> None:
    """GenAI usage attributes on the request's span (`--otel`)."""
    tokens = {"gen_ai.response.model": exchange.model,
              "gen_ai.usage.input_tokens": exchange.usage.get("prompt_tokens"),
              "gen_ai.usage.output_tokens": exchange.usage.get("completion_tokens")}
    for key, value in tokens.items():
        if value is not None:
            span.set_attribute(key, value)


def _reply_message(msg: dict[str, Any]) -> Message:
    message: Message = {"role": "assistant", "content": msg.get("content") or ""}
    if msg.get("tool_calls"):
        message["tool_calls"] = [{"id": c.get("id") or f"call_{i}", "type": "function",
                                  "function": c.get("function") or {}}
                                 for i, c in enumerate(msg["tool_calls"])]
    return message


# ---------------------------------------------------------------------------------- the app

def create_app(config: ProxyConfig, recorder: Recorder) -> Any:
    """The Starlette app: forwarding, recording, /close; an idle reaper while it runs."""
    import contextlib

    import httpx
    from starlette.applications import Starlette
    from starlette.concurrency import run_in_threadpool
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response, StreamingResponse
    from starlette.routing import Route

    base = config.base()
    limit = int(config.max_body_mb * 1024 * 1024)
    state: dict[str, Any] = {"token_ids": True}

    def error(status: int, message: str) -> JSONResponse:
        return JSONResponse({"error": {"message": message, "type": "agentrm_proxy", "code": status}},
                            status_code=status)

    def keys(request: Request) -> tuple[str, str, str]:
        """(trajectory, group, task) ids; the trajectory is "" when the client named none."""
        traj = request.path_params.get("traj") or request.headers.get(TRAJECTORY_HEADER) or ""
        group = request.path_params.get("group") or request.headers.get(GROUP_HEADER) or traj
        return traj, group, request.headers.get(TASK_HEADER) or group or "proxy"

    async def read_json(request: Request) -> dict[str, Any]:
        size = int(request.headers.get("content-length") or 0)
        if size > limit:
            raise _Reject(413, f"request body over {config.max_body_mb:g} MiB")
        body = b""
        async for part in request.stream():
            body += part
            if len(body) > limit:
                raise _Reject(413, f"request body over {config.max_body_mb:g} MiB")
        try:
            data = _loads(body or b"{}")
        except ValueError:
            raise _Reject(400, "the body is not JSON") from None
        if not isinstance(data, dict):
            raise _Reject(400, "the body is not a JSON object")
        return data

    def forward_headers(request: Request) -> dict[str, str]:
        auth = request.headers.get("authorization")
        return {"authorization": auth} if auth else {}

    async def completions(request: Request) -> Response:
        traj, group, task = keys(request)
        if not traj:
            return error(400, "name the trajectory: base URL /t/ID/v1 or header X-Agentrm-Trajectory")
        try:
            body = await read_json(request)
        except _Reject as exc:
            return error(exc.status, exc.message)
        messages = body.get("messages")
        if not isinstance(messages, list):
            return error(400, "`messages` must be a list")
        added = set()
        upstream_body = dict(body)
        if state["token_ids"] and not body.get("return_token_ids"):
            upstream_body["return_token_ids"] = True
            added.add("return_token_ids")
        if not body.get("logprobs"):
            upstream_body["logprobs"] = True
            added.add("logprobs")
        client: httpx.AsyncClient = request.app.state.client
        started, t0 = time.time(), time.monotonic()
        span = telemetry.tracer().start_span(f"chat {body.get('model') or 'model'}", attributes={
            "gen_ai.operation.name": "chat", "gen_ai.request.model": str(body.get("model") or ""),
            "agentrm.trajectory.id": traj, "agentrm.group.id": group, "agentrm.proxy.stream": bool(body.get("stream"))})
        if body.get("stream"):
            return await stream(request, client, upstream_body, added, messages, traj, group, task, started, t0,
                                span)
        try:
            return await complete(request, client, upstream_body, added, messages, traj, group, task,
                                  started, t0, span)
        finally:
            span.end()

    async def complete(request, client, upstream_body, added, messages, traj, group, task, started, t0, span):
        try:
            resp = await client.post(base + "/chat/completions", json=upstream_body,
                                     headers=forward_headers(request))
            if resp.status_code == 400 and "return_token_ids" in added and "return_token_ids" in resp.text:
                state["token_ids"] = False  # an upstream without the extension: ask once, then not
                upstream_body.pop("return_token_ids")
                added.discard("return_token_ids")
                resp = await client.post(base + "/chat/completions", json=upstream_body,
                                         headers=forward_headers(request))
        except httpx.HTTPError as exc:
            return error(502, f"upstream {base}: {type(exc).__name__}: {exc}")
        if resp.status_code >= 400:
            return Response(resp.content, status_code=resp.status_code,
                            media_type=resp.headers.get("content-type"))
        try:
            data = _loads(resp.content)
            choice = data["choices"][0]
            exchange = Exchange(
                messages=messages, reply=_reply_message(choice["message"]), model=data.get("model") or "",
                prompt_ids=data.get("prompt_token_ids"), completion_ids=choice.get("token_ids"),
                logprobs=[float(e["logprob"]) for e in ((choice.get("logprobs") or {}).get("content") or [])]
                or None, usage=data.get("usage") or {}, started_at=started,
                duration_s=time.monotonic() - t0)
        except (ValueError, KeyError, IndexError, TypeError):
            return error(502, f"upstream {base}: malformed completion")
        if not recorder.try_submit(traj, group, task, exchange):
            await run_in_threadpool(recorder.submit, traj, group, task, exchange)
        _usage(span, exchange)
        return Response(_dumps(_strip(data, added)), media_type="application/json")

    async def stream(request, client, upstream_body, added, messages, traj, group, task, started, t0, span):
        req = client.build_request("POST", base + "/chat/completions", json=upstream_body,
                                   headers=forward_headers(request))
        try:
            resp = await client.send(req, stream=True)
        except httpx.HTTPError as exc:
            span.end()
            return error(502, f"upstream {base}: {type(exc).__name__}: {exc}")
        if resp.status_code >= 400:
            content = await resp.aread()
            await resp.aclose()
            span.end()
            return Response(content, status_code=resp.status_code,
                            media_type=resp.headers.get("content-type"))
        acc = StreamAccumulator()

        async def relay():
            complete, buffer = False, b""
            try:
                async for raw in resp.aiter_raw():  # whole events out per read, not line by line
                    buffer += raw
                    *events, buffer = buffer.split(b"\n\n")
                    if not events:
                        continue
                    out = []
                    for event in events:
                        rewritten, done = _event(event, acc, added)
                        complete = complete or done
                        out.append(rewritten)
                    yield b"".join(e + b"\n\n" for e in out)
                if buffer:
                    yield buffer
            finally:
                await resp.aclose()
                if complete:
                    exchange = Exchange(
                        messages=messages, reply=acc.reply(), model=acc.model,
                        prompt_ids=acc.prompt_ids, completion_ids=acc.completion_ids if acc.saw_ids else None,
                        logprobs=acc.logprobs or None, usage=acc.usage, started_at=started,
                        duration_s=time.monotonic() - t0, streamed=True)
                    if not recorder.try_submit(traj, group, task, exchange):
                        await run_in_threadpool(recorder.submit, traj, group, task, exchange)
                    _usage(span, exchange)
                span.end()

        return StreamingResponse(relay(), media_type="text/event-stream")

    async def models(request: Request) -> Response:
        try:
            resp = await request.app.state.client.get(base + "/models", headers=forward_headers(request))
        except httpx.HTTPError as exc:
            return error(502, f"upstream {base}: {type(exc).__name__}: {exc}")
        return Response(resp.content, status_code=resp.status_code,
                        media_type=resp.headers.get("content-type"))

    async def close(request: Request) -> Response:
        traj, _, _ = keys(request)
        if not traj:
            return error(400, "name the trajectory: /t/ID/close or header X-Agentrm-Trajectory")
        try:
            body = await read_json(request)
            status = ExitStatus(body.get("status", "imported"))
            reward = body.get("reward")
            if reward is not None and not isinstance(reward, (int, float)):
                raise _Reject(400, "`reward` must be a number or null")
        except _Reject as exc:
            return error(exc.status, exc.message)
        except ValueError:
            return error(400, f"unknown status {body.get('status')!r}")
        closed = await run_in_threadpool(recorder.close, traj, status,
                                         None if reward is None else float(reward))
        if not closed:
            return error(404, f"no open trajectory {traj!r}")
        return JSONResponse({"trajectory_id": traj, "status": status.value, "reward": reward})

    @contextlib.asynccontextmanager
    async def lifespan(app):
        app.state.client = httpx.AsyncClient(timeout=httpx.Timeout(config.timeout, connect=10),
                                             limits=httpx.Limits(max_connections=256))

        async def reap():
            while True:
                await asyncio.sleep(max(1.0, min(30.0, config.idle_timeout / 4)))
                await run_in_threadpool(recorder.close_idle, config.idle_timeout)

        reaper = asyncio.create_task(reap())
        try:
            yield
        finally:
            reaper.cancel()
            await app.state.client.aclose()
            await run_in_threadpool(recorder.close_all)

    routes = []
    for prefix in ("/t/{traj}/g/{group}", "/t/{traj}", ""):
        routes += [Route(prefix + "/v1/chat/completions", completions, methods=["POST"]),
                   Route(prefix + "/chat/completions", completions, methods=["POST"]),
                   Route(prefix + "/v1/models", models, methods=["GET"])]
    for prefix in ("/t/{traj}/g/{group}", "/t/{traj}", ""):  # "": the trajectory header names it
        routes.append(Route(prefix + "/close", close, methods=["POST"]))
    return Starlette(routes=routes, lifespan=lifespan)


class _Reject(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


def start(store: Any, config: ProxyConfig) -> tuple[Recorder, Any]:
    """Begin the run and build the app: (recorder, app). Check the upstream first."""
    run_id = config.run_id or f"proxy-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:4]}"
    store.begin_run({"kind": "proxy", "upstream": config.base()}, run_id=run_id, kind="proxy")
    recorder = Recorder(store, run_id, config.base())
    return recorder, create_app(config, recorder)
