"""`--otel`: the span tree of a real group rollout and its scoring, captured with the
OpenTelemetry SDK's in-memory exporter: run → trajectory → turn → (chat, execute_tool), and a
span per scorer batch, with GenAI attribute names and the recorded times nested."""

from __future__ import annotations

import json
import uuid

import pytest

from agentrm import telemetry
from agentrm.rollout.policies.scripted import ScriptedPolicy
from agentrm.rollout.run import run
from agentrm.scoring import score_trajectories
from agentrm.testing import DirSandbox
from agentrm.traces import open_store
from agentrm.types import Task
from agentrm.verifiers.registry import make_scorer


@pytest.fixture(scope="module")
def spans():
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    telemetry.setup(exporter)
    return exporter


def test_rollout_and_scoring_span_tree(spans, tmp_path):
    spans.clear()
    script = tmp_path / "a.jsonl"
    script.write_text("".join(json.dumps(a) + "\n" for a in [
        {"tool": "bash", "args": {"command": "echo 3 > n.txt"}},
        {"tool": "bash", "args": {"command": "cat n.txt"}},
        {"tool": "submit", "args": {"answer": "3"}}]))
    store = open_store(f"sqlite:///{tmp_path / 'otel.db'}")
    summary = run([Task(id="otel-task", instruction="Write 3, then submit it.", answer="3")],
                  ScriptedPolicy.from_file(script), store, group_size=2, run_id="otel-run",
                  sandbox_factory=lambda cfg: DirSandbox(tmp_path / uuid.uuid4().hex))
    score_trajectories(summary.results, [make_scorer("answer")], store=store)
    finished = spans.get_finished_spans()
    by_id = {s.context.span_id: s for s in finished}

    def children(parent, name):
        return [s for s in finished if s.parent is not None and s.parent.span_id == parent.context.span_id
                and s.name.startswith(name)]

    (root,) = [s for s in finished if s.name == "agentrm.run"]
    assert root.attributes["agentrm.run.id"] == "otel-run"
    trajectories = children(root, "agentrm.trajectory")
    assert sorted(t.attributes["agentrm.trajectory.id"] for t in trajectories) == \
        sorted(t.id for t in summary.results)
    for traj in trajectories:
        assert traj.attributes["agentrm.exit_status"] == "submitted" and traj.attributes["agentrm.reward"] == 1.0
        turns = sorted(children(traj, "agentrm.turn"), key=lambda s: s.start_time)
        assert [t.attributes["agentrm.turn.index"] for t in turns] == [0, 1, 2]
        for turn in turns:
            (chat,) = children(turn, "chat ")
            assert chat.attributes["gen_ai.operation.name"] == "chat"
            (tool,) = children(turn, "execute_tool ")
            assert tool.attributes["gen_ai.tool.name"] in ("bash", "submit")
            for child in (chat, tool):  # times nest inside the turn, the turn inside the trajectory
                assert turn.start_time <= child.start_time <= child.end_time <= turn.end_time
            assert traj.start_time <= turn.start_time and turn.end_time <= traj.end_time
    (scored,) = [s for s in finished if s.name == "agentrm.score answer"]
    assert scored.attributes["agentrm.trajectories"] == 2
    assert all(s.parent is None or s.parent.span_id in by_id for s in finished)  # one connected forest
