"""The agent runtime: a LangGraph loop (graph.py, loop.py), tools, policy backends, and the one
rollout driver (run.py: groups, resume, typed events in events.py; units.py for executors).
See docs/runtime.md."""
