"""Information gain (IGPO): beliefs from a tiny random causal LM against an independent naive
per-turn computation, turn rewards, group normalisation, abstentions and the §4.7 options."""

from __future__ import annotations

import json
import math

import pytest

from agentrm.types import ExitStatus, ScoreLevel, Trajectory, Turn
from agentrm.verifiers import info_gain as IG

pytestmark = pytest.mark.model


@pytest.fixture(scope="module")
def tiny_lm(tmp_path_factory):
    """A 2-layer random Llama (head_dim 64) with SmolLM2's tokenizer, saved and reloaded."""
    torch = pytest.importorskip("torch")
    from transformers import AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM

    from agentrm.models import load_tokenizer

    tok = load_tokenizer("smollm2")
    torch.set_num_threads(1)  # two threads spin-wait on a busy 2-core machine
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=128, intermediate_size=256, num_hidden_layers=2,
                      num_attention_heads=2, num_key_value_heads=2, head_dim=64, max_position_embeddings=4096,
                      initializer_range=0.2, tie_word_embeddings=True,
                      bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)
    path = tmp_path_factory.mktemp("tiny-lm")
    LlamaForCausalLM(cfg).save_pretrained(path)
    tok.save_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    return model, tok, path


def make_traj(tid="t1", group="g", n_turns=4, answer="Marie Curie", reward=None, status=ExitStatus.SUBMITTED,
              final="<answer>Marie Curie</answer>"):
    turns = []
    obs = [{"role": "system", "content": "You are a research agent."},
           {"role": "user", "content": "Who won the 1903 Nobel prize in physics with Becquerel?"}]
    for i in range(n_turns - 1):
        call = {"id": f"c{i}", "type": "function",
                "function": {"name": "bash", "arguments": json.dumps({"command": f"grep -r nobel /data/{i}"})}}
        turns.append(Turn(i, obs, {"role": "assistant", "content": f"Step {i}: search.", "tool_calls": [call]}))
        obs = [{"role": "tool", "tool_call_id": f"c{i}", "content": f"result {i}: Pierre and {tid} Curie, 1903"}]
    turns.append(Turn(n_turns - 1, obs, {"role": "assistant", "content": final}))
    return Trajectory(tid, "task", group, turns=turns, exit_status=status, answer=answer, reward=reward)


def _naive_plain(message):
    """Independent of the module: how the test expects messages to be flattened."""
    text = message.get("content") or ""
    for call in message.get("tool_calls") or []:
        fn = call["function"]
        text += '\n<tool_call>{"name": "' + fn["name"] + '", "arguments": ' + fn["arguments"] + "}</tool_call>"
    return {"role": message["role"], "content": text}


def naive_beliefs(model, tok, traj, prompt="I now have enough information to answer.\n<answer>"):
    """Belief v_k for k = 0..T−1 by T independent full forward passes."""
    import torch

    messages = traj.messages()
    cuts = [i for i, m in enumerate(messages) if m["role"] == "assistant"]  # context_k = messages[:cuts[k]]
    out = []
    for cut in cuts:
        head = tok.apply_chat_template([_naive_plain(m) for m in messages[:cut]], tokenize=False,
                                       add_generation_prompt=True) + prompt
        enc = tok(head + traj.answer + "</answer>", add_special_tokens=False, return_offsets_mapping=True)
        span = [i for i, (s, e) in enumerate(enc["offset_mapping"])
                if e > s and s < len(head) + len(traj.answer) and e > len(head)]
        ids = torch.tensor([enc["input_ids"]])
        with torch.no_grad():
            logp = torch.log_softmax(model(input_ids=ids).logits[0].float(), -1)
        out.append(sum(float(logp[i - 1, enc["input_ids"][i]]) for i in span) / len(span))
    return out


def scorer(tiny_lm, fast=True, **choices):
    from agentrm.verifiers.info_gain_backends import TransformersBeliefs

    model, tok, _ = tiny_lm
    return IG.InfoGainScorer(beliefs=TransformersBeliefs(model, tok, fast=fast), **choices)


