"""The agent runtime: a LangGraph loop (graph.py, loop.py), tools, policy backends and the group
rollout runner. See docs/runtime.md."""
