"""The trace store contract (CONTRACTS.md), run against every backend: SQLite and PostgreSQL.

PostgreSQL tests each get a freshly created database, so they never collide with other people's
test runs on the same server.
"""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from agentrm import protocols
from agentrm.errors import NotFoundError
from agentrm.traces import open_store
from agentrm.types import (
    Advantage,
    ExitStatus,
    FailureKind,
    Score,
    ScoreLevel,
    Task,
    ToolResult,
    Trajectory,
    Turn,
)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store_url(request, tmp_path):
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'traces.db'}"
        return
    yield request.getfixturevalue("fresh_postgres_url")


@pytest.fixture
def store(store_url):
    s = open_store(store_url)
    yield s
    s.close()


def _turn(i: int, **kw) -> Turn:
    call = {"id": f"c{i}", "type": "function", "function": {"name": "bash", "arguments": '{"command": "ls"}'}}
    base = dict(index=i, observation=[{"role": "user", "content": f"obs {i} é✓"}],
                assistant={"role": "assistant", "content": f"act {i}", "tool_calls": [call]})
    base.update(kw)
    return Turn(**base)


def _traj(tid="t1", run_id=None, **kw) -> Trajectory:
    return Trajectory(id=tid, task_id=kw.pop("task_id", "task"), group_id=kw.pop("group_id", "g"),
                      run_id=run_id, **kw)


def test_the_store_is_every_part_of_the_protocol(store):
    # methods only at run time; scripts/typecheck (pyright) checks the signatures
    for part in (protocols.TurnSink, protocols.RunLog, protocols.TaskSource,
                 protocols.TraceReader, protocols.ScoreStore, protocols.TraceStore):
        assert isinstance(store, part), part.__name__


def test_open_migrates_and_reopens(store_url):
    from agentrm.traces.schema import HEAD_REVISION
    with open_store(store_url) as s:
        tables = set(sa.inspect(s.engine).get_table_names())
        with s.engine.connect() as conn:
            rev = conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar()
    assert {"runs", "tasks", "trajectories", "turns", "scores", "advantages"} <= tables
    assert rev == HEAD_REVISION
    with open_store(store_url) as s:  # second open: already at head, nothing to do
        assert s.list_runs() == []


def test_runs_are_idempotent_and_end(store):
    rid = store.begin_run({"policy": "scripted", "n": 3}, run_id="r1")
    assert store.begin_run({"other": 1}, run_id="r1") == "r1"
    run = store.get_run("r1")
    assert run["config"] == {"policy": "scripted", "n": 3} and run["status"] == "running"
    store.end_run(rid, status="finished")
    assert store.get_run("r1")["status"] == "finished" and store.get_run("r1")["ended_at"]
    generated = store.begin_run({}, kind="eval")
    assert generated.startswith("eval-") and len(store.list_runs()) == 2
    with pytest.raises(NotFoundError):
        store.end_run("nope")


def test_tasks_round_trip(store):
    task = Task(id="t", instruction="count", image="img:1", setup=["echo hi"], answer="42",
                verifier={"kind": "answer"}, network=True, metadata={"k": [1, 2]})
    store.upsert_task(task)
    store.upsert_task(task)
    assert store.get_task("t") == task
    with pytest.raises(NotFoundError):
        store.get_task("missing")


