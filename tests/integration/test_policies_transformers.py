"""The transformers policy on a tiny random-weight model built here: token counts, log-probs
checked against an independent forward pass, and a short rollout that closes cleanly."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "data" / "rollout"))
from tiny_model import build_tiny_model  # noqa: E402

from agentrm.rollout.loop import Limits, run_trajectory  # noqa: E402
from agentrm.rollout.policies import make_policy  # noqa: E402
from agentrm.rollout.policies.chat import prompt_ids, render_prompt  # noqa: E402
from agentrm.rollout.tools import TOOL_SCHEMAS  # noqa: E402
from agentrm.testing import DirSandbox
from agentrm.traces import open_store  # noqa: E402
from agentrm.types import ExitStatus, Task  # noqa: E402

pytestmark = pytest.mark.model
MESSAGES = [{"role": "system", "content": "You are an agent."},
            {"role": "user", "content": "How many lines does data.txt have?"}]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "model")


@pytest.mark.parametrize("constrain", ["false", "true"])
def test_logprobs_match_an_independent_forward_pass(tiny, constrain):
    """Under the tool grammar too: the recorded log-probs are the model's own (the grammar
    masks a copy), which is what a trainer's importance ratio is taken against."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    policy = make_policy(f"transformers:{tiny}?max_new_tokens=12&temperature=1.0&seed=3&constrain={constrain}")
    out = policy.act(MESSAGES, TOOL_SCHEMAS)
    ids = out.raw["token_ids"]
    assert out.completion_tokens == len(ids) == len(out.logprobs) > 0
    tok = AutoTokenizer.from_pretrained(tiny)
    prompt = prompt_ids(tok, render_prompt(tok, MESSAGES, TOOL_SCHEMAS))
    assert out.prompt_tokens == len(prompt)
    assert "<tool_call>" in tok.decode(prompt)  # tools were described in the prompt (no native tools)
    model = AutoModelForCausalLM.from_pretrained(tiny, dtype=torch.float32).eval()
    with torch.no_grad():
        logits = model(torch.tensor([prompt + ids])).logits[0]
    expected = torch.log_softmax(logits[len(prompt) - 1:-1].float(), -1)
    expected = expected[torch.arange(len(ids)), torch.tensor(ids)].tolist()
    assert out.logprobs == pytest.approx(expected, abs=1e-4)


def test_greedy_is_deterministic_and_sampling_differs_across_a_group(tiny):
    greedy = make_policy(f"transformers:{tiny}?max_new_tokens=8&temperature=0")
    assert greedy.act(MESSAGES, TOOL_SCHEMAS).raw["token_ids"] == greedy.act(MESSAGES, TOOL_SCHEMAS).raw["token_ids"]
    sampler = make_policy(f"transformers:{tiny}?max_new_tokens=8&temperature=1.0&seed=0")
    outs = {tuple(sampler.act(MESSAGES, TOOL_SCHEMAS).raw["token_ids"]) for _ in range(3)}
    assert len(outs) > 1  # identical prompts of a group must not get identical samples


def test_context_overflow_ends_token_limit(tiny, tmp_path):
    policy = make_policy(f"transformers:{tiny}?max_new_tokens=8&max_context=64")
    traj = run_trajectory(Task(id="t", instruction="x", answer="1"), policy, DirSandbox(tmp_path))
    assert traj.exit_status is ExitStatus.TOKEN_LIMIT and traj.turns == []


