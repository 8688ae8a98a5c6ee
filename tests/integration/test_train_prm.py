"""`agentrm train prm`: step labels from stored progress values → TRL stepwise rows → a trained
token-cls PRM that `agentrm score --style token-cls` loads (transformers, and vLLM)."""

from __future__ import annotations

import json
import math

import pytest

from agentrm.evaluation.metrics import roc_auc
from agentrm.training.prm_train import (
    IGNORE,
    PRMTrainConfig,
    encode,
    labelled,
    labels_from_first_error,
    labels_from_progress,
    prm_config,
    stepwise_rows,
)
from agentrm.types import ExitStatus, Score, ScoreLevel


def _trajs(n: int = 16):
    from agentrm.verifiers.prm_tiny import sample_trajectory

    out = []
    for i in range(n):
        t = sample_trajectory(f"t{i}", 4, seed=i)
        t.exit_status, t.run_id = ExitStatus.SUBMITTED, "r1"
        out.append(t)
    return out


def good(turn) -> bool:
    """The rule the PRM must learn: running pytest or cat makes progress."""
    text = turn.assistant["content"]
    return "pytest" in text or "cat" in text


def progress_rows(trajs) -> list[Score]:
    """What the progress scorer stores: V(h_{t+1}) as the share of K=4 successful branches."""
    return [Score("progress", t.id, 0.0, ScoreLevel.TURN, k, config_hash="p",
                  details={"value_after": {"value": 0.75 if good(turn) else 0.25, "successes": 3 if good(turn) else 1,
                                           "branches": 4, "source": "branches"}})
            for t in trajs for k, turn in enumerate(t.turns)]


def test_labels_rows_and_encoding():
    trajs = _trajs(3)
    labels = labels_from_progress(progress_rows(trajs), min_share=0.5)
    assert labels["t0"] == [good(turn) for turn in trajs[0].turns]
    assert labels_from_progress(progress_rows(trajs), min_share=1.0)["t0"] == [False] * 4
    first = labels_from_first_error({"t0": 1, "t1": -1}, trajs)
    assert first == {"t0": [True, False, None, None], "t1": [True] * 4}
    cut, y = labelled(trajs[0], first["t0"])
    assert len(cut.turns) == 2 and y == [True, False]
    assert cut.tail == trajs[0].turns[2].observation  # step 2 keeps what it received
    row = stepwise_rows([(cut, y)])[0]
    assert set(row) == {"id", "prompt", "completions", "labels"} and len(row["completions"]) == 2
    assert labelled(trajs[0], [None, True]) is None


def test_soft_labels_keep_the_branch_share():
    """soft: V(h_{t+1}) itself is the label (Math-Shepherd's soft estimate), through the cut and
    into the stepwise rows; hard labels stay booleans (TRL's shape)."""
    from agentrm.training.prm_train import step_labels

    trajs = _trajs(2)
    soft = labels_from_progress(progress_rows(trajs), min_share=0.5, soft=True)
    assert soft["t0"] == [0.75 if good(turn) else 0.25 for turn in trajs[0].turns]
    assert all(type(v) is float for v in soft["t0"])
    cfg = PRMTrainConfig(soft_labels=True)
    assert step_labels(trajs, progress_rows(trajs), cfg) == soft
    cut, y = labelled(trajs[0], [*soft["t0"][:3], None])
    assert len(cut.turns) == 3 and y == soft["t0"][:3]
    assert stepwise_rows([(cut, y)])[0]["labels"] == soft["t0"][:3]
    hard = labels_from_progress(progress_rows(trajs), min_share=0.5)
    _, y = labelled(trajs[0], hard["t0"])
    assert all(type(v) is bool for v in y)


