"""transformers backend: one backbone forward pass per trajectory, a small head at read-outs.

Every style reads the backbone's final hidden state h at chosen positions and applies a head:
    token-cls  softmax(score(h))[1]            score = Linear→ReLU→Linear (Qwen PRM) or Linear
    tag        softmax(W_lm[[good, bad]] h)[0]   = p(good) / (p(good) + p(bad))
    value      sigmoid(v · h + b)               (Skywork v_head)
    judge      as tag with Yes/No, after each step's question
Only the needed rows of the LM head are multiplied (2 × hidden instead of vocab × hidden per
token). Batches are bucketed by length (sorted, right-padded). The judge packs all per-step
prompts of a trajectory into one sequence with a block attention mask: prompt k's question
attends to the shared stream up to step k and to itself, with positions continuing from step k
— identical to running each prompt separately, in one pass (no prefix is re-encoded).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from agentrm.errors import InputError, PrerequisiteError
from agentrm.verifiers.prm_format import Encoded, JudgeEncoded

log = logging.getLogger("agentrm.verifiers.prm")

Readout = tuple[float, float]  # (probability, raw: logit difference or value)


def _checkpoint_tensors(location: Path | str, prefixes: Sequence[str]) -> dict[str, Any]:
    """Tensors whose names start with one of `prefixes`, read from the checkpoint's safetensors."""
    from safetensors import safe_open

    folder = Path(str(location))
    if not folder.is_dir():
        raise PrerequisiteError(f"--model {location}: a local checkpoint directory is needed for this style")
    out: dict[str, Any] = {}
    for file in sorted(folder.glob("*.safetensors")):
        with safe_open(str(file), framework="pt") as handle:
            for key in handle.keys():
                if key.startswith(tuple(prefixes)):
                    out[key] = handle.get_tensor(key)
    return out


def token_cls_head(location: Path | str) -> Callable[[Any], Any]:
    """hidden → 2 logits, from `score.0/score.2` (Qwen2ForProcessRewardModel) or `score`/`classifier`."""
    import torch

    t = {k: v.float() for k, v in _checkpoint_tensors(location, ("score.", "classifier.")).items()}
    if "score.0.weight" in t:
        w0, b0, w2, b2 = (t[k] for k in ("score.0.weight", "score.0.bias", "score.2.weight", "score.2.bias"))
        return lambda h: torch.relu(h @ w0.T + b0) @ w2.T + b2
    for name in ("score", "classifier"):
        if f"{name}.weight" in t:
            w, b = t[f"{name}.weight"], t.get(f"{name}.bias")
            if w.shape[0] != 2:
                raise InputError(f"--model {location}: {name} head has {w.shape[0]} labels, token-cls needs 2")
            return lambda h, w=w, b=b: h @ w.T + (b if b is not None else 0)
    raise InputError(f"--model {location}: no token-classification head (score.* / classifier.*) found")


def value_head(location: Path | str) -> Callable[[Any], Any]:
    """hidden → 1 value, from a `v_head.*` linear layer (Skywork-o1-Open-PRM naming)."""
    t = {k: v.float() for k, v in _checkpoint_tensors(location, ("v_head.", "value_head.")).items()}
    weights = [k for k in t if k.endswith("weight") and t[k].dim() == 2 and t[k].shape[0] == 1]
    if len(weights) != 1:
        raise InputError(f"--model {location}: no value head (v_head.*weight of shape 1×hidden) found")
    w = t[weights[0]]
    b = t.get(weights[0][: -len("weight")] + "bias")
    return lambda h: (h @ w.T + (b if b is not None else 0))


def pair_head(lm_head_weight: Any, good: int, bad: int) -> Callable[[Any], Any]:
    """hidden → [logit(good), logit(bad)] with just two rows of the LM head."""
    rows = lm_head_weight.detach()[[good, bad]].float()
    return lambda h: h @ rows.T


def readouts(logits: Any, style: str) -> list[Readout]:
    """Head outputs (n, 2) or (n, 1) → (probability, raw) per row, in fp32."""
    import torch

    logits = logits.float()
    if style == "value":
        raw = logits[:, 0]
        return list(zip(torch.sigmoid(raw).tolist(), raw.tolist(), strict=False))
    if style == "token-cls":  # class 1 is "good"
        probs, raw = torch.softmax(logits, -1)[:, 1], logits[:, 1] - logits[:, 0]
    else:  # tag / judge: column 0 is good/Yes
        probs, raw = torch.softmax(logits, -1)[:, 0], logits[:, 0] - logits[:, 1]
    return list(zip(probs.tolist(), raw.tolist(), strict=False))


