"""Every PRM read-out style on tiny random checkpoints, against an independent computation.

The reference re-encodes every step's prefix as one whole string (chat template applied to the
full text) and runs the stock transformers model classes on it, reading the last position: no
piecewise tokenisation, no batching, no packing, no head shortcuts. The scorer must agree to
1e-4 while running one forward pass per batch.
"""

from __future__ import annotations

import functools

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoTokenizer, Qwen2ForCausalLM, Qwen2Model

from agentrm.errors import InputError
from agentrm.types import ScoreLevel
from agentrm.verifiers.prm import make_scorer
from agentrm.verifiers.prm_format import JUDGE_INTRO, JUDGE_QUESTION, context_text, step_texts
from agentrm.verifiers.prm_tiny import build_tiny_prm, sample_trajectory

pytestmark = pytest.mark.model
STYLES = ["token-cls", "tag", "value", "judge"]
TRAJS = [sample_trajectory("a", 4, seed=1), sample_trajectory("b", 7, seed=2),
         sample_trajectory("c", 1, seed=3), sample_trajectory("d", 3, seed=4, words=30)]


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny models: one thread is faster, and on a busy 2-core box two threads spin-wait."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("prm")
    return {style: build_tiny_prm(root / style, style, seed=i) for i, style in enumerate(STYLES)}


def naive_prefixes(tok, traj, style, scorer):
    """Text of the input up to and including step k's read-out token, for every k."""
    cfg = scorer.cfg
    steps, context = step_texts(traj), context_text(traj)
    out = []
    for k in range(len(steps)):
        if style == "judge":
            body = JUDGE_INTRO + context + "\n\nSteps so far:\n" + "".join(
                f"\nStep {j + 1}:\n{steps[j]}\n" for j in range(k + 1)) + JUDGE_QUESTION.format(k=k + 1)
            out.append(tok.apply_chat_template([{"role": "user", "content": body}], tokenize=False,
                                               add_generation_prompt=True))
            continue
        body = "".join(cfg.step_format.format(k=j + 1, text=steps[j]) + cfg.separator for j in range(k + 1))
        if cfg.template == "plain":
            out.append(context + "\n" + body)
        else:
            text = tok.apply_chat_template(
                [{"role": "system", "content": cfg.system}, {"role": "user", "content": context},
                 {"role": "assistant", "content": body}], tokenize=False)
            out.append(text[: text.rindex(cfg.separator) + len(cfg.separator)])
    return out


@functools.cache
def reference_model(folder, style):
    """Stock transformers classes and a head built by hand from the checkpoint's tensors."""
    tok = AutoTokenizer.from_pretrained(str(folder))
    weights = load_file(str(folder / "model.safetensors")) if style in ("token-cls", "value") else {}
    head = None
    if style in ("tag", "judge"):
        model = Qwen2ForCausalLM.from_pretrained(str(folder)).eval()
    else:
        model = Qwen2Model.from_pretrained(str(folder)).eval()
    if style == "token-cls":
        head = torch.nn.Sequential(torch.nn.Linear(128, 128), torch.nn.ReLU(), torch.nn.Linear(128, 2))
        head.load_state_dict({k[len("score."):]: v for k, v in weights.items() if k.startswith("score.")})
    if style == "value":
        head = torch.nn.Linear(128, 1)
        head.load_state_dict({"weight": weights["v_head.weight"], "bias": weights["v_head.bias"]})
    return tok, model, head


def reference_scores(folder, style, scorer, traj):
    tok, model, head = reference_model(folder, style)
    if style in ("tag", "judge"):
        good, bad = (tok.convert_tokens_to_ids(t) for t in (scorer.cfg.good, scorer.cfg.bad))
    out = []
    for text in naive_prefixes(tok, traj, style, scorer):
        ids = torch.tensor([tok(text, add_special_tokens=False)["input_ids"]])
        with torch.no_grad():
            if style in ("tag", "judge"):
                logits = model(ids).logits[0, -1]
                out.append(torch.softmax(logits[[good, bad]], -1)[0].item())
            else:
                h = model(ids).last_hidden_state[0, -1]
                out.append(torch.softmax(head(h), -1)[1].item() if style == "token-cls"
                           else torch.sigmoid(head(h))[0].item())
    return out


