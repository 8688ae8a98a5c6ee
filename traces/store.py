"""SQLStore: the trace store on SQLAlchemy Core (SQLite by default, PostgreSQL by URL).

Every public write is one short transaction that is committed before the call returns, so a
process killed at any point leaves each completed turn in place. Writes are upserts on natural
keys, so a rerun after a crash never duplicates rows. On SQLite each write transaction takes the
write lock up front and is retried on lock contention (see engine.py).
"""

from __future__ import annotations

import functools
import logging
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc
from sqlalchemy.exc import IntegrityError

from agentrm.errors import InputError, NotFoundError, PrerequisiteError
from agentrm.protocols import TraceStore
from agentrm.traces import rows as R
from agentrm.traces.engine import make_engine, retrying
from agentrm.traces.migrate import upgrade
from agentrm.traces.schema import advantages, run_leases, runs, scores, tasks, trajectories, turns
from agentrm.types import Advantage, ExitStatus, Message, Score, Task, Trajectory, Turn

log = logging.getLogger("agentrm.traces.store")
T = TypeVar("T")
PAGE = 200  # trajectories loaded per query when streaming
# what update_trajectory may change: a trajectory's description, never its outcome or turns
UPDATABLE = frozenset({"task_id", "group_id", "policy", "answer", "metadata", "tail"})


def _require_sqlite_file(url: str) -> None:
    """For read-only commands: opening a SQLite path that has no file would create one."""
    from pathlib import Path

    try:
        parsed = sa.engine.make_url(url)
    except sa_exc.ArgumentError:
        return  # open_store reports the bad URL
    path = parsed.database if parsed.get_backend_name() == "sqlite" else None
    if path and path != ":memory:" and not path.startswith("file:") and not Path(path).exists():
        raise InputError(f"no trace store at {path} (pass --db URL or set AGENTRM_DB)")


def open_store(url: str, migrate: bool = True, must_exist: bool = False) -> SQLStore:
    """Open (and by default create or migrate) the store at `url`; with `must_exist`, a missing
    SQLite file is an InputError instead of a new empty store."""
    if "://" not in url:
        raise InputError(f"not a database URL: {url!r} (use sqlite:///FILE or postgresql+psycopg://…)")
    if must_exist:
        _require_sqlite_file(url)
    try:
        engine = make_engine(url)
    except (sa_exc.ArgumentError, sa_exc.NoSuchModuleError) as exc:
        raise InputError(f"bad database URL {url!r}: {exc}") from exc
    except ModuleNotFoundError as exc:
        raise PrerequisiteError(f"database driver {exc.name!r} is not installed for {url!r} "
                                "(pip install 'agentrm[postgres]')") from exc
    if migrate:
        try:
            upgrade(engine)
        except (sa_exc.DatabaseError, sa_exc.InterfaceError) as exc:  # also "not a database"
            engine.dispose()
            shown = engine.url.render_as_string(hide_password=True)
            reason = " ".join(str(exc.orig or exc).split())[:200]
            if url.startswith("sqlite"):
                raise InputError(f"cannot open database {shown}: {reason}") from exc
            raise PrerequisiteError(f"cannot reach database {shown}: {reason} "
                                    "(is the server running? .ci/start-services postgres)") from exc
    return SQLStore(engine)


def _insert(conn: sa.Connection, table: sa.Table):
    """INSERT that supports ON CONFLICT on both backends."""
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    return insert(table)


def upsert(conn, table, values, keys: list[str], update: list[str] | None = None) -> None:
    """Insert `values` (dict or list of dicts); on a key conflict update `update` (None = all)."""
    if isinstance(values, list) and not values:
        return
    sample = values[0] if isinstance(values, list) else values
    cols = tuple(c for c in (update if update is not None else sample) if c not in keys)
    conn.execute(_upsert_statement(conn.dialect.name, table, tuple(keys), cols), values)


@functools.lru_cache(maxsize=256)
def _upsert_statement(dialect: str, table: sa.Table, keys: tuple[str, ...],
                      cols: tuple[str, ...]) -> Any:
    # Built once per shape: building it (`excluded` makes a column collection of the whole
    # table) cost more than the write itself for one turn (bench/proxy_overhead.py).
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    stmt = insert(table)
    if cols:
        return stmt.on_conflict_do_update(index_elements=list(keys),
                                          set_={c: stmt.excluded[c] for c in cols})
    return stmt.on_conflict_do_nothing(index_elements=list(keys))