def test_fast_beliefs_equal_naive(tiny_lm):
    model, tok, _ = tiny_lm
    traj = make_traj(n_turns=5, reward=1.0)
    expected = naive_beliefs(model, tok, traj)
    assert max(expected) - min(expected) > 1e-3  # the model is not flat: the check has teeth
    scores = scorer(tiny_lm).score([traj])
    assert [s.turn_index for s in scores] == [0, 1, 2, 3, 4]
    igs = [s.value for s in scores[:-1]]
    want = [b - a for a, b in zip(expected[:-1], expected[1:], strict=True)]
    assert igs == pytest.approx(want, abs=2e-4)
    assert [s.details["belief_before"] for s in scores] == pytest.approx(expected, abs=2e-4)
    assert scores[-1].value == 1.0 and scores[-1].details["kind"] == "outcome"
    assert all(s.level == ScoreLevel.TURN and s.scorer == "info-gain" for s in scores)


def test_fast_path_runs_far_fewer_tokens(tiny_lm):
    from agentrm.verifiers.info_gain_backends import TransformersBeliefs

    model, tok, _ = tiny_lm
    traj = make_traj(n_turns=8)
    fast, naive = TransformersBeliefs(model, tok, True), TransformersBeliefs(model, tok, False)
    a = IG.InfoGainScorer(beliefs=fast).score([traj])
    b = IG.InfoGainScorer(beliefs=naive).score([traj])
    assert [s.value for s in a] == pytest.approx([s.value for s in b], abs=2e-4)
    assert fast.tokens_run * 2.5 < naive.tokens_run


def test_prob_form_and_shared_v0(tiny_lm):
    model, tok, _ = tiny_lm
    t1, t2 = make_traj("a", n_turns=3), make_traj("b", n_turns=3)
    scores = scorer(tiny_lm, form="prob").score([t1, t2])
    naive = [math.exp(v) for v in naive_beliefs(model, tok, t1)]
    got = [s.details["belief_before"] for s in scores if s.trajectory_id == "a"]
    assert got == pytest.approx(naive, rel=1e-3)
    v0 = [s.details["belief_before"] for s in scores if s.turn_index == 0]
    assert v0[0] == v0[1]  # same prompt, same belief


def test_outcome_choices(tiny_lm):
    s = scorer(tiny_lm, outcome="f1")
    got = s.score([make_traj(n_turns=2, final="<answer>Pierre Curie</answer>", reward=1.0)])
    assert got[-1].value == pytest.approx(0.5)  # word-set F1({pierre, curie}, {marie, curie})
    got = scorer(tiny_lm).score([make_traj(n_turns=2, final="", reward=None)])
    assert got[-1].value == -2.0  # no answer: format penalty
    got = scorer(tiny_lm, outcome="em").score([make_traj(n_turns=2, final="<answer>marie curie</answer>")])
    assert got[-1].value == 1.0


def test_truncated_rollouts_are_outcome_only(tiny_lm):
    traj = make_traj(n_turns=3, reward=0.0, status=ExitStatus.TURN_LIMIT)
    scores = scorer(tiny_lm).score([traj])
    assert [s.value for s in scores] == [None, None, 0.0]
    kept = scorer(tiny_lm, truncated="keep").score([traj])
    assert all(s.value is not None for s in kept)


def test_abstain_and_infrastructure(tiny_lm):
    no_truth = make_traj(answer=None)
    crashed = make_traj(tid="x", status=ExitStatus.SANDBOX_ERROR)
    a, b = scorer(tiny_lm).score([no_truth, crashed])
    assert a.value is None and "abstain" in a.details and a.level == ScoreLevel.TRAJECTORY
    assert b.value is None and b.details["failure"] == "infrastructure"