@pytest.mark.parametrize("style", STYLES)
def test_scores_equal_independent_per_prefix_computation(models, style):
    scorer = make_scorer(model=str(models[style]), style=style, batch_size=3)
    rows = scorer.score(TRAJS)
    for traj in TRAJS:
        got = [r.value for r in rows if r.trajectory_id == traj.id and r.level == ScoreLevel.TURN]
        want = reference_scores(models[style], style, scorer, traj)
        assert got == pytest.approx(want, abs=1e-4), (style, traj.id)
        assert max(want) - min(want) > 1e-3 or len(want) == 1  # scores really differ per step
        total = [r for r in rows if r.trajectory_id == traj.id and r.level == ScoreLevel.TRAJECTORY]
        assert len(total) == 1 and total[0].value == pytest.approx(min(want), abs=1e-4)
        assert total[0].details["steps"] == len(traj.turns)


def test_one_forward_pass_per_trajectory_whatever_the_step_count(models):
    # on CPU each trajectory gets its own pass (batching only adds padding there)
    scorer = make_scorer(model=str(models["token-cls"]), style="token-cls", batch_size=8)
    scorer.load()
    calls = []
    hook = scorer._backend.backbone.model.register_forward_hook(lambda *a: calls.append(1))
    try:
        rows = scorer.score(TRAJS)
    finally:
        hook.remove()
    assert len(calls) == len(TRAJS) and len(rows) == sum(len(t.turns) + 1 for t in TRAJS)
    judge = make_scorer(model=str(models["judge"]), style="judge", batch_size=8)
    judge.load()
    hook = judge._backend.backbone.model.register_forward_hook(lambda *a: calls.append(1))
    try:
        judge.score(TRAJS)
    finally:
        hook.remove()
    assert len(calls) == 2 * len(TRAJS)  # a trajectory's per-step judge prompts: one packed pass


def test_truncation_is_recorded_and_lost_steps_abstain(models):
    long = sample_trajectory("long", 6, seed=5, words=40)
    scorer = make_scorer(model=str(models["token-cls"]), style="token-cls", max_length=150)
    rows = scorer.score([long])
    turns = [r for r in rows if r.level == ScoreLevel.TURN]
    assert turns[0].value is None and turns[0].details["reason"] == "truncated"
    assert turns[-1].value is not None
    assert all(r.details["truncated_tokens"] > 0 for r in rows)
    # the kept steps equal the reference run on the same left-truncated token sequence
    full = make_scorer(model=str(models["token-cls"]), style="token-cls")
    full.load()
    enc = full._formatter.encode(long)
    cut = len(enc.ids) - 150
    model = Qwen2Model.from_pretrained(str(models["token-cls"])).eval()
    with torch.no_grad():
        h = model(torch.tensor([enc.ids[cut:]])).last_hidden_state[0]
    head = full._backend.head
    for row, pos in zip(turns, enc.read_at, strict=False):
        if row.value is not None:
            assert row.value == pytest.approx(torch.softmax(head(h[pos - cut]), -1)[1].item(), abs=1e-4)


def test_batch_size_does_not_change_scores(models):
    a = make_scorer(model=str(models["tag"]), style="tag", batch_size=1).score(TRAJS)
    b = make_scorer(model=str(models["tag"]), style="tag", batch_size=4).score(TRAJS)
    assert [r.value for r in a] == pytest.approx([r.value for r in b], abs=1e-5)


def test_no_turns_abstains(models):
    empty = sample_trajectory("empty", 0)
    rows = make_scorer(model=str(models["value"]), style="value").score([empty])
    assert len(rows) == 1 and rows[0].value is None and rows[0].details["reason"] == "no steps"


def test_wrong_model_for_style_fails_clearly(models):
    with pytest.raises(InputError, match="no token-classification head"):
        make_scorer(model=str(models["value"]), style="token-cls").score(TRAJS[:1])
    with pytest.raises(InputError, match="no value head"):
        make_scorer(model=str(models["token-cls"]), style="value").score(TRAJS[:1])
    with pytest.raises(InputError, match="--separator"):
        make_scorer(model=str(models["tag"]), style="tag", separator="<step>").score(TRAJS[:1])
