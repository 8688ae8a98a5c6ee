"""Train a token-classification PRM from the trace store (`agentrm train prm`).

Step labels (one per turn) come from
  progress — stored `progress` scores: V(h_{t+1}), the share of K prover continuations from the
             state after turn t that end verified (Monte-Carlo branch rollouts out of sandbox
             snapshots); turn t is good when that share ≥ `min_share` (0.5 by default;
             Math-Shepherd's "hard" label is any success, `min_share` just above 0), or with
             `soft_labels` the share itself is the target (Math-Shepherd's "soft" estimate);
  FILE     — ProcessBench-shaped first-error labels (steps before it good, it bad, rest unused);
  outcome  — every turn gets the trajectory's verified outcome (an ORM-style baseline).

Rows are kept in TRL's stepwise-supervision shape {prompt, completions, labels} (written to
`stepwise.jsonl`; soft labels are numbers in [0, 1] there). TRL 1.x no longer ships its
PRMTrainer, so the loop here trains with TRL's label convention — cross-entropy only at each
step's separator token, −100 elsewhere (against p and 1 − p for a soft label p) — on the
very token layout `agentrm score --style token-cls` reads (prm_format.StepFormatter), so train
and score cannot drift apart. The result is a backbone plus a Qwen2.5-Math-PRM-style head
(`score.0` → ReLU → `score.2`); a Qwen2 backbone is saved as `Qwen2ForProcessRewardModel`,
which vLLM serves natively.
"""

from __future__ import annotations

import json
import logging
import random
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from agentrm.errors import InputError
from agentrm.types import Score, ScoreLevel, Trajectory

log = logging.getLogger("agentrm.training.prm_train")
IGNORE = -100  # label of every token that is not a step's separator (TRL's convention)


@dataclass
class PRMTrainConfig:
    base: str = "smollm2"  # backbone: "smollm2" (embedded) or a local checkpoint directory
    labels: str = "progress"  # progress | outcome | path to a first-error JSONL file
    min_share: float = 0.5  # progress: a turn is good when ≥ this share of branches succeed
    threshold: float = 1.0  # outcome: reward ≥ this is a success
    epochs: int = 3
    lr: float = 1e-4
    head_lr: float = 1e-3
    batch_size: int = 4
    max_length: int = 1024
    seed: int = 0
    freeze_backbone: bool = False  # train the head only, on hidden states computed once
    lora_rank: int = 0  # > 0: LoRA adapters of this rank on every projection (peft), merged at save
    lora_alpha: float | None = None  # LoRA scale numerator; None = 2 × rank
    soft_labels: bool = False  # progress: the branch share itself is the target, not share ≥ min_share
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1 or self.lr <= 0:
            raise InputError("--epochs, --batch-size must be ≥ 1 and --lr > 0")
        if not 0.0 < self.min_share <= 1.0:
            raise InputError(f"--min-share {self.min_share}: must be in (0, 1]")
        if self.lora_rank < 0 or (self.lora_rank and self.freeze_backbone):
            raise InputError(f"--lora-rank {self.lora_rank}: must be ≥ 0, and LoRA trains the backbone "
                             "(drop --freeze-backbone)")


Label = bool | float  # a hard step label, or a soft one: the probability that the step is good


def labels_from_progress(scores: Sequence[Score], min_share: float, soft: bool = False
                         ) -> dict[str, list[Label | None]]:
    """Turn t's label from the stored progress row's V(h_{t+1}) (details.value_after.value):
    share ≥ min_share, or (soft) the share itself."""
    by_traj: dict[str, dict[int, Label | None]] = {}
    for s in scores:
        if s.scorer != "progress" or s.level != ScoreLevel.TURN or s.turn_index is None:
            continue
        after = (s.details or {}).get("value_after") or {}
        share = after.get("value")
        label = None if share is None else float(share) if soft else share >= min_share
        by_traj.setdefault(s.trajectory_id, {})[s.turn_index] = label
    return {tid: [turns.get(i) for i in range(max(turns) + 1)] for tid, turns in by_traj.items()}


