"""Policy backends behind one protocol, picked by a spec string.

    scripted:FILE                 play a file of actions / replay a recorded trajectory
    transformers:PATH_OR_ID       local generation (default: transformers:smollm2)
    openai:BASE_URL#MODEL         any OpenAI-compatible endpoint (MODEL optional for vllm serve)
    vllm:PATH_OR_ID               an in-process vLLM engine
Options follow a `?`: `transformers:smollm2?temperature=0.2&max_new_tokens=128`.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl

from agentrm.errors import InputError
from agentrm.protocols import Policy
from agentrm.rollout.policies.base import ContextLimitExceeded, ModelError, coerce
from agentrm.rollout.policies.scripted import ScriptedPolicy

DEFAULT_POLICY = "transformers:smollm2"
KINDS = ("scripted", "transformers", "openai", "vllm")

__all__ = ["DEFAULT_POLICY", "ContextLimitExceeded", "ModelError", "ScriptedPolicy",
           "make_policy", "parse_spec"]


def parse_spec(spec: str) -> tuple[str, str, dict[str, Any]]:
    """'kind:target?k=v' -> (kind, target, options)."""
    kind, sep, rest = spec.partition(":")
    if not sep or kind not in KINDS:
        raise InputError(f"policy spec {spec!r}: expected one of "
                         f"{', '.join(k + ':…' for k in KINDS)} (flag --policy)")
    target, _, query = rest.partition("?")
    options = {k: coerce(v) for k, v in parse_qsl(query, keep_blank_values=True)}
    return kind, target, options


def make_policy(spec: str | None = None, **options: Any) -> Policy:
    kind, target, parsed = parse_spec(spec or DEFAULT_POLICY)
    options = {**parsed, **options}
    try:
        if kind == "scripted":
            return ScriptedPolicy.from_file(target)
        if kind == "transformers":
            from agentrm.rollout.policies.transformers import TransformersPolicy

            return TransformersPolicy(target or None, name=spec, **options)
        if kind == "vllm":
            from agentrm.rollout.policies.vllm import VLLMPolicy

            return VLLMPolicy(target or None, name=spec, **options)
        from agentrm.rollout.policies.openai import OpenAIPolicy

        base_url, _, model = target.partition("#")
        if not base_url.startswith(("http://", "https://")):
            raise InputError(f"policy spec {spec!r}: give openai:http(s)://HOST:PORT/v1#MODEL")
        return OpenAIPolicy(base_url, model or None, name=spec, **options)
    except TypeError as exc:  # an unknown ?option
        raise InputError(f"policy spec {spec!r}: {exc}") from exc
