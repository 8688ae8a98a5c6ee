"""The proxy's recorder on a real store (SQLite and PostgreSQL): turns queued by many requests
are written in one transaction per batch, retries stay one turn, a restarted proxy carries on a
stored trajectory, and one bad exchange in a batch does not lose the others."""

from __future__ import annotations

import time

import pytest
import sqlalchemy as sa

from agentrm.errors import NotFoundError
from agentrm.proxy import Exchange, Recorder
from agentrm.traces import open_store

SYSTEM = {"role": "system", "content": "You are an agent."}


@pytest.fixture(params=["sqlite", "postgres"])
def store(request, tmp_path):
    url = (f"sqlite:///{tmp_path / 'rec.db'}" if request.param == "sqlite"
           else request.getfixturevalue("fresh_postgres_url"))
    store = open_store(url)
    store.begin_run({"kind": "proxy"}, run_id="px", kind="proxy")
    yield store
    store.close()


def exchange(step: int, reply: str = "ok") -> Exchange:
    """Request `step` of a conversation: the system message, then `step` user/assistant pairs."""
    messages = [SYSTEM]
    for k in range(step):
        messages += [{"role": "user", "content": f"q{k}"}, {"role": "assistant", "content": f"a{k}"}]
    messages.append({"role": "user", "content": f"q{step}"})
    return Exchange(messages=messages, reply={"role": "assistant", "content": reply}, model="m",
                    prompt_ids=[1, 2, 3 + step], completion_ids=[7, 8], logprobs=[-0.1, -0.2],
                    started_at=time.time(), duration_s=0.01)


def write_commits(store) -> list[int]:
    """Counts commits of transactions that wrote something (reads commit too)."""
    count, wrote = [0], set()

    def execute(conn, cursor, statement, *args):
        if statement.lstrip().upper().startswith(("INSERT", "UPDATE", "DELETE")):
            wrote.add(id(conn))

    def commit(conn):
        if id(conn) in wrote:
            count[0] += 1
            wrote.discard(id(conn))
    sa.event.listen(store.engine, "before_cursor_execute", execute)
    sa.event.listen(store.engine, "commit", commit)
    return count


def test_a_batch_is_one_transaction_with_retries_recorded_once(store):
    recorder = Recorder(store, "px", "http://up/v1")
    batch = []
    for traj in ("a", "b", "c"):
        for step in range(4):
            batch.append((traj, "g", "task", exchange(step)))
    batch.append(("b", "g", "task", exchange(2, reply="a retry")))  # same request as b's turn 2
    counted = write_commits(store)
    turns = recorder.record_batch(batch)
    assert counted[0] == 1, "a batch is one write transaction"
    assert [t.index for t in turns] == [0, 1, 2, 3] * 3 + [2]
    for traj in ("a", "b", "c"):
        stored = store.get_trajectory(traj)
        assert [t.index for t in stored.turns] == [0, 1, 2, 3]
        assert stored.run_id == "px" and stored.task_id == "task"
        assert stored.turns[1].tokens.completion_ids == [7, 8]
    assert store.get_trajectory("b").turns[2].assistant["content"] == "a retry"  # the last answer
    rows = store.read(lambda c: dict(c.execute(sa.text("SELECT id, n_turns FROM trajectories")).all()))
    assert rows == {"a": 4, "b": 4, "c": 4}


def test_a_restarted_proxy_carries_on_a_stored_trajectory(store):
    first = Recorder(store, "px", "http://up/v1")
    first.record_batch([("t", "t", "task", exchange(0)), ("t", "t", "task", exchange(1))])
    again = Recorder(store, "px", "http://up/v1")  # a new process: knows nothing in memory
    turns = again.record_batch([("t", "t", "task", exchange(1)),  # a client's retry
                                ("t", "t", "task", exchange(2))])
    assert [t.index for t in turns] == [1, 2]
    assert [t.index for t in store.get_trajectory("t").turns] == [0, 1, 2]


def test_one_bad_exchange_does_not_lose_the_rest_of_its_batch(store):
    recorder = Recorder(store, "px", "http://up/v1")
    bad = exchange(0)
    bad.reply = None  # type: ignore[assignment] - cannot be made into a turn
    for item in [("x", "x", "task", exchange(0)), ("y", "y", "task", bad),
                 ("x", "x", "task", exchange(1))]:
        assert recorder.try_submit(*item)
    recorder.flush()
    assert [t.index for t in store.get_trajectory("x").turns] == [0, 1]
    with pytest.raises(NotFoundError):
        store.get_trajectory("y")
    assert recorder.close("x")


def test_queued_turns_all_land_and_close_flushes_them(store):
    recorder = Recorder(store, "px", "http://up/v1")
    for traj in range(5):
        for step in range(10):
            assert recorder.try_submit(f"q{traj}", "g", "task", exchange(step))
    for traj in range(5):
        assert recorder.close(f"q{traj}")  # waits for the writer first
        stored = store.get_trajectory(f"q{traj}")
        assert len(stored.turns) == 10 and stored.exit_status.value == "imported"


def test_the_queue_is_bounded_while_the_store_is_busy(tmp_path):
    """A store that cannot take writes (another process holds SQLite's write lock) slows clients
    down instead of filling memory: a full queue refuses more turns, and once the store is free
    again everything queued lands."""
    import sqlite3
    import threading

    path = tmp_path / "busy.db"
    store = open_store(f"sqlite:///{path}")
    store.begin_run({"kind": "proxy"}, run_id="px", kind="proxy")
    recorder = Recorder(store, "px", "http://up/v1", queue_size=3)
    blocker = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    blocker.execute("BEGIN IMMEDIATE")  # the writer now waits for the lock (busy timeout)
    try:
        assert recorder.try_submit("b", "b", "task", exchange(0))
        deadline = time.monotonic() + 60
        while recorder.pending and time.monotonic() < deadline:  # the writer took it and waits
            time.sleep(0.01)
        accepted = [recorder.try_submit("b", "b", "task", exchange(step)) for step in range(1, 12)]
        assert accepted == [True] * 3 + [False] * 8  # the queue holds 3 while the store is busy
        late = threading.Thread(target=recorder.submit, args=("b", "b", "task", exchange(4)))
        late.start()  # blocks: the queue is full
        late.join(timeout=1.0)
        assert late.is_alive()
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    late.join(timeout=120)
    assert not late.is_alive()
    recorder.flush()
    indices = [t.index for t in store.get_trajectory("b").turns]
    assert indices == [0, 1, 2, 3, 4]  # nothing lost, nothing twice
    store.close()
