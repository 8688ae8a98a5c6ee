"""vLLM belief backend (prompt log-probs + prefix caching) equals the transformers backend."""

from __future__ import annotations

import os

import pytest

from agentrm.types import ExitStatus, Trajectory, Turn
from agentrm.verifiers import info_gain as IG

pytestmark = [pytest.mark.vllm, pytest.mark.model, pytest.mark.slow]


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from agentrm.models import load_tokenizer

    tok = load_tokenizer("smollm2")
    torch.manual_seed(1)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=128, intermediate_size=256, num_hidden_layers=2,
                      num_attention_heads=2, num_key_value_heads=2, head_dim=64, max_position_embeddings=4096,
                      initializer_range=0.2, tie_word_embeddings=True,
                      bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)
    path = tmp_path_factory.mktemp("tiny-vllm")
    LlamaForCausalLM(cfg).save_pretrained(path)
    tok.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def vllm_beliefs(vllm_module, tiny_dir):
    """One engine for the module (it takes 30 s or more to start)."""
    os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")  # in-process engine: no spawn
    # the CPU KV cache sized explicitly (GiB), not from a fraction of the memory free right now
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    from agentrm.verifiers.info_gain_backends import VLLMBeliefs

    backend = VLLMBeliefs.load(str(tiny_dir), gpu_memory_utilization=0.1, dtype="float32",
                               max_model_len=4096, seed=0)
    yield backend
    del backend


def long_traj(tid: str, turns: int = 6) -> Trajectory:
    obs = [{"role": "user", "content": "Find the config value. " * 20}]
    out = []
    for i in range(turns):
        out.append(Turn(i, obs, {"role": "assistant", "content": f"look {i} " * 30}))
        obs = [{"role": "tool", "content": f"line {i}: value={i * 7} " * 25}]
    return Trajectory(tid, "task", "g", turns=out, exit_status=ExitStatus.SUBMITTED, answer="value=42", reward=1.0)


def test_vllm_equals_transformers(vllm_beliefs, tiny_dir):
    import torch
    from transformers import AutoModelForCausalLM

    from agentrm.verifiers.info_gain_backends import TransformersBeliefs

    model = AutoModelForCausalLM.from_pretrained(tiny_dir, dtype=torch.float32).eval()
    reference = TransformersBeliefs(model, vllm_beliefs.tokenizer, fast=False)
    trajs = [long_traj("a"), long_traj("b", turns=4)]
    got = IG.InfoGainScorer(beliefs=vllm_beliefs).score(trajs)
    want = IG.InfoGainScorer(beliefs=reference).score(trajs)
    beliefs = [s.details["belief_before"] for s in want]
    assert max(beliefs) - min(beliefs) > 1e-3
    assert [s.details["belief_before"] for s in got] == pytest.approx(beliefs, abs=2e-3)
    assert [s.value for s in got] == pytest.approx([s.value for s in want], abs=2e-3)


def test_prefix_cache_is_used(vllm_beliefs):
    before = vllm_beliefs.cached_tokens
    IG.InfoGainScorer(beliefs=vllm_beliefs).score([long_traj("c", turns=8)])
    assert vllm_beliefs.cached_tokens > before  # later turns reuse the earlier turns' blocks