def test_short_rollout_records_tokens_and_closes(tiny, tmp_path):
    store = open_store(f"sqlite:///{tmp_path}/t.db")
    policy = make_policy(f"transformers:{tiny}?max_new_tokens=8&seed=1")
    task = Task(id="t", instruction="How many lines?", answer="3")
    traj = run_trajectory(task, policy, DirSandbox(tmp_path / "ws"), store, Limits(max_turns=2),
                          trajectory_id="tx", run_id=store.begin_run({}, "r"))
    saved = store.get_trajectory("tx")
    assert saved.exit_status is traj.exit_status
    assert saved.exit_status in {ExitStatus.TURN_LIMIT, ExitStatus.FORMAT_ERROR, ExitStatus.SUBMITTED}
    assert len(saved.turns) >= 1 and saved.policy == policy.name
    for turn in saved.turns:
        assert turn.prompt_tokens > 0 and turn.completion_tokens == len(turn.logprobs)
        assert turn.anchor_key
        assert len(turn.tokens.completion_ids) == turn.completion_tokens  # the sampled ids, stored
    from agentrm.types import full_prompts

    prompts = full_prompts(saved.turns)  # rebuilt from the stored prefix references
    assert [len(p) for p in prompts] == [t.prompt_tokens for t in saved.turns]
    assert all(t.tokens.prefix_len > 0 for t in saved.turns[1:])
    assert saved.turns[-1].prompt_tokens > saved.turns[0].prompt_tokens or len(saved.turns) == 1


