"""The trace store: every turn of every rollout, scores and advantages (SQLite or PostgreSQL).

    from agentrm.traces import open_store
    store = open_store("sqlite:///agentrm.db")
"""

from agentrm.traces.store import SQLStore, open_store

__all__ = ["SQLStore", "open_store"]
