"""Alembic environment: always online, on the connection `agentrm.traces.migrate` hands over."""

from __future__ import annotations

from alembic import context

from agentrm.traces.schema import metadata

connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - only reachable by running the alembic CLI by hand
    raise RuntimeError("run migrations through agentrm.traces.open_store(url)")

context.configure(
    connection=connection,
    target_metadata=metadata,
    render_as_batch=connection.dialect.name == "sqlite",  # SQLite ALTER goes through batch mode
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