def test_full_trajectory_round_trip(store):
    store.begin_run({}, run_id="r")
    traj = _traj("x", run_id="r", policy="scripted:a", answer="42", metadata={"seed": 7})
    store.begin_trajectory(traj)
    t0 = _turn(0, tool_results=[ToolResult("c0", "out\x00put", 0, False, True, 0.25,
                                           [(0.0, "out"), (0.2, "put")])],
               prompt_tokens=10, completion_tokens=3, logprobs=[-0.5, -0.25, 0.0],
               started_at=1000.5, duration_s=1.5, metadata={"note": "first"})
    t1 = _turn(1, valid=False)
    store.append_turn("x", t0)
    store.append_turn("x", t1)
    store.set_tail("x", [{"role": "tool", "tool_call_id": "c1", "content": "done"}])
    store.end_trajectory("x", ExitStatus.SUBMITTED, reward=1.0)
    got = store.get_trajectory("x")
    assert got.turns[0].tool_results == t0.tool_results
    assert got.turns[0].anchor_key and got.turns[1].valid is False
    for field in ("observation", "assistant", "prompt_tokens", "completion_tokens", "logprobs",
                  "started_at", "duration_s", "metadata"):
        assert getattr(got.turns[0], field) == getattr(t0, field), field
    assert got.tail == [{"role": "tool", "tool_call_id": "c1", "content": "done"}]
    assert (got.exit_status, got.reward, got.policy, got.answer, got.run_id, got.metadata) == (
        ExitStatus.SUBMITTED, 1.0, "scripted:a", "42", "r", {"seed": 7})
    assert store.summaries()[0]["n_turns"] == 2


def test_append_turn_is_idempotent_and_commits(store, store_url):
    store.begin_trajectory(_traj("x"))
    store.append_turn("x", _turn(0))
    store.append_turn("x", _turn(0, assistant={"role": "assistant", "content": "again"}))
    store.append_turn("x", _turn(1))
    with open_store(store_url) as other:  # a second connection sees the committed turns at once
        got = other.get_trajectory("x")
    assert [t.index for t in got.turns] == [0, 1]
    assert got.turns[0].assistant == {"role": "assistant", "content": "again"}
    store.begin_trajectory(_traj("x"))  # idempotent: turns survive
    assert len(store.get_trajectory("x").turns) == 2


def test_update_trajectory_sets_only_the_given_fields(store):
    store.begin_trajectory(_traj("x", policy="p", answer="42", metadata={"seed": 7}))
    store.append_turn("x", _turn(0))
    store.end_trajectory("x", ExitStatus.SUBMITTED, reward=0.5)
    store.update_trajectory("x", metadata={"seed": 7, "verdict": "ok"}, group_id="g2")
    got = store.get_trajectory("x")
    assert (got.metadata, got.group_id, got.policy, got.answer) == (
        {"seed": 7, "verdict": "ok"}, "g2", "p", "42")
    assert (got.exit_status, got.reward, len(got.turns)) == (ExitStatus.SUBMITTED, 0.5, 1)
    assert [r["id"] for r in store.summaries(group_id="g2")] == ["x"]
    store.update_trajectory("x", tail=[{"role": "tool", "content": "t"}], metadata={})
    got = store.get_trajectory("x")
    assert got.tail == [{"role": "tool", "content": "t"}] and got.metadata == {}
    with pytest.raises(TypeError):  # outcome fields change only through end_trajectory
        store.update_trajectory("x", reward=1.0)
    with pytest.raises(NotFoundError):
        store.update_trajectory("ghost", metadata={"a": 1})


def test_unknown_ids_raise_not_found(store):
    with pytest.raises(NotFoundError):
        store.append_turn("ghost", _turn(0))
    with pytest.raises(NotFoundError):
        store.get_trajectory("ghost")
    with pytest.raises(NotFoundError):
        store.end_trajectory("ghost", ExitStatus.CRASHED)
    with pytest.raises(NotFoundError):
        store.write_scores([Score("s", "ghost", 1.0, turn_index=0)])


def test_failure_kind_and_resume_set(store):
    store.begin_run({}, run_id="r")
    for tid, status in [("a", ExitStatus.SUBMITTED), ("b", ExitStatus.SANDBOX_ERROR),
                        ("c", ExitStatus.FORMAT_ERROR), ("d", None)]:
        store.begin_trajectory(_traj(tid, run_id="r"))
        if status:
            store.end_trajectory(tid, status)
    assert store.finished_trajectory_ids("r") == {"a", "b", "c"}
    kinds = {r["id"]: r["failure_kind"] for r in store.summaries(run_id="r")}
    assert kinds == {"a": None, "b": FailureKind.INFRASTRUCTURE.value, "c": FailureKind.MODEL.value, "d": None}
    assert store.get_trajectory("b").reward is None  # infrastructure failure is not a zero