def test_soft_cross_entropy_against_torch_and_by_hand():
    torch = pytest.importorskip("torch")
    import math

    from agentrm.training.prm_train import soft_cross_entropy

    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 7, 2, generator=gen)
    hard = torch.randint(0, 2, (3, 7), generator=gen)
    hard[0, :3] = IGNORE
    hard[2, 5:] = IGNORE
    want = torch.nn.functional.cross_entropy(logits.reshape(-1, 2), hard.reshape(-1), ignore_index=IGNORE)
    assert float(soft_cross_entropy(logits, hard.float())) == pytest.approx(float(want), rel=1e-6)
    soft = torch.rand(3, 7, generator=gen)
    soft[1, 2:] = IGNORE
    total, n = 0.0, 0
    for b in range(3):
        for k in range(7):
            p = float(soft[b, k])
            if p == IGNORE:
                continue
            l0, l1 = float(logits[b, k, 0]), float(logits[b, k, 1])
            q1 = math.exp(l1) / (math.exp(l0) + math.exp(l1))
            total -= p * math.log(q1) + (1 - p) * math.log(1 - q1)
            n += 1
    assert float(soft_cross_entropy(logits, soft)) == pytest.approx(total / n, rel=1e-5)


@pytest.mark.model
def test_soft_labels_train_a_calibrated_head(tmp_path):
    """Trained on shares 0.75 / 0.25, the head predicts about those shares (the loss's minimum
    is q = p); trained on the same steps' hard labels it is pushed towards 1 / 0."""
    torch = pytest.importorskip("torch")
    torch.set_num_threads(1)
    means = {}
    for soft in (True, False):
        _, _, auc, scores = _train_tiny(tmp_path / str(soft), epochs=300, head_lr=1e-2, freeze_backbone=True,
                                        soft_labels=soft, with_scores=True)
        assert auc > 0.9
        means[soft] = [sum(v) / len(v) for v in scores]  # mean score of the good, of the bad steps
    assert means[True][0] == pytest.approx(0.75, abs=0.08) and means[True][1] == pytest.approx(0.25, abs=0.08)
    assert means[False][0] > 0.9 and means[False][1] < 0.1


@pytest.mark.model
def test_encoding_labels_exactly_the_separators(tmp_path):
    from agentrm.training.prm_train import SEPARATOR
    from agentrm.verifiers.prm_tiny import build_tokenizer

    tok = build_tokenizer(tmp_path)
    sep = tok.convert_tokens_to_ids(SEPARATOR)
    t = _trajs(1)[0]
    ids, target = encode([(t, [True, False, True, True])], tok, sep, prm_config(str(tmp_path), 4096))[0]
    at = [i for i, v in enumerate(target) if v != IGNORE]
    assert [ids[i] for i in at] == [sep] * 4 and ids.count(sep) == 4
    assert [target[i] for i in at] == [1, 0, 1, 1]


@pytest.fixture
def db(tmp_path):
    from agentrm.traces import open_store

    url = f"sqlite:///{tmp_path / 'train.db'}"
    store = open_store(url)
    trajs = _trajs()
    store.import_trajectories(trajs, run_id="r1")
    store.write_scores(progress_rows(trajs))
    store.close()
    return url


@pytest.mark.model
def test_train_prm_cli_then_score_token_cls(cli, db, tmp_path):
    torch = pytest.importorskip("torch")
    torch.set_num_threads(1)
    from agentrm.verifiers.prm_tiny import build_tiny_prm

    base = build_tiny_prm(tmp_path / "base", "token-cls", seed=1)
    out = tmp_path / "prm"
    res = cli("train", "prm", "--db", db, "--run", "r1", "--labels", "progress", "--base", str(base),
              "-o", str(out), "--epochs", "6", "--lr", "1e-3", "--head-lr", "3e-3", "--json")
    assert res.returncode == 0, res.stderr
    summary = json.loads(res.stdout)
    assert summary["trajectories"] == 16 and summary["steps"] == 64
    assert summary["losses"][-1] < summary["losses"][0]
    rows = [json.loads(line) for line in (out / "stepwise.jsonl").read_text().splitlines()]
    assert len(rows) == 16 and all(len(r["completions"]) == len(r["labels"]) == 4 for r in rows)
    assert json.loads((out / "config.json").read_text())["architectures"] == ["Qwen2ForProcessRewardModel"]

    res = cli("score", "--db", db, "--run", "r1", "-s", "prm", "--model", str(out), "--style", "token-cls", "--json")
    assert res.returncode == 0, res.stderr
    scored = {(r["trajectory_id"], r["turn_index"]): r["value"] for r in json.loads(res.stdout)
              if r["level"] == "turn"}
    trajs = _trajs()
    ys = [int(good(turn)) for t in trajs for turn in t.turns]
    ss = [scored[(t.id, k)] for t in trajs for k in range(len(t.turns))]
    assert roc_auc(ss, ys) > 0.9  # it learned the labels it was trained on


