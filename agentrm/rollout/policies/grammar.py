"""Constrained decoding of actions for small local policies, with xgrammar.

`constrain=True` makes every completion a well-formed action of the chosen format:
  tool_call   <tool_call>{"name": NAME, "arguments": {...}}</tool_call>, the object checked
              against that tool's JSON schema (required keys, types, no extra keys)
  bash_block  one ```bash fenced block (mini-swe-agent's action format)
The grammar is built once per (format, tools) and compiled once per tokenizer. transformers
uses xgrammar's own logits processor; vLLM gets the same grammar as EBNF through its structured
outputs. Log-probs stay those of the unconstrained model (what a trainer recomputes).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Sequence
from typing import Any

TOOL_CALL, BASH_BLOCK = "tool_call", "bash_block"
ACTION_FORMATS = (TOOL_CALL, BASH_BLOCK)

# A fenced block of at most 6 lines of at most 120 characters, without backticks (use $(…)):
# bounded, so a small model cannot loop inside the block until its token budget runs out.
_BASH_EBNF = r'''
root ::= "```bash\n" body "\n```"
body ::= line ("\n" line){0,5}
line ::= [^\n`] [^\n`]{0,119}
'''


def action_schema(tools: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """JSON schema of one call: {"name": const, "arguments": the tool's parameters}."""
    choices = []
    for tool in tools:
        fn = tool.get("function", tool)
        params: dict[str, Any] = dict(fn.get("parameters") or {"type": "object", "properties": {}})
        params.setdefault("additionalProperties", False)
        choices.append({"type": "object", "additionalProperties": False,
                        "required": ["name", "arguments"],
                        "properties": {"name": {"const": fn["name"]}, "arguments": params}})
    return {"anyOf": choices}


@functools.lru_cache(maxsize=16)
def _grammar(action_format: str, tools_json: str):
    import xgrammar as xgr

    if action_format == BASH_BLOCK:
        return xgr.Grammar.from_ebnf(_BASH_EBNF)
    if action_format != TOOL_CALL:
        raise ValueError(f"action_format {action_format!r}: choose from {', '.join(ACTION_FORMATS)}")
    schema = action_schema(json.loads(tools_json))
    return xgr.Grammar.concat(xgr.Grammar.from_regex("<tool_call>"),
                              xgr.Grammar.from_json_schema(schema, any_whitespace=False),
                              xgr.Grammar.from_regex("</tool_call>"))


def action_grammar(action_format: str, tools: Sequence[dict[str, Any]]):
    """The xgrammar Grammar of one action (str() of it is EBNF)."""
    return _grammar(action_format, json.dumps(list(tools), sort_keys=True))


class HFConstraint:
    """Makes a fresh xgrammar logits processor per `generate` call; compiles once per grammar."""

    def __init__(self, tokenizer: Any, vocab_size: int):
        import xgrammar as xgr

        info = xgr.TokenizerInfo.from_huggingface(tokenizer, vocab_size=vocab_size)
        self._compiler = xgr.GrammarCompiler(info)
        self._compiled: dict[int, tuple[Any, Any]] = {}

    def processor(self, grammars: Sequence[Any]) -> Any:
        """The processor of one `generate` call whose batch row i follows grammars[i]."""
        from xgrammar.contrib.hf import LogitsProcessor

        compiled = []
        for grammar in grammars:
            if id(grammar) not in self._compiled:  # the grammar is kept too: its id stays its own
                self._compiled[id(grammar)] = (grammar, self._compiler.compile_grammar(grammar))
            compiled.append(self._compiled[id(grammar)][1])
        return _MaskACopy(LogitsProcessor(compiled))  # single use: its matcher state is one call's


class _MaskACopy:
    """xgrammar masks the scores in place, and `generate` keeps that very tensor as the step's
    raw logits: the recorded log-probs would be those of the masked distribution (1.0 for
    every forced token), not the model's, and a trainer's importance ratio against them would
    start below 1. Masking a copy keeps the model's own distribution for the log-probs."""

    def __init__(self, inner: Any):
        self.inner = inner

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        return self.inner(input_ids, scores.clone())


def vllm_structured(grammar) -> Any:
    """vLLM StructuredOutputsParams for the grammar (xgrammar is vLLM's default backend)."""
    from vllm.sampling_params import StructuredOutputsParams

    return StructuredOutputsParams(grammar=str(grammar))