def test_iter_filters_order_and_paging(store):
    trajs = [_traj(f"t{i:03d}", task_id=f"task{i % 3}", group_id=f"g{i % 5}",
                   turns=[_turn(0)], exit_status=ExitStatus.SUBMITTED if i % 2 else ExitStatus.IMPORTED)
             for i in range(230)]
    assert store.import_trajectories(trajs, run_id="imp") == 230
    assert [t.id for t in store.iter_trajectories()] == [t.id for t in trajs]
    assert [t.id for t in store.iter_trajectories(task_id="task1", group_id="g2")] == [
        t.id for t in trajs if t.task_id == "task1" and t.group_id == "g2"]
    sub = [t.id for t in store.iter_trajectories(exit_status="submitted", run_id="imp")]
    assert sub == [t.id for t in trajs if t.exit_status is ExitStatus.SUBMITTED]
    wanted = [f"t{i:03d}" for i in range(0, 230, 7)] + ["missing"]
    assert {t.id for t in store.iter_trajectories(ids=wanted)} == set(wanted) - {"missing"}
    assert all(len(t.turns) == 1 for t in store.iter_trajectories(ids=wanted))


def test_scores_upsert_without_duplicates(store):
    store.begin_trajectory(_traj("x", turns=[_turn(0), _turn(1)]))
    first = [Score("prm", "x", 0.5, turn_index=0, config_hash="h1"),
             Score("prm", "x", None, turn_index=1, config_hash="h1"),  # abstained
             Score("prm", "x", 0.9, level=ScoreLevel.TRAJECTORY, config_hash="h1")]
    assert store.write_scores(first) == 3
    assert store.write_scores([Score("prm", "x", 0.7, turn_index=0, config_hash="h1", details={"p": 1}),
                               Score("prm", "x", 0.1, level=ScoreLevel.TRAJECTORY, config_hash="h1")]) == 2
    store.write_scores([Score("prm", "x", 0.3, turn_index=0, config_hash="h2"),
                        Score("judge", "x", 1.0, level=ScoreLevel.TRAJECTORY)])
    got = {(s.scorer, s.config_hash, s.level, s.turn_index): (s.value, s.details) for s in store.get_scores()}
    assert got == {("prm", "h1", ScoreLevel.TURN, 0): (0.7, {"p": 1}),
                   ("prm", "h1", ScoreLevel.TURN, 1): (None, {}),
                   ("prm", "h1", ScoreLevel.TRAJECTORY, None): (0.1, {}),
                   ("prm", "h2", ScoreLevel.TURN, 0): (0.3, {}),
                   ("judge", "", ScoreLevel.TRAJECTORY, None): (1.0, {})}
    assert {s.scorer for s in store.get_scores(scorer="judge")} == {"judge"}
    assert store.get_scores(trajectory_ids=["other"]) == []
    with pytest.raises(ValueError):
        store.write_scores([Score("prm", "x", 0.1)])  # turn level needs a turn index


def test_advantages_upsert(store):
    store.begin_trajectory(_traj("x", turns=[_turn(0), _turn(1)]))
    store.write_advantages([Advantage("gigpo", "x", 0, 0.5, "c"), Advantage("gigpo", "x", 1, -0.5, "c")])
    store.write_advantages([Advantage("gigpo", "x", 0, 0.25, "c", {"episode": 0.2, "step": 0.05})])
    got = sorted((a.turn_index, a.value, a.details) for a in store.get_advantages(estimator="gigpo"))
    assert got == [(0, 0.25, {"episode": 0.2, "step": 0.05}), (1, -0.5, {})]