class SQLStore:
    """The TraceStore of agentrm.protocols; docs/runtime.md for resume semantics."""

    def __init__(self, engine: sa.Engine):
        self.engine = engine
        self.url = engine.url.render_as_string(hide_password=True)

    # -- plumbing -------------------------------------------------------------------------
    def write(self, fn: Callable[[sa.Connection], T]) -> T:
        """Run `fn` in one write transaction, committed on return, retried on lock contention."""
        def attempt() -> T:
            with self.engine.connect().execution_options(sqlite_begin="IMMEDIATE") as conn:
                with conn.begin():
                    return fn(conn)
        return retrying(attempt)

    def read(self, fn: Callable[[sa.Connection], T]) -> T:
        with self.engine.connect() as conn, conn.begin():
            return fn(conn)

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> SQLStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- runs and tasks -------------------------------------------------------------------
    def begin_run(self, config: dict, run_id: str | None = None, kind: str = "run") -> str:
        run_id = run_id or f"{kind}-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"
        row = {"id": run_id, "kind": kind, "config": config, "status": "running",
               "started_at": time.time()}
        self.write(lambda c: upsert(c, runs, row, ["id"], update=[]))
        return run_id

    def end_run(self, run_id: str, status: str = "finished") -> None:
        def go(conn):
            stmt = runs.update().where(runs.c.id == run_id)
            if conn.execute(stmt.values(status=status, ended_at=time.time())).rowcount == 0:
                raise NotFoundError(f"unknown run {run_id!r}")
        self.write(go)

    def annotate_run(self, run_id: str, **fields: Any) -> None:
        """Merge `fields` into the run's config (what a run learned about itself as it went:
        a training iteration's update statistics, an evaluation's success rate)."""
        def go(conn):
            row = conn.execute(sa.select(runs.c.config).where(runs.c.id == run_id)).first()
            if row is None:
                raise NotFoundError(f"unknown run {run_id!r}")
            conn.execute(runs.update().where(runs.c.id == run_id).values(
                config={**(row.config or {}), **fields}))
        self.write(go)

    def get_run(self, run_id: str) -> dict[str, Any]:
        row = self.read(lambda c: c.execute(runs.select().where(runs.c.id == run_id)).first())
        if row is None:
            raise NotFoundError(f"unknown run {run_id!r}")
        return dict(row._mapping)

    def list_runs(self) -> list[dict[str, Any]]:
        stmt = runs.select().order_by(runs.c.started_at)
        return self.read(lambda c: [dict(r._mapping) for r in c.execute(stmt)])

    # -- run leases: one live driver per run id -----------------------------------------------
    def take_lease(self, run_id: str, holder: str, ttl_s: float,
                   is_dead: Callable[[str], bool] = lambda holder: False) -> dict[str, Any] | None:
        """Take the run's lease for `holder`: None when taken; else the live holder's row. A
        lease whose heartbeat is older than its ttl, or whose holder `is_dead`, is taken over."""
        def go(conn):
            now = time.time()
            row = {"run_id": run_id, "holder": holder, "acquired_at": now, "heartbeat_at": now,
                   "ttl_s": ttl_s}
            stmt = _insert(conn, run_leases).on_conflict_do_nothing(index_elements=["run_id"])
            if conn.execute(stmt, row).rowcount == 1:
                return None
            current = conn.execute(run_leases.select().where(run_leases.c.run_id == run_id)).first()
            if current is None:  # released between the two statements: try again next call
                return {"holder": "?", "heartbeat_at": now, "ttl_s": ttl_s}
            current = dict(current._mapping)
            stale = current["heartbeat_at"] < now - current["ttl_s"] or current["holder"] == holder
            if not (stale or is_dead(current["holder"])):
                return current
            taken = conn.execute(run_leases.update().where(
                (run_leases.c.run_id == run_id) & (run_leases.c.holder == current["holder"])
                & (run_leases.c.heartbeat_at == current["heartbeat_at"])).values(
                holder=holder, acquired_at=now, heartbeat_at=now, ttl_s=ttl_s)).rowcount
            return None if taken == 1 else current
        return self.write(go)

    def renew_lease(self, run_id: str, holder: str) -> bool:
        """Heartbeat; False when the lease is no longer this holder's (taken over as stale)."""
        stmt = run_leases.update().where((run_leases.c.run_id == run_id)
                                         & (run_leases.c.holder == holder))
        return self.write(lambda c: c.execute(stmt.values(heartbeat_at=time.time())).rowcount == 1)

    def release_lease(self, run_id: str, holder: str) -> None:
        stmt = run_leases.delete().where((run_leases.c.run_id == run_id) & (run_leases.c.holder == holder))
        self.write(lambda c: c.execute(stmt))

    def upsert_task(self, task: Task) -> None:
        self.write(lambda c: upsert(c, tasks, R.task_row(task), ["id"]))

    def get_task(self, task_id: str) -> Task:
        row = self.read(lambda c: c.execute(tasks.select().where(tasks.c.id == task_id)).first())
        if row is None:
            raise NotFoundError(f"unknown task {task_id!r}")
        return R.task_from_row(row)

    # -- trajectories and turns -----------------------------------------------------------
    def begin_trajectory(self, trajectory: Trajectory) -> None:
        """Create the trajectory (or refresh its descriptive fields); existing turns are kept."""
        traj = trajectory
        row = R.trajectory_row(traj)
        keep = ["run_id", "task_id", "group_id", "policy", "answer", "metadata"]

        def go(conn):
            if traj.run_id:
                _ensure_run(conn, traj.run_id)
            upsert(conn, trajectories, row, ["id"], update=keep)
            if traj.turns:
                upsert(conn, turns, [R.turn_row(traj.id, t) for t in traj.turns], ["trajectory_id", "idx"])
                _refresh_turn_count(conn, traj.id)
            if traj.tail:
                conn.execute(trajectories.update().where(trajectories.c.id == traj.id)
                             .values(tail=traj.tail))
        self.write(go)

    def append_turn(self, trajectory_id: str, turn: Turn) -> None:
        row = R.turn_row(trajectory_id, turn)

        def go(conn):
            try:
                upsert(conn, turns, row, ["trajectory_id", "idx"])
            except IntegrityError as exc:
                raise NotFoundError(f"append_turn: unknown trajectory {trajectory_id!r}") from exc
            _refresh_turn_count(conn, trajectory_id)
        self.write(go)

    def append_turns(self, items: Sequence[tuple[str, Turn]],
                     begin: Sequence[Trajectory] = ()) -> None:
        """Begin `begin` (as begin_trajectory, without turns) and append `items`
        ((trajectory id, turn)), all in ONE transaction: a writer that batches, like the
        proxy's recorder, pays one commit for many turns."""
        began = [R.trajectory_row(t) for t in begin]
        run_ids = {t.run_id for t in begin if t.run_id}
        rows = [R.turn_row(traj_id, turn) for traj_id, turn in items]
        touched = list(dict.fromkeys(traj_id for traj_id, _ in items))
        keep = ["run_id", "task_id", "group_id", "policy", "answer", "metadata"]

        def go(conn):
            for run_id in run_ids:
                _ensure_run(conn, run_id)
            upsert(conn, trajectories, began, ["id"], update=keep)
            try:
                upsert(conn, turns, rows, ["trajectory_id", "idx"])
            except IntegrityError as exc:
                raise NotFoundError(f"append_turns: unknown trajectory among {touched[:5]}") from exc
            for traj_id in touched:
                _refresh_turn_count(conn, traj_id)
        if began or rows:
            self.write(go)

    def set_tail(self, trajectory_id: str, messages: Sequence[Message]) -> None:
        self.update_trajectory(trajectory_id, tail=list(messages))

    def update_trajectory(self, trajectory_id: str, **fields: Any) -> None:
        """Set descriptive fields (UPDATABLE) of a trajectory; turns, status and reward stay.

        `metadata` replaces the stored dict (merge on the caller's side when that is meant)."""
        unknown = set(fields) - UPDATABLE
        if unknown:
            raise TypeError(f"update_trajectory: cannot set {', '.join(sorted(unknown))} "
                            f"(only {', '.join(sorted(UPDATABLE))})")
        values = {k: (v or None) if k in ("metadata", "tail") else v for k, v in fields.items()}
        if "tail" in values and values["tail"] is not None:
            values["tail"] = list(values["tail"])
        if values:
            self.write(lambda c: _update(c, trajectory_id, **values))

    def end_trajectory(self, trajectory_id: str, status: ExitStatus, reward: float | None = None) -> None:
        status = ExitStatus(status)
        kind = status.failure_kind
        self.write(lambda c: _update(c, trajectory_id, exit_status=status.value, reward=reward,
                                     failure_kind=kind.value if kind else None,
                                     ended_at=time.time()))

    def reset_trajectory(self, trajectory_id: str) -> None:
        """Drop a trajectory's turns, scores and advantages and mark it running again.

        For runtimes that restart an unfinished rollout from scratch under the same id (turns
        past the new end would otherwise survive from the killed attempt)."""
        def go(conn):
            for table in (turns, scores, advantages):
                conn.execute(table.delete().where(table.c.trajectory_id == trajectory_id))
            _update(conn, trajectory_id, exit_status=ExitStatus.RUNNING.value, failure_kind=None,
                    reward=None, tail=None, n_turns=0, ended_at=None)
        self.write(go)

    def get_trajectory(self, trajectory_id: str) -> Trajectory:
        found = list(self.iter_trajectories(ids=[trajectory_id]))
        if not found:
            raise NotFoundError(f"unknown trajectory {trajectory_id!r}")
        return found[0]

    def iter_trajectories(self, run_id: str | None = None, task_id: str | None = None,
                          group_id: str | None = None, exit_status: ExitStatus | str | None = None,
                          ids: Iterable[str] | None = None) -> Iterator[Trajectory]:
        """Stream matching trajectories in insertion order, PAGE at a time."""
        where = _filters(run_id, task_id, group_id, exit_status)
        id_list = None if ids is None else list(dict.fromkeys(ids))
        chunks = [None] if id_list is None else [id_list[i:i + PAGE] for i in range(0, len(id_list), PAGE)]
        for chunk in chunks:
            cond = where if chunk is None else where + [trajectories.c.id.in_(chunk)]
            last_pk = 0
            while True:
                stmt = (trajectories.select().where(*cond, trajectories.c.pk > last_pk)
                        .order_by(trajectories.c.pk).limit(PAGE))
                page = self.read(lambda c, s=stmt: _load_page(c, s))
                yield from page[1]
                if len(page[1]) < PAGE:
                    break
                last_pk = page[0]

    def finished_trajectory_ids(self, run_id: str) -> set[str]:
        stmt = sa.select(trajectories.c.id).where(
            trajectories.c.run_id == run_id, trajectories.c.exit_status != ExitStatus.RUNNING.value)
        return self.read(lambda c: set(c.execute(stmt).scalars()))

    def summaries(self, **kwargs: Any) -> list[dict[str, Any]]:
        """Summary rows for listings (never loads turns); see agentrm.traces.query."""
        from agentrm.traces.query import summaries
        return self.read(lambda c: summaries(c, **kwargs))

    def import_trajectories(self, trajs: Iterable[Trajectory], run_id: str | None = None,
                            on_progress: Callable[[int], None] | None = None,
                            run_config: dict[str, Any] | None = None) -> int:
        """Bulk path for files: all trajectories in ONE transaction (all or nothing).

        `trajs` may be a lazy reader: an error raised while iterating rolls everything back.
        Not retried on lock contention (a lazy reader cannot be replayed); the writer waits
        up to busy_timeout for the lock instead."""
        from agentrm.traces.bulk import bulk_import

        def go(conn):
            return bulk_import(conn, trajs, run_id, on_progress, run_config)
        with self.engine.connect().execution_options(sqlite_begin="IMMEDIATE") as conn:
            with conn.begin():
                return go(conn)

    # -- scores and advantages ------------------------------------------------------------
    def write_scores(self, items: Iterable[Score]) -> int:
        now = time.time()
        values = [R.score_row(s, now) for s in items]
        keys = ["scorer", "config_hash", "trajectory_id", "level", "turn_index"]
        return self._write_keyed(scores, values, keys, "write_scores")

    def get_scores(self, trajectory_ids: Iterable[str] | None = None,
                   scorer: str | None = None) -> list[Score]:
        got = self._select_keyed(scores, trajectory_ids, scores.c.scorer, scorer)
        return [R.score_from_row(r) for r in got]

    def write_advantages(self, advs: Iterable[Advantage]) -> int:
        now = time.time()
        values = [R.advantage_row(a, now) for a in advs]
        keys = ["estimator", "config_hash", "trajectory_id", "turn_index"]
        return self._write_keyed(advantages, values, keys, "write_advantages")

    def get_advantages(self, trajectory_ids: Iterable[str] | None = None,
                       estimator: str | None = None) -> list[Advantage]:
        got = self._select_keyed(advantages, trajectory_ids, advantages.c.estimator, estimator)
        return [R.advantage_from_row(r) for r in got]

    def _write_keyed(self, table, values, keys, what: str) -> int:
        def go(conn):
            try:
                for i in range(0, len(values), 1000):
                    upsert(conn, table, values[i:i + 1000], keys)
            except IntegrityError as exc:
                raise NotFoundError(f"{what}: a trajectory id is not in the store ({exc.orig})") from exc
            return len(values)
        return self.write(go) if values else 0

    def _select_keyed(self, table, trajectory_ids, name_col, name) -> list[Any]:
        cond = [] if name is None else [name_col == name]
        if trajectory_ids is None:
            chunks = [None]
        else:
            id_list = list(dict.fromkeys(trajectory_ids))
            chunks = [id_list[i:i + 500] for i in range(0, len(id_list), 500)]
        out = []
        for chunk in chunks:
            where = cond if chunk is None else cond + [table.c.trajectory_id.in_(chunk)]
            stmt = table.select().where(*where).order_by(table.c.id)
            out += self.read(lambda c, s=stmt: list(c.execute(s)))
        return out