@pytest.mark.docker
def test_agentrm_run_cli_with_transformers_in_docker(tiny, docker_client, tmp_path):
    """The whole command: builtin task, group of 2, JSON summary, store complete."""
    import json

    from typer.testing import CliRunner

    from agentrm.cli.main import app

    db = f"sqlite:///{tmp_path}/cli.db"
    result = CliRunner().invoke(app, [
        "run", "--tasks", "builtin", "--task", "json-value", "--policy",
        f"transformers:{tiny}?max_new_tokens=8&seed=0", "--group-size", "2", "--max-turns", "2",
        "--run-id", "cli1", "--db", db, "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["run_id"] == "cli1" and len(summary["trajectories"]) == 2
    assert sum(summary["counts"].values()) == 2
    assert not {"sandbox_error", "model_error", "crashed"} & set(summary["counts"])
    store = open_store(db)
    trajs = list(store.iter_trajectories(run_id="cli1"))
    assert {t.group_id for t in trajs} == {"cli1/json-value"}
    assert all(t.exit_status is not ExitStatus.RUNNING and t.turns for t in trajs)
    assert all(t.policy.startswith("transformers:") for t in trajs)


def _independent_logprobs(model_dir, prompt: list[int], ids: list[int]) -> list[float]:
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    with torch.no_grad():
        logits = model(torch.tensor([prompt + ids])).logits[0]
    expected = torch.log_softmax(logits[len(prompt) - 1:-1].float(), -1)
    return expected[torch.arange(len(ids)), torch.tensor(ids)].tolist()


SAME_TOOLS_CALLS = [(MESSAGES, TOOL_SCHEMAS),
                    (MESSAGES[:1] + [{"role": "user", "content": "Hi"}], TOOL_SCHEMAS),
                    (MESSAGES + [{"role": "assistant", "content": "Let me look."},
                                 {"role": "user", "content": "Go on, use a tool now please."}], TOOL_SCHEMAS)]
SUBMIT_ONLY = [t for t in TOOL_SCHEMAS if t["function"]["name"] == "submit"]


OWN_GRAMMAR_CALLS = [SAME_TOOLS_CALLS[0], (SAME_TOOLS_CALLS[1][0], SUBMIT_ONLY), SAME_TOOLS_CALLS[2]]


@pytest.mark.parametrize("calls,share", [(SAME_TOOLS_CALLS, True), (OWN_GRAMMAR_CALLS, True),
                                         (OWN_GRAMMAR_CALLS, False)],
                         ids=["shared-prefix", "own-grammars-shared-prefix", "own-grammars-left-padded"])
def test_concurrent_calls_decode_as_one_batch_each_row_its_own(tiny, calls, share, monkeypatch):
    """Rollouts running at once share one `generate`: prompts of different lengths, with a long
    common prefix (prefilled once, then [prefix][padding][row]) or with different tool lists (a
    grammar per row, left-padded). Each row's ids stop at its own stop token, follow its own
    tools, and its log-probs are those of an unpadded forward pass of that row alone."""
    import threading

    from transformers import AutoTokenizer

    from agentrm.rollout.policies import transformers as backend

    monkeypatch.setattr(backend, "MAX_PADDING", 10.0)  # these prompts differ in length a lot
    if not share:
        monkeypatch.setattr(backend, "MIN_SHARED_PREFIX", 10**6)
    policy = make_policy(f"transformers:{tiny}?max_new_tokens=24&temperature=1.0&seed=5&constrain=true")
    tok = AutoTokenizer.from_pretrained(tiny)
    prompts = [prompt_ids(tok, render_prompt(tok, m, t)) for m, t in calls]
    assert (backend.common_prefix_of(prompts) >= backend.MIN_SHARED_PREFIX) == share
    generate_calls = []
    policy.act(*calls[0])  # loads the model
    model = policy._model
    real_generate = model.generate
    model.generate = lambda *a, **k: generate_calls.append((a[0].shape, "past_key_values" in k)) or real_generate(*a, **k)
    outs: dict[int, object] = {}
    with policy._lock:  # hold the model until all three are queued: they must form one batch
        threads = [threading.Thread(target=lambda i=i: outs.__setitem__(i, policy.act(*calls[i])))
                   for i in range(3)]
        for t in threads:
            t.start()
        while len(policy._pending) < 3:
            threading.Event().wait(0.01)
    for t in threads:
        t.join(60)
    assert [(shape[0], cached) for shape, cached in generate_calls] == [(3, share)]
    for i, prompt in enumerate(prompts):
        out = outs[i]
        ids = out.raw["token_ids"]
        assert out.prompt_tokens == len(prompt) and len(ids) == len(out.logprobs) > 0
        assert tok.eos_token_id not in ids[:-1]  # nothing past a row's stop token
        assert out.logprobs == pytest.approx(_independent_logprobs(tiny, prompt, ids), abs=1e-3)
    assert len(set(map(len, prompts))) == 3  # the batch really was padded
    if calls is OWN_GRAMMAR_CALLS:
        assert outs[1].raw["text"].startswith('<tool_call>{"name": "submit"')  # row 1's own grammar


@pytest.mark.parametrize("kind", ["adapter", "weights"])
def test_a_training_checkpoint_is_a_policy(tiny, tmp_path, kind):
    """`?checkpoint=DIR` samples from what `agentrm train` saved (a LoRA adapter, merged, or
    all weights): its log-probs are those of the trained model, not of the base."""
    import torch
    from transformers import AutoModelForCausalLM

    from agentrm.errors import InputError

    torch.manual_seed(0)
    base = AutoModelForCausalLM.from_pretrained(tiny, dtype=torch.float32).eval()
    if kind == "adapter":
        from peft import LoraConfig, get_peft_model

        trained = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, target_modules="all-linear"))
        for name, p in trained.named_parameters():
            if "lora_B" in name:
                torch.nn.init.normal_(p, std=0.5)  # a fresh adapter is a no-op (B = 0)
        trained.save_pretrained(tmp_path / "it000" / "adapter")
    else:
        trained = base
        with torch.no_grad():
            for p in trained.parameters():
                p.add_(torch.randn_like(p) * 0.05)
        (tmp_path / "it000").mkdir()
        torch.save(trained.state_dict(), tmp_path / "it000" / "model.pt")
    trained.eval()
    policy = make_policy(f"transformers:{tiny}?max_new_tokens=8&temperature=1.0&seed=1"
                         f"&checkpoint={tmp_path / 'it000'}")
    out = policy.act(MESSAGES, TOOL_SCHEMAS)
    ids = out.raw["token_ids"]
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny)
    prompt = prompt_ids(tok, render_prompt(tok, MESSAGES, TOOL_SCHEMAS))
    with torch.no_grad():
        logits = trained(torch.tensor([prompt + ids])).logits[0]
    expected = torch.log_softmax(logits[len(prompt) - 1:-1].float(), -1)
    expected = expected[torch.arange(len(ids)), torch.tensor(ids)].tolist()
    assert out.logprobs == pytest.approx(expected, abs=1e-4)
    assert out.logprobs != pytest.approx(_independent_logprobs(tiny, prompt, ids), abs=1e-3)  # not the base
    with pytest.raises(InputError, match="no adapter/ or model.pt"):
        make_policy(f"transformers:{tiny}?checkpoint={tmp_path / 'missing'}")