def test_zero_ig_epsilon_and_nan():
    assert IG.turn_rewards([0.5, 0.5, 0.7], 1.0) == pytest.approx([1e-10, 0.2, 1.0])
    assert math.isnan(IG.turn_rewards([0.5, float("-inf")], 1.0)[0])
    assert IG.turn_rewards([], 1.0) == []


def test_group_normalise_independent():
    groups = {"g": [[0.1, 0.3, 1.0], [0.2, 0.0]]}
    sep = IG.group_normalise(groups, "separate")["g"]
    igs, outs = [0.1, 0.3, 0.2], [1.0, 0.0]
    mu_i = sum(igs) / 3
    sd_i = math.sqrt(sum((v - mu_i) ** 2 for v in igs) / 3 + 1e-8)
    mu_o, sd_o = 0.5, math.sqrt(0.25 + 1e-8)
    assert sep[0] == pytest.approx([(0.1 - mu_i) / (sd_i + 1e-6), (0.3 - mu_i) / (sd_i + 1e-6), (1 - mu_o) / (sd_o + 1e-6)])
    joint = IG.group_normalise(groups, "joint")["g"]
    pool = igs + outs
    mu = sum(pool) / 5
    sd = math.sqrt(sum((v - mu) ** 2 for v in pool) / 5 + 1e-8)
    assert joint[1] == pytest.approx([(0.2 - mu) / (sd + 1e-6), (0.0 - mu) / (sd + 1e-6)])
    single = IG.group_normalise({"g": [[0.4]]}, "separate")["g"]
    assert single == [[pytest.approx(0.0)]]  # |S| = 1: σ = 1, z = R − μ = 0


def test_scorer_normalise_option_puts_z_in_details(tiny_lm):
    scores = scorer(tiny_lm, normalise="separate").score([make_traj("a", reward=1.0), make_traj("b", reward=0.0)])
    last = [s.details["z"] for s in scores if s.details["kind"] == "outcome"]
    assert last == pytest.approx([1.0, -1.0], abs=1e-4)


def test_bad_choice_is_input_error():
    from agentrm.errors import InputError

    with pytest.raises(InputError, match="--form"):
        IG.InfoGainScorer(form="bits")


def test_probe_span_is_the_answer(tiny_lm):
    _, tok, _ = tiny_lm
    probe = IG.build_probe(tok, [{"role": "user", "content": "q"}], "Marie Curie", IG.InfoGainConfig())
    assert tok.decode([probe.ids[i] for i in probe.gt]).strip() == "Marie Curie"
    assert probe.ids[-1] == probe.ids[probe.gt[-1]]


def test_empty_ground_truth_abstains(tiny_lm):
    (row,) = scorer(tiny_lm).score([make_traj(answer="")])
    assert row.value is None and "abstain" in row.details


def test_cli_writes_info_gain_rows(tiny_lm, tmp_path):
    """`agentrm score -s info-gain --model DIR` stores one row per turn."""
    import subprocess
    import sys

    from agentrm.traces import open_store
    from agentrm.traces.io import write_jsonl

    _, _, path = tiny_lm
    write_jsonl([make_traj("cli", n_turns=3, reward=1.0)], tmp_path / "t.jsonl")
    db = f"sqlite:///{tmp_path / 'ig.db'}"
    r = subprocess.run([sys.executable, "-m", "agentrm.cli.main", "score", str(tmp_path / "t.jsonl"), "--db", db,
                        "-s", "info-gain", "--model", str(path), "-o", "form=prob", "--json"],
                       capture_output=True, text=True, timeout=300, env={**__import__("os").environ, "OMP_NUM_THREADS": "1"})
    assert r.returncode == 0, r.stderr
    rows = sorted(open_store(db).get_scores(scorer="info-gain"), key=lambda s: s.turn_index)
    assert [s.turn_index for s in rows] == [0, 1, 2] and rows[-1].value == 1.0
    assert all(0.0 < s.details["belief_before"] < 1.0 for s in rows)  # prob form