if TYPE_CHECKING:
    def _implements_the_protocol(store: SQLStore) -> TraceStore:
        return store  # pyright (scripts/typecheck) checks every signature against the contract


def _ensure_run(conn: sa.Connection, run_id: str) -> None:
    upsert(conn, runs, {"id": run_id, "kind": "run", "config": None, "status": "running",
                        "started_at": time.time()}, ["id"], update=[])


_COUNT_TURNS = trajectories.update().where(trajectories.c.id == sa.bindparam("tid")).values(
    n_turns=sa.select(sa.func.count()).select_from(turns)
    .where(turns.c.trajectory_id == sa.bindparam("tid")).scalar_subquery())


def _refresh_turn_count(conn: sa.Connection, trajectory_id: str) -> None:
    conn.execute(_COUNT_TURNS, {"tid": trajectory_id})


def _update(conn: sa.Connection, trajectory_id: str, **values: Any) -> None:
    stmt = trajectories.update().where(trajectories.c.id == trajectory_id).values(**values)
    if conn.execute(stmt).rowcount == 0:
        raise NotFoundError(f"unknown trajectory {trajectory_id!r}")


def _filters(run_id, task_id, group_id, exit_status) -> list[Any]:
    where = []
    for col, value in ((trajectories.c.run_id, run_id), (trajectories.c.task_id, task_id),
                       (trajectories.c.group_id, group_id)):
        if value is not None:
            where.append(col == value)
    if exit_status is not None:
        where.append(trajectories.c.exit_status == ExitStatus(exit_status).value)
    return where


def _load_page(conn: sa.Connection, stmt) -> tuple[int, list[Trajectory]]:
    rows = list(conn.execute(stmt))
    if not rows:
        return 0, []
    ids = [r.id for r in rows]
    by_traj: dict[str, list[Turn]] = {i: [] for i in ids}
    turn_stmt = turns.select().where(turns.c.trajectory_id.in_(ids)).order_by(
        turns.c.trajectory_id, turns.c.idx)
    for row in conn.execute(turn_stmt):
        by_traj[row.trajectory_id].append(R.turn_from_row(row))
    return rows[-1].pk, [R.trajectory_from_row(r, by_traj[r.id]) for r in rows]
