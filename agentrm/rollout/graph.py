"""The agent loop as a two-node LangGraph StateGraph with one router.

    START -> policy -> route -> tools -> route -> policy ... -> END

The nodes are plain step functions (agentrm.rollout.loop.Episode.policy_step / tool_step); the
graph only wires them. Limits live in the state, and a node that decides the trajectory is over
writes `status`, which the router turns into END.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypedDict

from agentrm.types import Message


class LoopState(TypedDict, total=False):
    messages: list[Message]       # the conversation so far (OpenAI shape)
    obs_start: int                # index in messages where the next turn's observation starts
    turn: int                     # completed turns
    tokens: int                   # context size of the latest model call (prompt + completion)
    invalid_streak: int           # consecutive invalid turns (format_error after max_format_errors)
    limits: dict[str, Any]        # Limits as a dict: max_turns, max_tokens, max_seconds, ...
    deadline: float | None        # time.monotonic() past which the trajectory ends time_limit
    pending: dict[str, Any] | None  # the model's last output, waiting for the tool node
    status: str | None            # an ExitStatus value once the trajectory is over
    error: str | None             # why, for infrastructure and model failures


Step = Callable[[Any], dict[str, Any]]  # a LoopState (a plain dict at run time) -> update


def route(state: Mapping[str, Any]) -> str:
    """The one router: stop when a node decided so, else alternate policy and tools."""
    from langgraph.graph import END

    if state.get("status"):
        return END
    return "tools" if state.get("pending") is not None else "policy"


def build_graph(policy_step: Step, tool_step: Step):
    from langgraph.graph import END, START, StateGraph

    graph = StateGraph(LoopState)
    graph.add_node("policy", policy_step)  # pyright: ignore[reportArgumentType]
    graph.add_node("tools", tool_step)  # pyright: ignore[reportArgumentType]
    graph.add_edge(START, "policy")
    graph.add_conditional_edges("policy", route, ["tools", END])
    graph.add_conditional_edges("tools", route, ["policy", END])
    return graph.compile()


def run_direct(state: dict[str, Any], policy_step: Step, tool_step: Step, limit: int
               ) -> dict[str, Any]:
    """The same graph interpreted by a plain loop: same nodes, same router, same state updates.

    LangGraph's Pregel machinery costs ~1-2 ms per node on a busy 2-core machine, more than a
    persistent-shell command; rollout farms that want the loop to vanish next to the sandbox
    use this (`engine="direct"`). tests/unit/test_rollout_loop.py checks both give the same
    trajectories.
    """
    from langgraph.graph import END

    nodes = {"policy": policy_step, "tools": tool_step}
    state = dict(state)
    node = "policy"
    for _ in range(limit):
        state.update(nodes[node](state))
        node = route(state)
        if node == END:
            return state
    raise RecursionError(f"graph did not end within {limit} steps")


def recursion_limit(max_turns: int) -> int:
    """LangGraph counts node runs; two per turn, plus slack so our own limits fire first."""
    return 2 * max_turns + 8