MAX_PADDING = 0.1  # a bucket's padded tokens may exceed its real tokens by at most this share


def _buckets(lengths: Sequence[int], batch_size: int, cpu: bool = False) -> list[list[int]]:
    """Forward batches chosen by length. On CPU every trajectory runs alone: a CPU forward is
    already compute-bound at one sequence, so batching only adds padding (measured: batch 8
    at 0.7x the speed of a plain one-by-one loop). Elsewhere, sorted by length, a bucket grows
    up to `batch_size` while its padding stays within MAX_PADDING of its real tokens."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    if cpu or batch_size <= 1:
        return [[i] for i in order]
    buckets: list[list[int]] = []
    for i in order:
        bucket = buckets[-1] if buckets else None
        if bucket and len(bucket) < batch_size:
            real = sum(lengths[j] for j in bucket) + lengths[i]
            if lengths[i] * (len(bucket) + 1) <= (1 + MAX_PADDING) * real:  # sorted: i is widest
                bucket.append(i)
                continue
        buckets.append([i])
    return buckets


class HFBackbone:
    """A loaded backbone (decoder without LM head) and the device/dtype it runs in."""

    def __init__(self, model: Any, pad_id: int):
        self.model = model
        self.pad_id = pad_id
        param = next(model.parameters())
        self.device, self.dtype = param.device, param.dtype

    def hidden(self, ids: Any, attention_mask: Any, position_ids: Any = None) -> Any:
        out = self.model(input_ids=ids, attention_mask=attention_mask, position_ids=position_ids,
                         use_cache=False)
        return out.last_hidden_state if hasattr(out, "last_hidden_state") else out[0]

    def read_steps(self, items: Sequence[Encoded], head: Callable[[Any], Any], style: str,
                   batch_size: int) -> list[list[Readout | None]]:
        """Per item, per step: read-out at each separator (None where truncated away)."""
        import torch

        results: list[list[Readout | None]] = [[] for _ in items]
        for bucket in _buckets([len(e.ids) for e in items], batch_size, self.device.type == "cpu"):
            width = max(len(items[i].ids) for i in bucket)
            ids = torch.full((len(bucket), width), self.pad_id, dtype=torch.long)
            for row, i in enumerate(bucket):
                ids[row, : len(items[i].ids)] = torch.tensor(items[i].ids)
            with torch.inference_mode():
                # Right padding under a causal mask: real tokens never attend to the pads, so no
                # padding mask is needed, and without one SDPA takes its fast is_causal kernel.
                h = self.hidden(ids.to(self.device), None)
                rows, cols, owners = [], [], []
                for row, i in enumerate(bucket):
                    for k, pos in enumerate(items[i].read_at):
                        if pos is not None:
                            rows.append(row), cols.append(pos), owners.append((i, k))
                values = readouts(head(h[rows, cols].float().cpu()), style) if rows else []
            for i in bucket:
                results[i] = [None] * len(items[i].read_at)
            for (i, k), value in zip(owners, values, strict=False):
                results[i][k] = value
        return results

    def read_judge(self, items: Sequence[JudgeEncoded], head: Callable[[Any], Any],
                   batch_size: int) -> list[list[Readout | None]]:
        """Per item, per step: the Yes/No read-out of its question, all questions in one pass."""
        import torch

        packed = [pack_judge(e) for e in items]
        results: list[list[Readout | None]] = [[] for _ in items]
        for bucket in _buckets([len(p[0]) for p in packed], batch_size, self.device.type == "cpu"):
            width = max(len(packed[i][0]) for i in bucket)
            ids = torch.full((len(bucket), width), self.pad_id, dtype=torch.long)
            pos = torch.zeros((len(bucket), width), dtype=torch.long)
            allowed = torch.eye(width, dtype=torch.bool).repeat(len(bucket), 1, 1)
            for row, i in enumerate(bucket):
                p_ids, p_pos, p_allowed, _ = packed[i]
                n = len(p_ids)
                ids[row, :n], pos[row, :n] = torch.tensor(p_ids), torch.tensor(p_pos)
                allowed[row, :n, :n] = p_allowed
            mask = torch.zeros(allowed.shape, dtype=self.dtype)
            mask.masked_fill_(~allowed, torch.finfo(self.dtype).min)
            with torch.inference_mode():
                h = self.hidden(ids.to(self.device), mask[:, None].to(self.device), pos.to(self.device))
                rows, cols, owners = [], [], []
                for row, i in enumerate(bucket):
                    for k, at in enumerate(packed[i][3]):
                        if at is not None:
                            rows.append(row), cols.append(at), owners.append((i, k))
                values = readouts(head(h[rows, cols].float().cpu()), "judge") if rows else []
            for i in bucket:
                results[i] = [None] * len(items[i].questions)
            for (i, k), value in zip(owners, values, strict=False):
                results[i][k] = value
        return results


def pack_judge(enc: JudgeEncoded) -> tuple[list[int], list[int], Any, list[int | None]]:
    """(ids, position ids, allowed[q, k] attention matrix, read position per step)."""
    import torch

    n_stream = len(enc.stream)
    live = [(k, q) for k, q in enumerate(enc.questions) if enc.step_end[k] is not None]
    total = n_stream + sum(len(q) for _, q in live)
    allowed = torch.ones((n_stream, n_stream), dtype=torch.bool).tril()
    allowed = torch.nn.functional.pad(allowed, (0, total - n_stream, 0, total - n_stream))
    ids, positions = list(enc.stream), list(range(n_stream))
    read_at: list[int | None] = [None] * len(enc.questions)
    for k, question in live:
        start, end = len(ids), len(ids) + len(question)
        allowed[start:end, : enc.step_end[k]] = True
        allowed[start:end, start:end] = torch.ones((len(question),) * 2, dtype=torch.bool).tril()
        ids.extend(question)
        positions.extend(range(enc.step_end[k], enc.step_end[k] + len(question)))
        read_at[k] = end - 1
    return ids, positions, allowed, read_at


@contextlib.contextmanager
def quiet_transformers():
    """Loading a backbone from a PRM checkpoint reports the head weights as "unexpected" and
    draws progress bars; both are expected here, and library code must not print."""
    from transformers.utils import logging as hf_logging

    level, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)
        if bars:
            hf_logging.enable_progress_bar()


class HFBackend:
    """Loads the model for one style and reads per-step scores with HFBackbone."""

    def __init__(self, model: str, style: str, pair: tuple[int, int] | None, device: str | None):
        from agentrm.models import resolve_model

        location = resolve_model(model)
        self.style = style
        with quiet_transformers():
            backbone, config = self._load(model, location, style, pair, device)
        self.backbone = HFBackbone(backbone, pad_id=0)  # padded positions are masked out
        self.context_size = int(getattr(config, "max_position_embeddings", 0) or 4096)
        log.info("loaded %s PRM %s on %s (%s)", style, location, self.backbone.device, self.backbone.dtype)

    def _load(self, model: str, location: Any, style: str, pair: Any, device: str | None) -> tuple:
        from agentrm.models import default_dtype, load_causal_lm, pick_device

        if style in ("tag", "judge"):
            lm, _ = load_causal_lm(model, device)
            backbone, config = lm.base_model, lm.config
            self.head = pair_head(lm.get_output_embeddings().weight, *pair)
        else:
            from transformers import AutoModel

            target = pick_device(device)
            try:
                backbone = AutoModel.from_pretrained(str(location), dtype=default_dtype(target))
            except OSError as exc:
                raise PrerequisiteError(f"cannot load model {model!r}: {str(exc).splitlines()[0]}") from exc
            backbone.to(target).eval()
            config = backbone.config
            self.head = token_cls_head(location) if style == "token-cls" else value_head(location)
        return backbone, config

    def read_steps(self, items: Sequence[Encoded], batch_size: int) -> list[list[Readout | None]]:
        return self.backbone.read_steps(items, self.head, self.style, batch_size)

    def read_judge(self, items: Sequence[JudgeEncoded], batch_size: int) -> list[list[Readout | None]]:
        return self.backbone.read_judge(items, self.head, batch_size)
