"""A verl AgentLoop that runs each rollout through agentrm's own rollout driver.

verl's ToolAgentLoop creates and releases a tool instance per call, so a bash shell cannot keep
its state across turns and nothing runs the task's verifier in the sandbox at the end. This loop
instead hands a task row (extra_info.task, written by agentrm.training.verl_recipe) to
`agentrm.rollout.loop.run_trajectory` in a fresh Docker sandbox with the task's setup, with a
Policy that samples from verl's LLM server: the same tools, limits, exit statuses and verifier as
`agentrm run`. The tokens are kept the way verl's own loops keep them (its Continuous Token
builder: model tokens with mask 1 and their log-probs, tool output and chat markup with mask 0),
so the actor trains on exactly what was sampled. The finished trajectory (with the outcome the
verifier gave in the sandbox) goes to the reward function in the extra field
`agentrm_trajectory`; the reward itself is left to verl's reward workers (reward.py).

Registered by the recipe's agent_loop.yaml (actor_rollout_ref.rollout.agent.agent_loop_config_path).
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import Sequence
from typing import Any

from verl.experimental.agent_loop.agent_loop import AgentLoopBase, AgentLoopMetrics, AgentLoopOutput

from agentrm.errors import InfrastructureError
from agentrm.protocols import PolicyOutput
from agentrm.rollout.policies.base import ContextLimitExceeded
from agentrm.training.verl_reward import TRAJECTORY_KEY, task_of
from agentrm.types import ExitStatus, Message, TokenTrace, Trajectory

log = logging.getLogger("agentrm.training.verl_agent_loop")


class ServerPolicy:
    """agentrm's Policy over verl's LLM server, called from the rollout driver's thread.

    It keeps one growing token stream per rollout: the first prompt rendered once, then each
    sampled completion and each new observation appended (never re-rendered), so the
    stream verl trains on is the one the server sampled from."""

    name = "verl"

    def __init__(self, agent_loop: AgentLoopBase, sampling_params: dict[str, Any],
                 loop: asyncio.AbstractEventLoop, response_length: int):
        self.agent_loop, self.sampling_params, self.loop = agent_loop, sampling_params, loop
        self.builder = agent_loop.continuous_token_builder
        self.tokenizer: Any = agent_loop.tokenizer
        self.response_length = response_length
        self.request_id = uuid.uuid4().hex
        self.tokens: list[int] = []  # prompt + response so far
        self.prompt_length = 0
        self.mask: list[int] = []  # per response token: 1 = sampled by the model
        self.logprobs: list[float] | None = None
        self._seen = 0  # messages (incl. the last assistant one) the stream already holds

    def act(self, messages: Sequence[Message], tools: Sequence[dict[str, Any]]) -> PolicyOutput:
        from agentrm.rollout.policies.parsing import assistant_message

        self.extend(messages, tools)
        if len(self.mask) >= self.response_length:
            raise ContextLimitExceeded(f"{len(self.mask)} response tokens: rollout.response_length "
                                       f"is {self.response_length}")
        prompt = list(self.tokens)
        out = asyncio.run_coroutine_threadsafe(self.agent_loop.server_manager.generate(
            request_id=self.request_id, prompt_ids=prompt, sampling_params=self.sampling_params),
            self.loop).result()
        if out.log_probs is not None and self.logprobs is None:
            self.logprobs = [0.0] * len(self.mask)
        merged = self.builder.merge_assistant_tokens(self.tokens, out.token_ids)
        self.mask, self.logprobs = self.builder.align_response_metadata(
            merged, self.mask, self.logprobs,
            assistant_logprobs=out.log_probs if self.logprobs is not None else None)
        self.tokens = merged.token_ids
        self._seen = len(messages) + 1
        text = self.tokenizer.decode(out.token_ids, skip_special_tokens=True)
        return PolicyOutput(assistant_message(text), len(prompt), len(out.token_ids), out.log_probs,
                            tokens=TokenTrace(prompt_ids=prompt, completion_ids=list(out.token_ids)))

    def extend(self, messages: Sequence[Message], tools: Sequence[dict[str, Any]]) -> None:
        """Render the first prompt, or append the messages that arrived since the last call."""
        from agentrm.rollout.policies.chat import native_tools
        from agentrm.rollout.policies.parsing import to_template_messages, to_text_messages

        # as agentrm's local policies render: the template's own tool list when it has one,
        # else the tools and calls written as text (tool results as user turns)
        schemas: list[dict[str, Any]] | None = list(tools)
        if native_tools(self.tokenizer):
            rendered = to_template_messages(list(messages))
        else:
            rendered, schemas = to_text_messages(list(messages), list(tools)), None
        if not self._seen:
            self.tokens = self.agent_loop._cap_text_prompt_length(
                self.builder.build_initial_tokens(rendered, tools=schemas))
            self.prompt_length = len(self.tokens)
        else:
            merged = self.builder.merge_context_tokens(rendered[: self._seen], rendered, self.tokens,
                                                       tools=schemas)
            self.mask, self.logprobs = self.builder.align_response_metadata(merged, self.mask, self.logprobs)
            self.tokens = merged.token_ids


class AgentrmAgentLoop(AgentLoopBase):
    """One rollout of an agentrm task: a sandbox, agentrm's driver, verl's server and tokens."""

    def __init__(self, *args: Any, tools: Any = None, command_timeout: float = 30.0,
                 sandbox_factory: Any = None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.command_timeout = float(command_timeout)
        self.sandbox_factory = sandbox_factory  # None: Docker (agentrm.tasks.prepare)
        self.max_turns = self.rollout_config.multi_turn.max_assistant_turns or 20
        self.response_length = self.rollout_config.response_length

    async def run(self, sampling_params: dict[str, Any], **kwargs: Any) -> AgentLoopOutput:
        extra_info = kwargs.get("extra_info") or {}
        policy = ServerPolicy(self, sampling_params, asyncio.get_running_loop(), self.response_length)
        task = task_of(extra_info)
        traj = await asyncio.to_thread(self._rollout, task, policy)
        if not policy.prompt_length:  # ended before the first model call (a broken sandbox)
            from agentrm.rollout.loop import initial_messages
            from agentrm.rollout.tools import TOOL_SCHEMAS

            policy.extend(initial_messages(task), TOOL_SCHEMAS)
        from agentrm.traces.io import record_from_trajectory

        return AgentLoopOutput(
            prompt_ids=policy.tokens[: policy.prompt_length],
            response_ids=policy.tokens[policy.prompt_length:][: self.response_length],
            response_mask=policy.mask[: self.response_length],
            response_logprobs=policy.logprobs[: self.response_length] if policy.logprobs else None,
            num_turns=len(traj.turns) * 2 + 1, metrics=AgentLoopMetrics(),
            extra_fields={TRAJECTORY_KEY: json.dumps(record_from_trajectory(traj), default=str),
                          "agentrm_exit_status": traj.exit_status.value})

    def _rollout(self, task: Any, policy: ServerPolicy) -> Trajectory:
        from agentrm.rollout.loop import Limits, run_trajectory
        from agentrm.tasks import prepare

        limits = Limits(max_turns=self.max_turns, command_timeout=self.command_timeout)
        try:
            with prepare.fresh(task, prepare.sandbox_config(task), self.sandbox_factory) as sandbox:
                return run_trajectory(task, policy, sandbox, limits=limits, engine="direct")
        except InfrastructureError as exc:  # setup failed: unknown reward, never the model's 0
            log.warning("task %s: no sandbox: %s", task.id, exc)
            return Trajectory(uuid.uuid4().hex, task.id, task.id, exit_status=ExitStatus.SANDBOX_ERROR,
                              answer=task.answer, metadata={"error": str(exc)})