def labels_from_outcome(trajs: Sequence[Trajectory], threshold: float) -> dict[str, list[Label | None]]:
    return {t.id: [t.reward >= threshold] * len(t.turns) for t in trajs if t.reward is not None}


def labels_from_first_error(first: dict[str, int], trajs: Sequence[Trajectory]) -> dict[str, list[Label | None]]:
    out: dict[str, list[Label | None]] = {}
    for t in trajs:
        if t.id in first:
            k = first[t.id]
            out[t.id] = [True] * len(t.turns) if k == -1 else \
                [True] * k + [False] + [None] * (len(t.turns) - k - 1)
    return out


def step_labels(trajs: Sequence[Trajectory], scores: Sequence[Score], cfg: PRMTrainConfig
                ) -> dict[str, list[Label | None]]:
    if cfg.labels == "progress":
        got = labels_from_progress(scores, cfg.min_share, cfg.soft_labels)
        if not got:
            raise InputError("--labels progress: no stored progress scores for these trajectories "
                             "(run `agentrm score --run RUN -s progress` first)")
        return got
    if cfg.labels == "outcome":
        return labels_from_outcome(trajs, cfg.threshold)
    from agentrm.evaluation.data import read_step_labels

    return labels_from_first_error(read_step_labels(Path(cfg.labels)), trajs)


def _prefix(traj: Trajectory, k: int) -> Trajectory:
    """The first k turns, the (k+1)-th turn's observation as the tail (what turn k−1 received)."""
    tail = traj.turns[k].observation if k < len(traj.turns) else traj.tail
    return replace(traj, turns=traj.turns[:k], tail=list(tail))


def labelled(traj: Trajectory, labels: Sequence[Label | None]) -> tuple[Trajectory, list[Label]] | None:
    """The trajectory cut at its first unlabelled turn, with the labels of what is left."""
    labels = list(labels[:len(traj.turns)]) + [None] * (len(traj.turns) - len(labels))
    keep = labels.index(None) if None in labels else len(labels)
    if keep == 0:
        return None
    return _prefix(traj, keep), [v if isinstance(v, float) else bool(v) for v in labels[:keep]]


def stepwise_rows(items: Sequence[tuple[Trajectory, list[Label]]]) -> list[dict[str, Any]]:
    """TRL's stepwise-supervision rows: prompt (the task context), completions (steps), labels."""
    from agentrm.verifiers.prm_format import context_text, step_texts

    return [{"id": t.id, "prompt": context_text(t), "completions": step_texts(t), "labels": y}
            for t, y in items]


def prm_config(base: str, max_length: int) -> Any:
    """The scorer's own token-cls settings (template, system prompt, separator)."""
    from agentrm.verifiers.prm import PRMConfig

    return PRMConfig(model=base, style="token-cls", max_length=max_length).resolved()


def encode(items: Sequence[tuple[Trajectory, list[Label]]], tokenizer: Any, sep_id: int, cfg: Any
           ) -> list[tuple[list[int], list[float]]]:
    """(input ids, per-token targets): the step label (1/0, or a soft p) at each separator,
    IGNORE elsewhere."""
    from agentrm.verifiers.prm_format import StepFormatter, Template

    fmt = StepFormatter(tokenizer, Template(cfg.template, cfg.system, cfg.step_format), sep_id, cfg.max_length)
    out = []
    for traj, labels in items:
        enc = fmt.encode(traj)
        target = [float(IGNORE)] * len(enc.ids)
        for pos, label in zip(enc.read_at, labels, strict=True):
            if pos is not None:
                target[pos] = float(label)
        if any(v != IGNORE for v in target):
            out.append((enc.ids, target))
    return out


