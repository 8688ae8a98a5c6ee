"""A reward server for training loops on other machines.

POST /score       {"trajectories": [interchange records], "advantages": {"estimator": ...}?}
                  → {"trajectories": [{"id", "turn_scores": {scorer: [per turn]},
                     "trajectory_scores": {scorer: value}, "advantages": [per turn]}]}
POST /get_reward  OpenRLHF's remote reward-model shape: {"query": [...], "prompts": [...],
                  "labels": [...]} → {"rewards": [...], "scores": [...], "extra_logs": {...}}
GET  /health      {"status": "ok", "scorers": [...]}

Scorers load once when the server starts and are shared by requests (one at a time: most
models are not thread-safe). Abstentions and infrastructure failures come back as null, never 0.

One client must not stall the others: every connection has a deadline for its headers and one
for its body (a watchdog closes it when they pass), bodies are capped (413 from the header, before
reading), at most `max_concurrency` requests are handled at once and further ones get 503 with
Retry-After rather than a reset, the listen backlog is 128, and a SIGTERM drains the requests in
flight. Binds to 127.0.0.1; any other address needs a bearer token.
"""

from __future__ import annotations

import json
import logging
import math
import os
import subprocess
import sys
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from agentrm.errors import AgentrmError, InputError
from agentrm.types import Score, ScoreLevel, Trajectory

log = logging.getLogger("agentrm.serve")
MAX_BODY = 64 << 20


@dataclass
class ServerLimits:
    """What one client may take from the others."""

    max_body: int = MAX_BODY  # bytes; larger bodies get 413 without being read
    max_concurrency: int = 16  # requests handled at once; more get 503
    max_connections: int = 256  # open connections (incl. those still sending); more get 503
    header_timeout: float = 10.0  # seconds to send the request line and headers
    body_timeout: float = 120.0  # seconds to send the whole body
    busy_timeout: float = 30.0  # seconds a request may wait for the scorers before a 503
    backlog: int = 128  # listen queue
    large_body: int = 4 << 20  # bodies over this are parsed and scored in a second process; 0: never


class Busy(Exception):
    """The scorers stayed busy longer than the request may wait."""


class RewardService:
    def __init__(self, scorer_specs: Sequence[dict[str, Any]], advantage: dict[str, Any] | None = None,
                 reward_from: str | None = None):
        from agentrm.verifiers.registry import make_scorer

        if not scorer_specs:
            raise InputError("the reward server needs at least one --scorer")
        self.scorers = [make_scorer(s["name"], **s.get("options", {})) for s in scorer_specs]
        self.advantage = advantage
        self.reward_from = reward_from or self.scorers[0].name
        self.busy_timeout = ServerLimits.busy_timeout
        self.arguments = [list(scorer_specs), advantage, reward_from]  # to build a twin elsewhere
        self._lock = threading.Lock()

    def respond(self, route: str, body: bytes) -> tuple[int, dict[str, Any]]:
        """(HTTP status, JSON payload) for a POST to `route` with `body`; never raises."""
        handler = {"/score": self.score_records, "/get_reward": self.openrlhf}.get(route)
        if handler is None:
            return 404, {"error": f"no route POST {route}"}
        try:
            payload = json.loads(body or b"{}")
            if not isinstance(payload, dict):
                raise InputError("the body must be a JSON object")
            return 200, handler(payload)
        except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
            return 400, {"error": f"malformed JSON: {exc}"}
        except Busy as exc:
            return 503, {"error": str(exc)}
        except AgentrmError as exc:
            return (400 if isinstance(exc, InputError) else 500), {"error": str(exc)}
        except Exception as exc:  # noqa: BLE001 - one bad request must not kill the server
            log.exception("request failed")
            return 500, {"error": f"{type(exc).__name__}: {exc}"}

    def _score(self, trajectories: list[Trajectory]) -> list[Score]:
        from agentrm.scoring import score_trajectories

        if not self._lock.acquire(timeout=self.busy_timeout):
            raise Busy(f"scorers busy for over {self.busy_timeout:g}s")
        try:
            return score_trajectories(trajectories, self.scorers)
        finally:
            self._lock.release()

    def score_records(self, body: dict[str, Any]) -> dict[str, Any]:
        from agentrm.traces.io import trajectory_from_record

        records = body.get("trajectories")
        if not isinstance(records, list):
            raise InputError('body needs "trajectories": a list of trajectory records')
        trajectories = []
        for i, record in enumerate(records):
            try:
                trajectories.append(trajectory_from_record(record))
            except AgentrmError as exc:
                raise InputError(f"trajectories[{i}]: {exc}") from exc
        scores = self._score(trajectories)
        advantages = self._advantages(trajectories, scores, body.get("advantages") or self.advantage)
        return {"trajectories": [self._view(t, scores, advantages) for t in trajectories]}

    def _advantages(self, trajectories, scores, spec) -> dict[str, list[float | None]]:
        if not spec:
            return {}
        from agentrm.advantages import AdvantageConfig
        from agentrm.advantages.trajectories import turn_advantages

        spec = dict(spec)
        reward_from = spec.pop("reward_from", self.reward_from)
        per_turn, _ = turn_advantages(trajectories, scores, AdvantageConfig(**spec),
                                      reward_from=reward_from)
        return {tid: [_finite(v) for v in values.tolist()] for tid, values in per_turn.items()}

    @staticmethod
    def _view(traj: Trajectory, scores: list[Score], advantages) -> dict[str, Any]:
        turn_scores: dict[str, list[float | None]] = {}
        traj_scores: dict[str, float | None] = {}
        for s in scores:
            if s.trajectory_id != traj.id:
                continue
            if s.level is ScoreLevel.TRAJECTORY:
                traj_scores[s.scorer] = s.value
            else:
                row = turn_scores.setdefault(s.scorer, [None] * len(traj.turns))
                if s.turn_index is not None and 0 <= s.turn_index < len(row):
                    row[s.turn_index] = s.value
        out = {"id": traj.id, "turn_scores": turn_scores, "trajectory_scores": traj_scores}
        if traj.id in advantages:
            out["advantages"] = advantages[traj.id]
        return out

    def openrlhf(self, body: dict[str, Any]) -> dict[str, Any]:
        """Each query is prompt + response text; the label is the ground-truth answer."""
        queries = body.get("query")
        if not isinstance(queries, list) or not all(isinstance(q, str) for q in queries):
            raise InputError('body needs "query": a list of strings')
        prompts = body.get("prompts") or [""] * len(queries)
        labels = body.get("labels") or [None] * len(queries)
        if len(prompts) != len(queries) or len(labels) != len(queries):
            raise InputError('"prompts" and "labels" must be as long as "query"')
        trajectories = [_single_turn(f"q{i}", q, p, lbl)
                        for i, (q, p, lbl) in enumerate(zip(queries, prompts, labels, strict=True))]
        scores = self._score(trajectories)
        by_scorer: dict[str, dict[str, float | None]] = {}
        for s in scores:
            if s.level is ScoreLevel.TRAJECTORY:
                by_scorer.setdefault(s.scorer, {})[s.trajectory_id] = s.value
        main = by_scorer.get(self.reward_from, {})
        rewards = [main.get(t.id) for t in trajectories]
        return {"rewards": rewards,
                "scores": [None if r is None else min(1.0, max(0.0, r)) for r in rewards],
                "extra_logs": {name: [vals.get(t.id) for t in trajectories]
                               for name, vals in by_scorer.items()}}


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