def test_bulk_import_is_all_or_nothing(store):
    def reader():
        yield _traj("ok", turns=[_turn(0)])
        raise ValueError("line 2 is bad")
    with pytest.raises(ValueError):
        store.import_trajectories(reader(), run_id="imp")
    assert list(store.iter_trajectories()) == [] and store.list_runs() == []


def test_reimport_replaces_turns_and_keeps_scores(store):
    store.import_trajectories([_traj("x", turns=[_turn(0), _turn(1), _turn(2)])], run_id="a")
    store.write_scores([Score("prm", "x", 0.5, turn_index=0)])
    store.import_trajectories([_traj("x", turns=[_turn(0)], reward=1.0)], run_id="b")
    got = store.get_trajectory("x")
    assert len(got.turns) == 1 and got.reward == 1.0 and got.run_id == "b"
    assert store.summaries()[0]["n_turns"] == 1 and len(store.get_scores()) == 1


def test_reset_trajectory_for_restart_from_scratch(store):
    store.begin_trajectory(_traj("x"))
    for i in range(3):
        store.append_turn("x", _turn(i))
    store.write_scores([Score("prm", "x", 0.5, turn_index=0)])
    store.reset_trajectory("x")
    got = store.get_trajectory("x")
    assert got.turns == [] and got.exit_status is ExitStatus.RUNNING and store.get_scores() == []


def test_summary_score_filters(store):
    rewards = [0.0, 0.25, 0.5, 1.0, None]
    store.import_trajectories([_traj(f"t{i}", turns=[_turn(0), _turn(1)], reward=r)
                               for i, r in enumerate(rewards)])
    turn_scores = {"t0": [0.9, 0.2], "t1": [0.6, 0.8], "t2": [0.4, None]}
    scores = [Score("prm", t, v, turn_index=i) for t, vs in turn_scores.items() for i, v in enumerate(vs)]
    scores.append(Score("prm", "t3", 0.95, level=ScoreLevel.TRAJECTORY))
    scores.append(Score("prm", "t3", 0.1, turn_index=0))
    store.write_scores(scores)
    # independent: trajectory-level score wins, else min over non-abstaining turn scores
    expected = {"t0": 0.2, "t1": 0.6, "t2": 0.4, "t3": 0.95, "t4": None}
    rows = store.summaries(scorer="prm")
    assert {r["id"]: r["score"] for r in rows} == expected
    ids = [r["id"] for r in store.summaries(scorer="prm", min_score=0.3, max_score=0.9)]
    assert ids == [k for k, v in expected.items() if v is not None and 0.3 <= v <= 0.9]
    by_reward = [r["id"] for r in store.summaries(min_score=0.25)]
    assert by_reward == [f"t{i}" for i, r in enumerate(rewards) if r is not None and r >= 0.25]
    assert [r["id"] for r in store.summaries(limit=2)] == ["t0", "t1"]


def test_migration_matches_declared_schema(store):
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from agentrm.traces.schema import metadata
    with store.engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), metadata) == []


def test_export_round_trip_is_byte_identical(store, store_url, tmp_path):
    from pathlib import Path

    from agentrm.traces.io import read_trajectories, write_jsonl
    data = Path(__file__).resolve().parents[1] / "data" / "traces"
    first, second = tmp_path / "1.jsonl", tmp_path / "2.jsonl"
    store.import_trajectories(read_trajectories(data / "good.jsonl"), run_id="a")
    store.import_trajectories(read_trajectories(data / "sample.atif.json"), run_id="a")
    atif = store.get_trajectory("atif-traj-7")
    assert atif.turns[0].logprobs == [-0.1, -0.5, -0.02] and atif.turns[0].prompt_tokens == 120
    write_jsonl(store.iter_trajectories(), first)
    store.import_trajectories(read_trajectories(first), run_id="b")  # re-import over itself
    write_jsonl(store.iter_trajectories(), second)
    assert first.read_bytes() == second.read_bytes() and first.read_bytes().count(b"\n") == 4