def train_prm(items: Sequence[tuple[Trajectory, list[Label]]], out_dir: Path, cfg: PRMTrainConfig,
              on_step: Callable[[int, int, float], None] | None = None) -> dict[str, Any]:
    """Train on (trajectory, step labels) pairs; save a token-cls checkpoint in `out_dir`."""
    if not items:
        raise InputError("no labelled steps to train on (check --labels and --run)")
    random.Random(cfg.seed).shuffle(items := list(items))
    model, tokenizer, sep_id = build(cfg.base, cfg.seed)
    if cfg.lora_rank:
        add_lora(model, cfg.lora_rank, cfg.lora_alpha)
    data = encode(items, tokenizer, sep_id, prm_config(cfg.base, cfg.max_length))
    loop = head_loop if cfg.freeze_backbone else train_loop
    losses = loop(model, data, cfg, tokenizer.pad_token_id or 0, on_step)
    if cfg.lora_rank:
        model.backbone = model.backbone.merge_and_unload()  # plain weights: any backend loads them
    out_dir.mkdir(parents=True, exist_ok=True)
    save(model, tokenizer, out_dir)
    rows = stepwise_rows(items)
    (out_dir / "stepwise.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    steps = sum(len(r["labels"]) for r in rows)
    summary = {"trajectories": len(rows), "steps": steps,
               "good_steps": sum(v >= cfg.min_share for r in rows for v in r["labels"]), "losses": losses,
               "config": asdict(cfg), "model": str(out_dir)}
    (out_dir / "training.json").write_text(json.dumps(summary, indent=2))
    return summary


SEPARATOR = "<extra_0>"


class _PRM:
    """Backbone + two-layer head, as torch modules (built lazily: torch only where models run)."""

    def __init__(self, backbone: Any, head: Any):
        self.backbone, self.head = backbone, head

    def logits(self, ids: Any, mask: Any) -> Any:
        return self.head(self.backbone(input_ids=ids, attention_mask=mask).last_hidden_state)


def build(base: str, seed: int) -> tuple[_PRM, Any, int]:
    """The backbone of `base`, a fresh head, and a tokenizer in which the separator is one token."""
    import torch
    from transformers import AutoModel

    from agentrm.models import load_tokenizer, resolve_model

    torch.manual_seed(seed)
    tokenizer = load_tokenizer(base)
    if SEPARATOR not in tokenizer.get_vocab():
        tokenizer.add_tokens([SEPARATOR], special_tokens=True)
    from agentrm.verifiers.prm_hf import quiet_transformers

    with quiet_transformers():  # a PRM checkpoint as base: its old head is not loaded, by design
        backbone = AutoModel.from_pretrained(str(resolve_model(base)), dtype=torch.float32)
        if len(tokenizer) > backbone.get_input_embeddings().num_embeddings:
            backbone.resize_token_embeddings(len(tokenizer))  # the new separator row
    h = backbone.config.hidden_size
    head = torch.nn.Sequential(torch.nn.Linear(h, h), torch.nn.ReLU(), torch.nn.Linear(h, 2))
    return _PRM(backbone, head), tokenizer, tokenizer.convert_tokens_to_ids(SEPARATOR)


LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def add_lora(model: _PRM, rank: int, alpha: float | None) -> None:
    """Freeze the backbone and give its attention and MLP projections trainable low-rank
    adapters (the head stays fully trainable): far fewer parameters to fit from a few hundred
    labelled steps than a full fine-tune, and more than a frozen backbone can express."""
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(r=rank, lora_alpha=alpha or 2 * rank, lora_dropout=0.05, bias="none",
                        target_modules=LORA_TARGETS)
    model.backbone = get_peft_model(model.backbone, config)


def _batches(data: list, size: int, rng: random.Random) -> list[list]:
    order = list(range(len(data)))
    rng.shuffle(order)
    return [[data[i] for i in order[k:k + size]] for k in range(0, len(order), size)]


def soft_cross_entropy(logits: Any, target: Any) -> Any:
    """Mean cross-entropy at the labelled positions (target ≠ IGNORE) against p = target:
    −[p·log q_good + (1 − p)·log q_bad]. For p ∈ {0, 1} it is TRL's hard-label loss
    (F.cross_entropy with ignore_index); a soft p keeps how sure the branch estimate is."""
    import torch

    keep = target != IGNORE
    logp = torch.log_softmax(logits[keep], dim=-1)
    p = target[keep]
    return -(p * logp[:, 1] + (1 - p) * logp[:, 0]).mean()


def train_loop(model: _PRM, data: list[tuple[list[int], list[float]]], cfg: PRMTrainConfig, pad_id: int,
               on_step: Callable[[int, int, float], None] | None = None) -> list[float]:
    """AdamW over cross-entropy at the separator tokens; returns the mean loss of each epoch."""
    import torch

    model.backbone.train()
    trainable = [p for p in model.backbone.parameters() if p.requires_grad]  # LoRA: adapters only
    opt = torch.optim.AdamW([{"params": trainable, "lr": cfg.lr},
                             {"params": model.head.parameters(), "lr": cfg.head_lr}])
    rng, losses = random.Random(cfg.seed), []
    total = cfg.epochs * ((len(data) + cfg.batch_size - 1) // cfg.batch_size)
    step = 0
    for _ in range(cfg.epochs):
        epoch = []
        for batch in _batches(data, cfg.batch_size, rng):
            width = max(len(ids) for ids, _ in batch)
            ids = torch.tensor([x + [pad_id] * (width - len(x)) for x, _ in batch])
            mask = torch.tensor([[1] * len(x) + [0] * (width - len(x)) for x, _ in batch])
            target = torch.tensor([y + [float(IGNORE)] * (width - len(y)) for _, y in batch])
            loss = soft_cross_entropy(model.logits(ids, mask), target)
            opt.zero_grad()
            loss.backward()
            opt.step()
            epoch.append(float(loss.detach()))
            step += 1
            if on_step is not None:
                on_step(step, total, epoch[-1])
        losses.append(sum(epoch) / len(epoch))
    model.backbone.eval()
    return losses


def head_loop(model: _PRM, data: list[tuple[list[int], list[float]]], cfg: PRMTrainConfig, pad_id: int,
              on_step: Callable[[int, int, float], None] | None = None) -> list[float]:
    """Frozen backbone: one no-grad pass per trajectory collects the hidden states at the
    separators, then `epochs` full-batch AdamW steps fit the head on them (cheap on a CPU)."""
    import torch

    feats, labels = [], []  # hidden states at the separators, their (soft) labels
    with torch.no_grad():
        for i, (ids, target) in enumerate(data):
            hidden = model.backbone(input_ids=torch.tensor([ids])).last_hidden_state[0]
            at = [k for k, v in enumerate(target) if v != IGNORE]
            feats.append(hidden[at])
            labels.extend(target[k] for k in at)
            if on_step is not None:
                on_step(i + 1, len(data) + cfg.epochs, float("nan"))
    x, y = torch.cat(feats), torch.tensor(labels, dtype=torch.float32)
    opt = torch.optim.AdamW(model.head.parameters(), lr=cfg.head_lr)
    losses = []
    for e in range(cfg.epochs):
        loss = soft_cross_entropy(model.head(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
        if on_step is not None:
            on_step(len(data) + e + 1, len(data) + cfg.epochs, losses[-1])
    return losses


def save(model: _PRM, tokenizer: Any, out_dir: Path) -> None:
    """model.* backbone weights + score.0/score.2 head in one safetensors file, config, tokenizer."""
    from safetensors.torch import save_file

    state = {f"model.{k}": v.detach().contiguous().clone() for k, v in model.backbone.state_dict().items()}
    for i in (0, 2):
        state[f"score.{i}.weight"] = model.head[i].weight.detach().contiguous().clone()
        state[f"score.{i}.bias"] = model.head[i].bias.detach().contiguous().clone()
    save_file(state, str(out_dir / "model.safetensors"), metadata={"format": "pt"})
    config = model.backbone.config.to_dict()
    config["num_labels"] = 2
    if config.get("model_type") == "qwen2":  # vLLM's native PRM class reads this layout
        config["architectures"] = ["Qwen2ForProcessRewardModel"]
    (out_dir / "config.json").write_text(json.dumps(config, indent=2, default=str))
    tokenizer.save_pretrained(str(out_dir))