def _single_turn(tid: str, query: str, prompt: str, label: Any) -> Trajectory:
    from agentrm.types import Turn

    response = query[len(prompt):] if prompt and query.startswith(prompt) else query
    turn = Turn(0, [{"role": "user", "content": prompt}], {"role": "assistant", "content": response})
    return Trajectory(tid, tid, tid, turns=[turn], answer=None if label is None else str(label))


def encode(payload: dict[str, Any]) -> bytes:
    try:
        return json.dumps(payload, allow_nan=False).encode()
    except ValueError as exc:
        return json.dumps({"error": f"response not JSON-encodable: {exc}"}).encode()


class LargeLane:
    """A second process with its own copy of the scorers for large bodies. Parsing 50 MiB of
    JSON holds the interpreter lock for a third of a second; in this process that would stall
    every small request in flight, over there it stalls nobody. One large body at a time."""

    def __init__(self, service: RewardService, busy_timeout: float):
        self.busy_timeout = busy_timeout
        self._arguments = json.dumps(service.arguments)
        self._lock = threading.Lock()
        self._proc: subprocess.Popen | None = None
        self._start()

    def _start(self) -> None:
        to_child, from_parent = os.pipe()
        to_parent, from_child = os.pipe()
        self._proc = subprocess.Popen(
            [sys.executable, "-c", "from agentrm.serve import _worker; _worker()", self._arguments,
             str(to_child), str(from_child)], pass_fds=(to_child, from_child), stdin=subprocess.DEVNULL)
        os.close(to_child)
        os.close(from_child)
        self._out, self._in = from_parent, os.fdopen(to_parent, "rb")

    def respond(self, route: str, chunks: list[bytes], length: int) -> tuple[int, bytes]:
        if not self._lock.acquire(timeout=self.busy_timeout):
            return 503, encode({"error": f"a large body is being scored; waited {self.busy_timeout:g}s"})
        try:
            if self._proc is None or self._proc.poll() is not None:
                self._start()
            _write_all(self._out, f"{length} {route}\n".encode())
            for chunk in chunks:
                _write_all(self._out, chunk)
            status, size = self._in.readline().split()
            return int(status), self._in.read(int(size))
        except (OSError, ValueError) as exc:
            log.error("large-body worker failed: %s", exc)
            self.close()
            return 500, encode({"error": "the large-body worker failed; retry"})
        finally:
            self._lock.release()

    def close(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        for close in (lambda: os.close(self._out), self._in.close):
            try:
                close()
            except OSError:
                pass
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]  # blocks without the interpreter lock


def _worker() -> None:
    """The large lane's process: requests framed as "LENGTH ROUTE\\n" + body on one pipe,
    answers as "STATUS SIZE\\n" + JSON on the other. Ends when its parent closes the pipe."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent drains and then closes the pipe
    arguments, inp, out = json.loads(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    sys.stdout = sys.stderr  # nothing a library prints may reach the answer pipe
    service = RewardService(*arguments)
    service.busy_timeout = -1  # one request at a time comes through the pipe: never busy
    with os.fdopen(inp, "rb") as reader, os.fdopen(out, "wb") as writer:
        while header := reader.readline():
            length, route = header.decode().split(" ", 1)
            status, payload = service.respond(route.strip(), reader.read(int(length)))
            data = encode(payload)
            writer.write(f"{status} {len(data)}\n".encode() + data)
            writer.flush()


def make_server(service: RewardService, host: str = "127.0.0.1", port: int = 8000,
                token: str | None = None, limits: ServerLimits | None = None):
    """Bind the reward server (agentrm.serve_http). Refuses a non-loopback address without a token."""
    from agentrm.serve_http import bind

    limits = limits or ServerLimits()
    service.busy_timeout = limits.busy_timeout
    lane = LargeLane(service, limits.busy_timeout) if limits.large_body > 0 else None
    try:
        return bind(service, host, port, token, limits, lane)
    except BaseException:
        if lane is not None:
            lane.close()
        raise
