"""Tiny random-initialised PRM checkpoints of every style, for tests and benchmarks.

No PyPI package ships PRM weights (REWARD_MODELS.md §5), so tests build their own: a small
byte-level BPE tokenizer (ChatML template, `<extra_0>` special separator, `ки` tag) and a Qwen2
decoder with head_dim 64 (vLLM's CPU attention needs ≥ 32). Weights are drawn with a large
initialiser range so that step scores differ visibly between steps: equality checks against an
independent computation are then meaningful, not trivially satisfied by scores all near 0.5.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

CHATML = ("{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}"
          "<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<extra_0>"]
_CORPUS = [
    "Yes No Yes No yes no Step step the task file test run ls cat python pytest bash call",
    "The agent runs a command and reads the output. Is step 1 correct and useful? Answer Yes or No.",
    "def add(a, b): return a + b - 1 * 2 / 3 = 0 1 2 3 4 5 6 7 8 9 [tool] [assistant] [user]",
    "error: not found; 2 passed, 1 failed in 0.1s; echo hello > /workspace/out.txt && cat out.txt",
]


def build_tokenizer(folder: Path | str, vocab_size: int = 600) -> Any:
    """Train a byte-level BPE tokenizer on a fixed corpus; save it (with chat template) to `folder`."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIALS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    core.train_from_iterator(_CORPUS * 20, trainer)
    tok = PreTrainedTokenizerFast(tokenizer_object=core, eos_token="<|im_end|>",
                                  pad_token="<|endoftext|>")
    tok.add_tokens(["ки", "Yes", "No"])  # tag and judge answers: one token each
    tok.chat_template = CHATML
    tok.save_pretrained(str(folder))
    return tok


def _qwen2(vocab: int, seed: int, layers: int = 2, hidden: int = 128, heads: int = 2) -> Any:
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(seed)
    config = Qwen2Config(vocab_size=vocab, hidden_size=hidden, intermediate_size=2 * hidden,
                         num_hidden_layers=layers, num_attention_heads=heads,
                         num_key_value_heads=heads, max_position_embeddings=4096,
                         tie_word_embeddings=False, initializer_range=0.25,
                         pad_token_id=0, bos_token_id=None, eos_token_id=2)
    return Qwen2ForCausalLM(config).eval()


def build_tiny_prm(folder: Path | str, style: str, seed: int = 0, layers: int = 2,
                   hidden: int = 128, heads: int = 2) -> Path:
    """Write a tiny checkpoint of `style` (token-cls | tag | value | judge) into `folder`."""
    import torch
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tok = build_tokenizer(folder)
    lm = _qwen2(len(tok), seed, layers, hidden, heads)
    gen = torch.Generator().manual_seed(seed + 1)
    if style in ("tag", "judge"):
        lm.save_pretrained(str(folder))
        return folder
    state = {k: v.contiguous() for k, v in lm.state_dict().items() if k.startswith("model.")}
    h = lm.config.hidden_size
    if style == "token-cls":  # Qwen2ForProcessRewardModel: score.0 → ReLU → score.2
        state["score.0.weight"] = torch.randn(h, h, generator=gen) / h ** 0.5
        state["score.0.bias"] = torch.randn(h, generator=gen) * 0.1
        state["score.2.weight"] = torch.randn(2, h, generator=gen) * 2 / h ** 0.5
        state["score.2.bias"] = torch.randn(2, generator=gen) * 0.1
        architecture, extra = "Qwen2ForProcessRewardModel", {"num_labels": 2}
    elif style == "value":  # Skywork: causal LM + v_head Linear(hidden, 1)
        state["lm_head.weight"] = lm.lm_head.weight.detach().contiguous()
        state["v_head.weight"] = torch.randn(1, h, generator=gen) * 2 / h ** 0.5
        state["v_head.bias"] = torch.randn(1, generator=gen) * 0.1
        architecture, extra = "Qwen2ForCausalLM", {}
    else:
        raise ValueError(f"unknown style {style!r}")
    save_file(state, str(folder / "model.safetensors"), metadata={"format": "pt"})
    config = lm.config.to_dict()
    config.update({"architectures": [architecture], **extra})
    (folder / "config.json").write_text(json.dumps(config, indent=2))
    return folder


_COMMANDS = ["ls", "cat file.py", "python -m pytest -q", "grep -n def file.py", "echo done"]
_OUTPUTS = ["file.py test_file.py", "def add(a, b): return a - b", "1 failed, 2 passed in 0.1s",
            "3:def add(a, b):", "error: not found", "2 passed in 0.1s"]


def sample_trajectory(traj_id: str, n_steps: int, seed: int = 0, words: int = 0,
                      context_words: int = 0) -> Any:
    """A tool-using agent trajectory with `n_steps` turns (bash calls and their outputs).

    `words` pads each tool output, `context_words` the system prompt (where real agents carry
    tool descriptions), with that many extra words: longer inputs for benchmarks.
    """
    import random

    from agentrm.types import Trajectory, Turn

    rng = random.Random(seed)
    tools = " ".join(rng.choice(_CORPUS[0].split()) for _ in range(context_words))
    observation = [{"role": "system", "content": f"You are an agent. Use the bash tool. {tools}".strip()},
                   {"role": "user", "content": "Fix the failing test in file.py"}]
    turns = []
    for k in range(n_steps):
        call_id = f"{traj_id}-c{k}"
        command = rng.choice(_COMMANDS)
        assistant = {"role": "assistant", "content": f"Step {k}: I will run {command}",
                     "tool_calls": [{"id": call_id, "type": "function", "function": {
                         "name": "bash", "arguments": json.dumps({"cmd": command})}}]}
        turns.append(Turn(k, observation, assistant))
        padding = " ".join(rng.choice(_CORPUS[k % len(_CORPUS)].split()) for _ in range(words))
        observation = [{"role": "tool", "tool_call_id": call_id,
                        "content": f"{rng.choice(_OUTPUTS)} {padding}".strip()}]
    return Trajectory(traj_id, "fix-test", "g0", turns, tail=observation)