def test_train_prm_cli_with_lora(cli, db, tmp_path):
    torch = pytest.importorskip("torch")
    torch.set_num_threads(1)
    from agentrm.verifiers.prm_tiny import build_tiny_prm

    base = build_tiny_prm(tmp_path / "base", "token-cls", seed=1)
    res = cli("train", "prm", "--db", db, "--run", "r1", "--base", str(base), "-o", str(tmp_path / "x"),
              "--lora-rank", "4", "--freeze-backbone")
    assert res.returncode == 2 and "--lora-rank" in res.stderr and len(res.stderr.strip().splitlines()) == 1
    out = tmp_path / "prm"
    res = cli("train", "prm", "--db", db, "--run", "r1", "--base", str(base), "-o", str(out),
              "--lora-rank", "4", "--epochs", "4", "--lr", "3e-3", "--head-lr", "3e-3", "--soft-labels",
              "--json")
    assert res.returncode == 0, res.stderr
    summary = json.loads(res.stdout)
    assert summary["config"]["soft_labels"] is True
    assert summary["losses"][-1] < summary["losses"][0]
    from safetensors import safe_open

    with safe_open(str(out / "model.safetensors"), "pt") as f:  # merged: plain weights only
        assert not any("lora" in k for k in f.keys())


def test_train_prm_bad_input(cli, db, tmp_path):
    res = cli("train", "prm", "--db", db, "--run", "r1", "--labels", "nope.jsonl", "-o", str(tmp_path / "x"))
    assert res.returncode == 2 and "nope.jsonl" in res.stderr
    res = cli("train", "prm", "--db", db, "--run", "r1", "--min-share", "0", "-o", str(tmp_path / "x"))
    assert res.returncode == 2 and "--min-share" in res.stderr


def test_config_rejects_bad_values():
    from agentrm.errors import InputError

    with pytest.raises(InputError):
        PRMTrainConfig(epochs=0)
    with pytest.raises(InputError):
        PRMTrainConfig(min_share=1.5)
    assert PRMTrainConfig(min_share=1.0).min_share == 1.0


VLLM_SCRIPT = """
import json, sys
from agentrm.cli.main import main

if __name__ == "__main__":
    sys.argv = ["agentrm", "score", "--db", sys.argv[1], "--run", "r1", "-s", "prm", "--model", sys.argv[2],
                "--style", "token-cls", "--backend", "vllm", "--json"]
    main()
"""


