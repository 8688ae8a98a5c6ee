"""Alembic migrations of the trace store, run programmatically by `open_store` (no alembic.ini)."""
