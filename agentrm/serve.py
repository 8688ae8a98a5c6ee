"""A reward server for training loops on other machines.

POST /score       {"trajectories": [interchange records], "advantages": {"estimator": ...}?}
                  → {"trajectories": [{"id", "turn_scores": {scorer: [per turn]},
                     "trajectory_scores": {scorer: value}, "advantages": [per turn]}]}
POST /get_reward  OpenRLHF's remote reward-model shape: {"query": [...], "prompts": [...],
                  "labels": [...]} → {"rewards": [...], "scores": [...], "extra_logs": {...}}
GET  /health      {"status": "ok", "scorers": [...]}

Scorers load once when the server starts and are shared by requests (one at a time: most
models are not thread-safe). Abstentions and infrastructure failures come back as null, never 0.
Binds to 127.0.0.1 unless told otherwise.
"""

from __future__ import annotations

import json
import logging
import math
import threading
from collections.abc import Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from agentrm.errors import AgentrmError, InputError
from agentrm.types import Score, ScoreLevel, Trajectory

log = logging.getLogger("agentrm.serve")
MAX_BODY = 64 << 20


class RewardService:
    def __init__(self, scorer_specs: Sequence[dict[str, Any]], advantage: dict[str, Any] | None = None,
                 reward_from: str | None = None):
        from agentrm.verifiers.registry import make_scorer

        if not scorer_specs:
            raise InputError("the reward server needs at least one --scorer")
        self.scorers = [make_scorer(s["name"], **s.get("options", {})) for s in scorer_specs]
        self.advantage = advantage
        self.reward_from = reward_from or self.scorers[0].name
        self._lock = threading.Lock()

    def _score(self, trajectories: list[Trajectory]) -> list[Score]:
        from agentrm.scoring import score_trajectories

        with self._lock:
            return score_trajectories(trajectories, self.scorers)

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


class _Handler(BaseHTTPRequestHandler):
    service: RewardService  # set on the subclass made by make_server

    def log_message(self, fmt, *args):  # route http.server's stderr chatter to logging
        log.info("%s " + fmt, self.address_string(), *args)

    def _send(self, status: int, payload: dict[str, Any]) -> None:
        data = json.dumps(payload, allow_nan=False).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):  # noqa: N802 - http.server's naming
        if self.path.rstrip("/") == "/health":
            self._send(200, {"status": "ok", "scorers": [s.name for s in self.service.scorers]})
        else:
            self._send(404, {"error": f"no route GET {self.path}"})

    def do_POST(self):  # noqa: N802
        routes = {"/score": self.service.score_records, "/get_reward": self.service.openrlhf}
        route = routes.get(self.path.rstrip("/"))
        if route is None:
            return self._send(404, {"error": f"no route POST {self.path}"})
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            return self._send(413, {"error": f"body over {MAX_BODY} bytes"})
        try:
            body = json.loads(self.rfile.read(length) or b"{}")
            if not isinstance(body, dict):
                raise InputError("the body must be a JSON object")
            self._send(200, route(body))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            self._send(400, {"error": f"malformed JSON: {exc}"})
        except AgentrmError as exc:
            self._send(400 if isinstance(exc, InputError) else 500, {"error": str(exc)})
        except Exception as exc:  # noqa: BLE001 - one bad request must not kill the server
            log.exception("request failed")
            self._send(500, {"error": f"{type(exc).__name__}: {exc}"})


def make_server(service: RewardService, host: str = "127.0.0.1", port: int = 8000) -> ThreadingHTTPServer:
    handler = type("RewardHandler", (_Handler,), {"service": service})
    return ThreadingHTTPServer((host, port), handler)
