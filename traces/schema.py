"""The trace store's tables (SQLAlchemy 2.x Core metadata, shared by the store and migrations).

Design choices, and why:
- Times are float epoch seconds (like `Turn.started_at`): portable across SQLite and PostgreSQL
  and free of time-zone surprises.
- JSON columns use the generic `JSON` type (text on SQLite, `json` on PostgreSQL, never `jsonb`):
  `jsonb` reorders keys, which would break the byte-identical export round trip.
- Every write path has a natural key with a unique constraint, so writes are upserts and a rerun
  after a crash never duplicates rows. Trajectory-level scores store `turn_index = -1` because
  NULLs are distinct in unique constraints.
- `trajectories.pk` is an autoincrement surrogate so listings and exports keep insertion order;
  everything else references the string id.
"""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_name)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

# SQL NULL for Python None (not the JSON literal 'null'), so "unknown" stays queryable.
Json = sa.JSON(none_as_null=True)
TRAJECTORY_LEVEL = -1  # turn_index stored for trajectory-level scores

runs = sa.Table(
    "runs", metadata,
    sa.Column("id", sa.String(128), primary_key=True),
    sa.Column("kind", sa.String(32), nullable=False, server_default="run"),
    sa.Column("config", Json),
    sa.Column("status", sa.String(32), nullable=False, server_default="running"),
    sa.Column("started_at", sa.Float, nullable=False),
    sa.Column("ended_at", sa.Float),
)

tasks = sa.Table(
    "tasks", metadata,
    sa.Column("id", sa.String(256), primary_key=True),
    sa.Column("instruction", sa.Text, nullable=False),
    sa.Column("image", sa.String(512)),
    sa.Column("setup", Json),
    sa.Column("answer", sa.Text),
    sa.Column("verifier", Json),
    sa.Column("network", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("metadata", Json),
)

trajectories = sa.Table(
    "trajectories", metadata,
    sa.Column("pk", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("id", sa.String(256), nullable=False, unique=True),
    sa.Column("run_id", sa.String(128), sa.ForeignKey("runs.id", ondelete="CASCADE"), index=True),
    sa.Column("task_id", sa.String(256), nullable=False, index=True),
    sa.Column("group_id", sa.String(256), nullable=False, index=True),
    sa.Column("policy", sa.String(256)),
    sa.Column("exit_status", sa.String(32), nullable=False, index=True),
    sa.Column("failure_kind", sa.String(32)),
    sa.Column("reward", sa.Float),
    sa.Column("answer", sa.Text),
    sa.Column("metadata", Json),
    sa.Column("tail", Json),
    sa.Column("n_turns", sa.Integer, nullable=False, server_default="0"),
    sa.Column("started_at", sa.Float, nullable=False),
    sa.Column("ended_at", sa.Float),
)

turns = sa.Table(
    "turns", metadata,
    sa.Column("trajectory_id", sa.String(256),
              sa.ForeignKey("trajectories.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("idx", sa.Integer, primary_key=True),
    sa.Column("observation", Json, nullable=False),
    sa.Column("assistant", Json, nullable=False),
    sa.Column("anchor_key", sa.String(64), nullable=False, index=True),
    sa.Column("tool_results", Json),
    sa.Column("prompt_tokens", sa.Integer),
    sa.Column("completion_tokens", sa.Integer),
    sa.Column("logprobs", Json),
    sa.Column("started_at", sa.Float),
    sa.Column("duration_s", sa.Float),
    sa.Column("valid", sa.Boolean, nullable=False, server_default=sa.true()),
    sa.Column("metadata", Json),
    # What the policy saw and sampled (agentrm.types.TokenTrace); NULL for text-only turns.
    # The prompt is the previous turn's prompt[:prompt_prefix_len] + prompt_ids.
    sa.Column("prompt_prefix_len", sa.Integer),
    sa.Column("prompt_ids", Json),
    sa.Column("completion_ids", Json),
    sa.Column("tokenizer", sa.String(256)),
    sa.Column("template_hash", sa.String(64)),
    sa.Column("prompt_hash", sa.String(64)),
)

scores = sa.Table(
    "scores", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("scorer", sa.String(128), nullable=False),
    sa.Column("version", sa.String(64), nullable=False),
    sa.Column("config_hash", sa.String(64), nullable=False),
    sa.Column("level", sa.String(16), nullable=False),
    sa.Column("trajectory_id", sa.String(256),
              sa.ForeignKey("trajectories.id", ondelete="CASCADE"), nullable=False, index=True),
    sa.Column("turn_index", sa.Integer, nullable=False),
    sa.Column("value", sa.Float),  # NULL = the scorer abstained
    sa.Column("details", Json),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.UniqueConstraint("scorer", "config_hash", "trajectory_id", "level", "turn_index",
                        name="uq_scores_key"),
)

advantages = sa.Table(
    "advantages", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("estimator", sa.String(128), nullable=False),
    sa.Column("config_hash", sa.String(64), nullable=False),
    sa.Column("trajectory_id", sa.String(256),
              sa.ForeignKey("trajectories.id", ondelete="CASCADE"), nullable=False, index=True),
    sa.Column("turn_index", sa.Integer, nullable=False),
    sa.Column("value", sa.Float, nullable=False),
    sa.Column("details", Json),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.UniqueConstraint("estimator", "config_hash", "trajectory_id", "turn_index",
                        name="uq_advantages_key"),
)

# One row per run id while a process drives it; the holder refreshes `heartbeat_at`, and a row
# whose heartbeat is older than the lease's ttl may be taken over (see traces/lease.py).
run_leases = sa.Table(
    "run_leases", metadata,
    sa.Column("run_id", sa.String(128), primary_key=True),
    sa.Column("holder", sa.String(256), nullable=False),
    sa.Column("acquired_at", sa.Float, nullable=False),
    sa.Column("heartbeat_at", sa.Float, nullable=False),
    sa.Column("ttl_s", sa.Float, nullable=False),
)

HEAD_REVISION = "0003_turn_tokens"
"""The newest migration; open_store skips Alembic entirely when the database is already here."""
