"""Listing queries over summary columns only (never the turns), for `agentrm traces list`.

Score filters: with `scorer`, a trajectory's score is its trajectory-level score by that scorer,
or else the minimum of its turn-level scores (the min-form aggregate PRMs use); abstentions
(NULL) are ignored. Without `scorer`, the range applies to the outcome reward.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from agentrm.errors import InputError
from agentrm.traces.schema import scores, trajectories
from agentrm.types import ExitStatus, ScoreLevel

SUMMARY_COLUMNS = ["id", "run_id", "task_id", "group_id", "policy", "exit_status",
                   "failure_kind", "reward", "n_turns", "started_at", "ended_at"]


def _score_subquery(scorer: str):
    traj_level = sa.func.max(sa.case((scores.c.level == ScoreLevel.TRAJECTORY.value, scores.c.value)))
    turn_level = sa.func.min(sa.case((scores.c.level == ScoreLevel.TURN.value, scores.c.value)))
    return (sa.select(scores.c.trajectory_id, sa.func.coalesce(traj_level, turn_level).label("score"))
            .where(scores.c.scorer == scorer).group_by(scores.c.trajectory_id).subquery())


def summaries(conn: sa.Connection, run_id: str | None = None, task_id: str | None = None,
              group_id: str | None = None, exit_status: str | None = None,
              scorer: str | None = None, min_score: float | None = None,
              max_score: float | None = None, limit: int | None = None) -> list[dict[str, Any]]:
    cols = [trajectories.c[name] for name in SUMMARY_COLUMNS]
    if scorer is not None:
        sub = _score_subquery(scorer)
        value = sub.c.score
        stmt = sa.select(*cols, value.label("score")).select_from(
            trajectories.outerjoin(sub, sub.c.trajectory_id == trajectories.c.id))
    else:
        value = trajectories.c.reward
        stmt = sa.select(*cols)
    for col, wanted in ((trajectories.c.run_id, run_id), (trajectories.c.task_id, task_id),
                        (trajectories.c.group_id, group_id)):
        if wanted is not None:
            stmt = stmt.where(col == wanted)
    if exit_status is not None:
        try:
            stmt = stmt.where(trajectories.c.exit_status == ExitStatus(exit_status).value)
        except ValueError:
            valid = ", ".join(s.value for s in ExitStatus)
            raise InputError(f"--status {exit_status!r} is not one of: {valid}") from None
    if min_score is not None:
        stmt = stmt.where(value >= min_score)
    if max_score is not None:
        stmt = stmt.where(value <= max_score)
    stmt = stmt.order_by(trajectories.c.pk)
    if limit is not None:
        stmt = stmt.limit(limit)
    return [dict(r._mapping) for r in conn.execute(stmt)]