@pytest.mark.vllm
@pytest.mark.model
@pytest.mark.slow
def test_trained_prm_runs_on_vllm_like_transformers(vllm_module, db, tmp_path):
    """The trained checkpoint (Qwen2 backbone, head_dim 64) on vLLM's native PRM pooler gives
    the transformers scores within 1e-4."""
    import os
    import subprocess
    import sys

    import torch

    from agentrm.training.prm_train import train_prm
    from agentrm.verifiers.prm import make_scorer
    from agentrm.verifiers.prm_tiny import build_tiny_prm

    torch.set_num_threads(1)
    trajs = _trajs(4)
    labels = labels_from_progress(progress_rows(trajs), 0.5)
    out = tmp_path / "prm"
    train_prm([labelled(t, labels[t.id]) for t in trajs], out,
              PRMTrainConfig(base=str(build_tiny_prm(tmp_path / "base", "token-cls")), epochs=1))
    hf = {(s.trajectory_id, s.turn_index): s.value
          for s in make_scorer(model=str(out), style="token-cls").score(_trajs())}
    (tmp_path / "run.py").write_text(VLLM_SCRIPT)
    env = dict(os.environ, VLLM_ENABLE_V1_MULTIPROCESSING="0", VLLM_LOGGING_LEVEL="WARNING",
               VLLM_CPU_KVCACHE_SPACE=os.environ.get("VLLM_CPU_KVCACHE_SPACE", "1"))
    proc = subprocess.run([sys.executable, str(tmp_path / "run.py"), db, str(out)], capture_output=True,
                          text=True, timeout=900, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    start = 0 if proc.stdout.startswith("[\n") else proc.stdout.index("\n[\n") + 1  # after any log lines
    rows = [r for r in json.loads(proc.stdout[start:]) if r["level"] == "turn"]
    assert len(rows) == 64
    for r in rows:
        assert r["value"] == pytest.approx(hf[(r["trajectory_id"], r["turn_index"])], abs=1e-4)


@pytest.mark.docker
@pytest.mark.model
def test_train_prm_mc_labels_from_branch_rollouts(docker_client, cli, tmp_path):
    """--labels mc: K branches of the prover from each sandbox snapshot; a turn is good when its
    branches succeed. The prover submits at once, so a branch succeeds exactly when the state it
    was forked from already passes the task's check."""
    from agentrm.traces import open_store
    from agentrm.types import Task, Trajectory, Turn
    from agentrm.verifiers.prm_tiny import build_tiny_prm

    task = Task("state42", "Write 42 to /workspace/state, then submit.",
                verifier={"kind": "command", "command": "test \"$(cat /workspace/state)\" = 42"})

    def bash(i, cmd):
        return {"role": "assistant", "content": f"step {i}", "tool_calls": [{"id": f"c{i}", "type": "function",
                "function": {"name": "bash", "arguments": json.dumps({"command": cmd})}}]}

    actions = [bash(0, "echo 41 > /workspace/state"), bash(1, "echo 42 > /workspace/state"), bash(2, "ls /workspace")]
    turns, obs = [], [{"role": "system", "content": "sys"}, {"role": "user", "content": task.instruction}]
    for i, action in enumerate(actions):
        turns.append(Turn(i, obs, action))
        obs = [{"role": "tool", "tool_call_id": f"c{i}", "content": ""}]
    turns.append(Turn(3, obs, {"role": "assistant", "content": "done", "tool_calls": [
        {"id": "s", "type": "function", "function": {"name": "submit", "arguments": "{}"}}]}))
    traj = Trajectory("m1", task.id, "g", turns=turns, exit_status=ExitStatus.SUBMITTED, reward=1.0, run_id="r1")
    url = f"sqlite:///{tmp_path / 'mc.db'}"
    store = open_store(url)
    store.upsert_task(task)
    store.import_trajectories([traj], run_id="r1")
    store.close()
    prover = tmp_path / "prover.jsonl"
    prover.write_text((json.dumps({"tool": "submit", "args": {}}) + "\n") * 8)  # one per step index
    base = build_tiny_prm(tmp_path / "base", "token-cls")
    res = cli("train", "prm", "--db", url, "--run", "r1", "--labels", "mc", "--branches", "1",
              "--prover", f"scripted:{prover}", "--base", str(base), "-o", str(tmp_path / "prm"),
              "--epochs", "1", "--json")
    assert res.returncode == 0, res.stderr
    row = json.loads((tmp_path / "prm" / "stepwise.jsonl").read_text())
    # V(h_1) = 0 (state 41), V(h_2) = V(h_3) = 1 (state 42), V(h_4) = the outcome 1
    assert row["labels"] == [False, True, True, True]
    stored = open_store(url).get_scores(scorer="progress")
    assert sorted(s.details["value_after"]["value"] for s in stored) == [0.0, 1.0, 1.0, 1.0]


@pytest.mark.model
def test_frozen_backbone_trains_only_the_head(tmp_path):
    torch = pytest.importorskip("torch")
    torch.set_num_threads(1)
    before, after, learned_auc = _train_tiny(tmp_path, epochs=200, head_lr=1e-2, freeze_backbone=True)
    for name, tensor in before.items():
        if name.startswith("model."):
            assert torch.equal(tensor, after[name]), name  # the backbone is untouched
    assert learned_auc > 0.9


@pytest.mark.model
def test_lora_trains_adapters_and_saves_merged_weights(tmp_path):
    torch = pytest.importorskip("torch")
    pytest.importorskip("peft")
    torch.set_num_threads(1)

    from agentrm.training.prm_train import LORA_TARGETS

    before, after, learned_auc = _train_tiny(tmp_path, epochs=12, lr=5e-3, head_lr=1e-2, lora_rank=4)
    assert not any("lora" in name for name in after)  # merged into plain weights
    for name, tensor in before.items():
        if not name.startswith("model.") or name not in after:
            continue
        if any(f".{target}." in name for target in LORA_TARGETS) and name.endswith("weight"):
            assert not torch.equal(tensor, after[name]), name  # the adapters moved every projection
        else:
            assert torch.equal(tensor, after[name]), name  # embeddings, norms, biases frozen
    assert learned_auc > 0.9


def _train_tiny(tmp_path, with_scores=False, **config):
    """Train a tiny PRM on the fixture's progress labels: (base weights, trained weights, AUC of
    the trained PRM's turn scores against the labels[, the scores of the good and of the bad
    steps]). The loss must at least halve (hard labels) or fall (soft: its floor is above 0)."""
    from safetensors.torch import load_file

    from agentrm.training.prm_train import train_prm
    from agentrm.verifiers.prm import make_scorer
    from agentrm.verifiers.prm_tiny import build_tiny_prm

    base = build_tiny_prm(tmp_path / "base", "token-cls", seed=2)
    trajs = _trajs()
    labels = labels_from_progress(progress_rows(trajs), 0.5, soft=config.get("soft_labels", False))
    out = tmp_path / "prm"
    summary = train_prm([labelled(t, labels[t.id]) for t in trajs], out,
                        PRMTrainConfig(base=str(base), **config))
    floor = 0.0 if not config.get("soft_labels") else 0.75 * -math.log(0.75) - 0.25 * math.log(0.25)
    assert summary["losses"][-1] - floor < 0.5 * (summary["losses"][0] - floor)
    rows = make_scorer(model=str(out), style="token-cls").score(trajs)
    scored = {(r.trajectory_id, r.turn_index): r.value for r in rows if r.turn_index is not None}
    ys = [int(good(turn)) for t in trajs for turn in t.turns]
    ss = [scored[(t.id, k)] for t in trajs for k in range(4)]
    auc = roc_auc(ss, ys)
    weights = load_file(str(base / "model.safetensors")), load_file(str(out / "model.safetensors"))
    if with_scores:
        return *weights, auc, ([s for s, y in zip(ss, ys, strict=True) if y], [s for s, y in zip(ss, ys, strict=True) if not y])
    return *weights, auc


def test_lora_config_is_checked_up_front():
    from agentrm.errors import InputError

    with pytest.raises(InputError, match="lora-rank"):
        PRMTrainConfig(lora_rank=4, freeze_backbone=True)
    with pytest.raises(InputError, match="lora-rank"):
        PRMTrainConfig(lora_rank=-1)
