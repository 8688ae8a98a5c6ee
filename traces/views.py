"""Read-only queries for `agentrm view`: paged listings and SQL-side aggregates.

Why a module of its own: the viewer must stay responsive on stores of 100k trajectories, so every
query here is bounded — keyset paging on `trajectories.pk`, aggregates computed by the database,
never a whole table in Python. The engine is opened read-only (SQLite `mode=ro`, PostgreSQL
`default_transaction_read_only`), so the viewer cannot write or create a database file.
Score filters follow agentrm.traces.query: with a scorer, a trajectory's score is its
trajectory-level score by that scorer, else the minimum of its turn-level scores.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc

from agentrm.errors import InputError, PrerequisiteError
from agentrm.traces.migrate import current_revision
from agentrm.traces.query import SUMMARY_COLUMNS
from agentrm.traces.schema import HEAD_REVISION, advantages, runs, scores, trajectories
from agentrm.traces.store import SQLStore
from agentrm.types import ExitStatus, ScoreLevel

T, S = trajectories, scores
SUCCESS = 1.0  # a trajectory "succeeds" when its outcome reward reaches this (tests resolved)


def open_readonly(url: str) -> SQLStore:
    """A store whose engine cannot write; a missing SQLite file is an error, never created."""
    if "://" not in url:
        raise InputError(f"not a database URL: {url!r} (use sqlite:///FILE or postgresql+psycopg://…)")
    parsed = sa.engine.make_url(url)
    if parsed.get_backend_name() == "sqlite":
        path = parsed.database or ""
        if path in ("", ":memory:") or not Path(path).is_file():
            raise InputError(f"no trace store at {path or url} (pass --db URL or set AGENTRM_DB)")
        uri = Path(path).resolve().as_uri() + "?mode=ro"
        engine = sa.create_engine("sqlite://", creator=lambda: sqlite3.connect(
            uri, uri=True, check_same_thread=False, timeout=30))
    else:
        try:
            engine = sa.create_engine(url, pool_pre_ping=True, connect_args={
                "options": "-c default_transaction_read_only=on"})
        except ModuleNotFoundError as exc:
            raise PrerequisiteError(f"database driver {exc.name!r} is not installed for {url!r} "
                                    "(pip install 'agentrm[postgres]')") from exc
    try:
        with engine.connect() as conn:
            found = sa.inspect(conn).has_table("trajectories")
            revision = current_revision(conn)
    except sa_exc.DBAPIError as exc:
        engine.dispose()
        reason = " ".join(str(exc.orig or exc).split())[:200]
        raise InputError(f"cannot open database {parsed.render_as_string(hide_password=True)}: "
                         f"{reason}") from exc
    if not found:
        engine.dispose()
        raise InputError(f"{parsed.render_as_string(hide_password=True)} is not an agentrm trace "
                         "store (no trajectories table)")
    if revision != HEAD_REVISION:  # the viewer never writes, so it cannot migrate
        engine.dispose()
        raise PrerequisiteError(
            f"{parsed.render_as_string(hide_password=True)} is at schema revision {revision}, "
            f"this agentrm reads {HEAD_REVISION}: migrate it once with `agentrm traces runs --db URL`")
    store = SQLStore(engine)
    store.url = parsed.render_as_string(hide_password=True)
    return store


def _rows(store: SQLStore, stmt) -> list[dict[str, Any]]:
    return store.read(lambda c: [dict(r._mapping) for r in c.execute(stmt)])


# -- runs ------------------------------------------------------------------------------------
def _run_aggregates(where: list[Any]):
    ok = sa.case((T.c.reward >= SUCCESS, 1), else_=0)
    return (sa.select(T.c.run_id, T.c.exit_status, sa.func.count().label("n"),
                      sa.func.count(T.c.reward).label("n_reward"),
                      sa.func.sum(T.c.reward).label("reward_sum"), sa.func.sum(ok).label("n_success"),
                      sa.func.sum(T.c.n_turns).label("turns"),
                      sa.func.sum(T.c.ended_at - T.c.started_at).label("seconds"),
                      sa.func.count(T.c.ended_at).label("n_ended"))
            .where(*where).group_by(T.c.run_id, T.c.exit_status))


def run_summaries(store: SQLStore, run_id: str | None = None) -> list[dict[str, Any]]:
    """One row per run: counts by exit status, reward mean and success rate, turns, timings."""
    where = [] if run_id is None else [T.c.run_id == run_id]
    run_rows = _rows(store, runs.select().where(*([] if run_id is None else [runs.c.id == run_id]))
                     .order_by(runs.c.started_at))
    out = {r["id"]: {**r, "n": 0, "by_status": {}, "n_reward": 0, "reward_sum": 0.0,
                     "n_success": 0, "turns": 0, "seconds": 0.0, "n_ended": 0} for r in run_rows}
    for g in _rows(store, _run_aggregates(where)):
        run = out.get(g["run_id"])
        if run is None:
            continue
        run["by_status"][g["exit_status"]] = g["n"]
        for key in ("n", "n_reward", "n_success", "turns", "n_ended"):
            run[key] += g[key] or 0
        run["reward_sum"] += g["reward_sum"] or 0.0
        run["seconds"] += g["seconds"] or 0.0
    for run in out.values():
        run["reward_mean"] = run["reward_sum"] / run["n_reward"] if run["n_reward"] else None
        run["success_rate"] = run["n_success"] / run["n_reward"] if run["n_reward"] else None
        run["mean_turns"] = run["turns"] / run["n"] if run["n"] else None
        run["mean_seconds"] = run["seconds"] / run["n_ended"] if run["n_ended"] else None
    return list(out.values())


def scorer_coverage(store: SQLStore, run_id: str, sample: list[int] | None = None) -> list[dict[str, Any]]:
    """Per scorer and level: trajectories scored (of the run's, or of `sample` pks), rows,
    abstentions, mean."""
    stmt = (sa.select(S.c.scorer, S.c.level, sa.func.count(sa.distinct(S.c.trajectory_id)).label("trajectories"),
                      sa.func.count().label("rows"), (sa.func.count() - sa.func.count(S.c.value)).label("abstained"),
                      sa.func.avg(S.c.value).label("mean"))
            .select_from(S.join(T, T.c.id == S.c.trajectory_id)).where(*_in_run(run_id, sample))
            .group_by(S.c.scorer, S.c.level).order_by(S.c.scorer, S.c.level))
    return _rows(store, stmt)


def _in_run(run_id: str, sample: list[int] | None) -> list[Any]:
    return [T.c.run_id == run_id] + ([] if sample is None else [T.c.pk.in_(sample)])


def run_sample(store: SQLStore, run_id: str, size: int) -> tuple[list[int] | None, int]:
    """Up to `size` trajectory pks spread evenly over the run (None: the run is small enough to
    take whole), and the run's size. Keeps per-score aggregates of huge runs bounded."""
    pks = store.read(lambda c: list(c.execute(sa.select(T.c.pk).where(T.c.run_id == run_id)
                                              .order_by(T.c.pk)).scalars()))
    if len(pks) <= size:
        return None, len(pks)
    return [pks[i * len(pks) // size] for i in range(size)], len(pks)


# -- histograms ------------------------------------------------------------------------------
def _bin(value, lo: float, width: float, dialect: str):
    scaled = (value - lo) / width
    return sa.func.floor(scaled) if dialect == "postgresql" else sa.cast(scaled, sa.Integer)


def histogram(store: SQLStore, column, where: list[Any], join=None, bins: int = 20) -> dict[str, Any]:
    """Counts of `column` in `bins` equal bins between its min and max, binned by the database."""
    base = sa.select(sa.func.min(column), sa.func.max(column), sa.func.count(column)).where(*where)
    if join is not None:
        base = base.select_from(join)

    def go(conn):
        lo, hi, n = conn.execute(base).one()
        if not n:
            return {"lo": None, "hi": None, "n": 0, "counts": []}
        width = (hi - lo) / bins if hi > lo else 1.0
        idx = _bin(column, lo, width, conn.dialect.name).label("b")
        stmt = sa.select(idx, sa.func.count()).where(*where, column.is_not(None)).group_by(idx)
        if join is not None:
            stmt = stmt.select_from(join)
        counts = [0] * (bins if hi > lo else 1)
        for b, c in conn.execute(stmt):
            counts[min(int(b), len(counts) - 1)] += c
        return {"lo": lo, "hi": hi, "n": n, "counts": counts}
    return store.read(go)


def _unindexed(column):
    """`column || ''`: the same value, but no index on it. The score and advantage keys lead with
    the scorer/estimator, and a planner that took them would read that scorer's rows of every
    run; this way the run's (sampled) trajectories drive the join."""
    return column.op("||")(sa.literal(""))


def run_distributions(store: SQLStore, run_id: str, sample_size: int = 2000) -> dict[str, Any]:
    """Scorer coverage and histograms of one run: the outcome reward over the whole run; each
    scorer's values (per level) and each estimator's advantages over an even sample of at most
    `sample_size` trajectories when the run is larger (score tables hold ~20 rows a trajectory)."""
    sample, total = run_sample(store, run_id, sample_size)
    coverage = scorer_coverage(store, run_id, sample)
    in_run = _in_run(run_id, sample)
    hists = [{"title": "outcome reward", **histogram(store, T.c.reward, [T.c.run_id == run_id])}]
    by_scores = S.join(T, T.c.id == S.c.trajectory_id)
    for cov in coverage:
        where = [*in_run, _unindexed(S.c.scorer) == cov["scorer"], _unindexed(S.c.level) == cov["level"]]
        hists.append({"title": f"{cov['scorer']} ({cov['level']} scores)",
                      **histogram(store, S.c.value, where, by_scores)})
    by_adv = advantages.join(T, T.c.id == advantages.c.trajectory_id)
    names = store.read(lambda c: list(c.execute(sa.select(advantages.c.estimator).distinct()
                                                .select_from(by_adv).where(*in_run)).scalars()))
    for name in sorted(names):
        where = [*in_run, _unindexed(advantages.c.estimator) == name]
        hists.append({"title": f"{name} advantages", **histogram(store, advantages.c.value, where, by_adv)})
    return {"coverage": coverage, "histograms": hists, "sampled": None if sample is None else len(sample),
            "total": total}


# -- the trajectory list ---------------------------------------------------------------------
def _score_of(scorer: str):
    """A trajectory's score by `scorer`, correlated so that paging touches only the rows shown."""
    def one(agg, level):
        return (sa.select(agg(S.c.value)).where(S.c.trajectory_id == T.c.id, S.c.scorer == scorer,
                                                S.c.level == level).scalar_subquery())
    return sa.func.coalesce(one(sa.func.max, ScoreLevel.TRAJECTORY.value),
                            one(sa.func.min, ScoreLevel.TURN.value))


def _where(run_id=None, task_id=None, group_id=None, exit_status=None) -> list[Any]:
    where = [col == v for col, v in ((T.c.run_id, run_id), (T.c.task_id, task_id),
                                     (T.c.group_id, group_id)) if v]
    if exit_status:
        try:
            where.append(T.c.exit_status == ExitStatus(exit_status).value)
        except ValueError:
            valid = ", ".join(s.value for s in ExitStatus)
            raise InputError(f"status {exit_status!r} is not one of: {valid}") from None
    return where


def trajectory_page(store: SQLStore, *, run_id=None, task_id=None, group_id=None, exit_status=None,
                    scorer=None, min_score=None, max_score=None, after: int = 0,
                    limit: int = 50, window: int = 2000) -> dict[str, Any]:
    """One page of summary rows in insertion order after `after` (a pk), and the next cursor.

    A score filter by a scorer looks at no more than `window` trajectories per request: when
    fewer than `limit` of them match, the page says how far it searched (`searched_to`) and the
    cursor continues from there, so a filter that matches rarely never scans the whole store."""
    where = _where(run_id, task_id, group_id, exit_status)
    value = _score_of(scorer) if scorer else T.c.reward
    cols = [T.c.pk] + [T.c[name] for name in SUMMARY_COLUMNS]
    stmt = sa.select(*cols, *([value.label("score")] if scorer else []))
    bound = None
    if scorer and (min_score is not None or max_score is not None):
        edge = (sa.select(T.c.pk).where(*where, T.c.pk > after).order_by(T.c.pk)
                .offset(window - 1).limit(1))
        bound = store.read(lambda c: c.execute(edge).scalar())
        if bound is not None:
            where.append(T.c.pk <= bound)
    if min_score is not None:
        where.append(value >= min_score)
    if max_score is not None:
        where.append(value <= max_score)
    stmt = stmt.where(*where, T.c.pk > after).order_by(T.c.pk).limit(limit + 1)
    rows = _rows(store, stmt)
    if len(rows) > limit:
        return {"rows": rows[:limit], "next": rows[limit - 1]["pk"], "searched_to": None}
    return {"rows": rows, "next": bound, "searched_to": bound}


def count_trajectories(store: SQLStore, cap: int = 10_000, **filters: Any) -> int:
    """How many trajectories match the id/status filters, counting at most cap + 1 (a count of
    a whole large store is a scan; "10000+" says enough). Score filters are never counted."""
    inner = sa.select(T.c.pk).where(*_where(**filters)).limit(cap + 1).subquery()
    stmt = sa.select(sa.func.count()).select_from(inner)
    return store.read(lambda c: c.execute(stmt).scalar_one())


def neighbours(store: SQLStore, traj_id: str) -> dict[str, str | None]:
    """The previous and next trajectory of the same run, for moving between trajectories."""
    def go(conn) -> dict[str, str | None]:
        me = conn.execute(sa.select(T.c.pk, T.c.run_id).where(T.c.id == traj_id)).first()
        if me is None:
            return {"prev": None, "next": None}
        same = [T.c.run_id == me.run_id] if me.run_id is not None else [T.c.run_id.is_(None)]
        prev = sa.select(T.c.id).where(*same, T.c.pk < me.pk).order_by(T.c.pk.desc()).limit(1)
        nxt = sa.select(T.c.id).where(*same, T.c.pk > me.pk).order_by(T.c.pk).limit(1)
        return {"prev": conn.execute(prev).scalar(), "next": conn.execute(nxt).scalar()}
    return store.read(go)


def same_task_metadata(store: SQLStore, task_id: str, limit: int = 50) -> list[dict[str, Any]]:
    """Metadata of a few trajectories on one task (where a SWE-bench gold prediction lives)."""
    stmt = (sa.select(T.c.id, T.c.run_id, T.c.metadata).where(T.c.task_id == task_id)
            .order_by(T.c.pk).limit(limit))
    return _rows(store, stmt)


# -- run against run -------------------------------------------------------------------------
def _per_task(run_id: str):
    ok = sa.case((T.c.reward >= SUCCESS, 1), else_=0)
    return (sa.select(T.c.task_id, sa.func.count().label("n"), sa.func.avg(T.c.reward).label("mean"),
                      sa.func.sum(ok).label("success"))
            .where(T.c.run_id == run_id).group_by(T.c.task_id).subquery())


def compare_runs(store: SQLStore, run_a: str, run_b: str, offset: int = 0,
                 limit: int = 100) -> dict[str, Any]:
    """Per shared task: each run's trajectory count, mean reward and successes; totals over all
    shared tasks (wins, losses, ties by mean reward)."""
    a, b = _per_task(run_a), _per_task(run_b)
    joined = a.join(b, a.c.task_id == b.c.task_id)
    delta = b.c.mean - a.c.mean
    rows = (sa.select(a.c.task_id, a.c.n.label("n_a"), a.c.mean.label("mean_a"),
                      a.c.success.label("success_a"), b.c.n.label("n_b"), b.c.mean.label("mean_b"),
                      b.c.success.label("success_b"), delta.label("delta"))
            .select_from(joined).order_by(a.c.task_id).offset(offset).limit(limit))
    totals = sa.select(sa.func.count().label("shared"), sa.func.avg(a.c.mean).label("mean_a"),
                       sa.func.avg(b.c.mean).label("mean_b"),
                       sa.func.sum(sa.case((delta > 0, 1), else_=0)).label("b_better"),
                       sa.func.sum(sa.case((delta < 0, 1), else_=0)).label("a_better"),
                       sa.func.sum(sa.case((delta == 0, 1), else_=0)).label("ties")).select_from(joined)
    return {"rows": _rows(store, rows), "totals": _rows(store, totals)[0]}
