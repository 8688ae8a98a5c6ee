"""End to end: trajectories in the trace store (SQLite; PostgreSQL too) → `agentrm advantages
--run` (written back per turn) → `agentrm export --format verl|torch|trl`, tokenised with a
policy tokenizer and its chat template; plus the file path and the in-loop API."""

from __future__ import annotations

import json
import sys
import uuid

import numpy as np
import pytest

from agentrm.advantages import AdvantageConfig, compute
from agentrm.advantages.trajectories import rows_from_trajectories
from agentrm.cli.main import main
from agentrm.types import ExitStatus, Score, ScoreLevel, Trajectory, Turn

CHATML = ("{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + "
          "'<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory):
    """A tiny byte-level BPE tokenizer with a ChatML template, saved like a policy checkpoint."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    corpus = ["system user assistant tool bash ls cat pytest fix the bug in a.py tool_call arguments",
              "command name <tool_response> files passed failed"] * 20
    tok.train_from_iterator(corpus, trainers.BpeTrainer(
        vocab_size=400, special_tokens=["<|im_start|>", "<|im_end|>", "<pad>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<pad>",
                                   bos_token="<|im_start|>")
    fast.chat_template = CHATML
    path = tmp_path_factory.mktemp("tok")
    fast.save_pretrained(path)
    return path


def call(name: str, args: dict, cid: str) -> dict:
    return {"id": cid, "type": "function", "function": {"name": name, "arguments": json.dumps(args)}}


def make_group(run_id: str, group: str) -> list[Trajectory]:
    """Three rollouts of one task from the same start (+ one infrastructure failure)."""
    start = [{"role": "system", "content": "fix the bug"}, {"role": "user", "content": "fix the bug in a.py"}]

    def traj(name, actions, outputs, reward, status=ExitStatus.SUBMITTED, invalid=()):
        turns, obs = [], start
        for k, (cmd, out) in enumerate(zip(actions, outputs, strict=True)):
            assistant = {"role": "assistant", "content": f"step {k}", "tool_calls": [call("bash", {"command": cmd}, f"c{k}")]}
            turns.append(Turn(index=k, observation=obs, assistant=assistant, anchor_key=f"s{k}:{actions[k - 1] if k else ''}",
                              valid=k not in invalid))
            obs = [{"role": "tool", "tool_call_id": f"c{k}", "content": out}]
        return Trajectory(id=f"{group}-{name}", task_id="t1", group_id=group, turns=turns, tail=obs,
                          exit_status=status, reward=reward, run_id=run_id)

    return [traj("a", ["ls", "pytest"], ["a.py", "1 passed"], 1.0),
            traj("b", ["ls", "cat a.py"], ["a.py", "bug"], 0.0, invalid=(1,)),
            traj("c", ["pytest"], ["1 failed"], 0.0),
            traj("d", ["ls"], ["a.py"], None, status=ExitStatus.SANDBOX_ERROR)]


def fill_store(url: str) -> tuple[str, list[Trajectory]]:
    from agentrm.traces import open_store

    store = open_store(url)
    run_id = store.begin_run({"test": "export"}, run_id=f"run-{uuid.uuid4().hex[:8]}")
    trajs = make_group(run_id, f"g-{uuid.uuid4().hex[:6]}")
    for t in trajs:
        store.begin_trajectory(t)
        store.set_tail(t.id, t.tail)
        store.end_trajectory(t.id, t.exit_status, t.reward)
    store.write_scores([Score("ig", t.id, 0.1 * (i + 1), ScoreLevel.TURN, turn_index=0)
                        for i, t in enumerate(trajs[:2])])
    return run_id, trajs


def cli(capsys, monkeypatch, *args):
    monkeypatch.setattr(sys, "argv", ["agentrm", *args])
    try:
        main()
    except SystemExit as exc:
        assert exc.code in (0, None), capsys.readouterr().err
    return capsys.readouterr()


def stored(url: str, ids, estimator: str) -> dict:
    from agentrm.traces import open_store

    return {(a.trajectory_id, a.turn_index): a for a in open_store(url).get_advantages(ids, estimator=estimator)}


def check_store_round_trip(url, capsys, monkeypatch):
    run_id, trajs = fill_store(url)
    ids = [t.id for t in trajs]
    out = json.loads(cli(capsys, monkeypatch, "advantages", "--db", url, "--run", run_id, "--gamma", "0.9",
                         "--json").out)
    assert out["written"] == 5 and out["excluded_trajectories"] == 1
    got = stored(url, ids, "gigpo")
    rows, keys = rows_from_trajectories(trajs)
    expected = compute(rows, AdvantageConfig(gamma=0.9)).advantage
    for key, value in zip(keys, expected.tolist(), strict=True):
        if np.isfinite(value):
            assert got[key].value == pytest.approx(value)
            assert got[key].details["config"]["gamma"] == 0.9
        else:
            assert key not in got  # the infrastructure failure is never scored as 0
    # IGPO with information-gain turn rewards from a stored scorer
    cli(capsys, monkeypatch, "advantages", "--db", url, "--run", run_id, "--estimator", "igpo",
        "--reward-from", "ig", "--json")
    igpo = stored(url, ids, "igpo")
    rows, keys = rows_from_trajectories(trajs, [Score("ig", trajs[0].id, 0.1, turn_index=0),
                                                Score("ig", trajs[1].id, 0.2, turn_index=0)],
                                        turn_reward_from="ig")
    ref = compute(rows, AdvantageConfig(estimator="igpo")).advantage
    assert [igpo[k].value for k, v in zip(keys, ref.tolist(), strict=True) if np.isfinite(v)] == pytest.approx(
        [v for v in ref.tolist() if np.isfinite(v)])
    return run_id, trajs


def test_store_advantages_and_all_export_formats(tmp_path, capsys, monkeypatch, tokenizer_dir):
    url = f"sqlite:///{tmp_path / 'x.db'}"
    run_id, trajs = check_store_round_trip(url, capsys, monkeypatch)
    advs = stored(url, [t.id for t in trajs], "gigpo")
    base = ["export", "--db", url, "--run", run_id, "--tokenizer", str(tokenizer_dir), "--json"]

    import pyarrow.parquet as pq

    cli(capsys, monkeypatch, *base, "--format", "verl", "-o", str(tmp_path / "b.parquet"))
    table = pq.read_table(tmp_path / "b.parquet")
    meta = json.loads(table.schema.metadata[b"agentrm"])
    assert meta["estimator"] == "gigpo" and meta["rows"] == 5
    verl = table.to_pylist()
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    for row in verl:
        n = len(row["responses"])
        assert len(row["response_mask"]) == len(row["advantages"]) == n > 0
        assert row["input_ids"] == row["prompts"] + row["responses"]
        adv = advs[(row["traj_uid"], row["step"])].value
        assert row["advantages"] == pytest.approx([adv * m for m in row["response_mask"]], abs=1e-6)
        assert row["returns"] == row["advantages"]
        prompt = tok.decode(row["prompts"])
        model = tok.decode([t for t, m in zip(row["responses"], row["response_mask"], strict=True) if m])
        env = tok.decode([t for t, m in zip(row["responses"], row["response_mask"], strict=True) if not m])
        assert prompt.endswith("<|im_start|>assistant\n")
        assert f"step {row['step']}" in model and "<tool_call>" in model and "<tool_response>" not in model
        assert "<tool_response>" in env  # the tool reply is in the row, masked out of the loss
        assert row["response_mask"] == sorted(row["response_mask"], reverse=True)  # model, then env
    # the next turn's prompt continues this turn's prompt + response
    first = {(r["traj_uid"], r["step"]): r for r in verl}
    a0, a1 = first[(trajs[0].id, 0)], first[(trajs[0].id, 1)]
    assert tok.decode(a1["prompts"]).startswith(tok.decode(a0["prompts"] + a0["responses"]))

    import torch

    cli(capsys, monkeypatch, *base, "--format", "torch", "-o", str(tmp_path / "b.pt"))
    data = torch.load(tmp_path / "b.pt")
    t = data["batch"]
    assert t["input_ids"].shape == (5, t["prompts"].shape[1] + t["responses"].shape[1])
    assert torch.equal(t["advantages"], t["advantages"] * t["response_mask"])
    assert t["attention_mask"][:, : t["prompts"].shape[1]].sum().item() == sum(len(r["prompts"]) for r in verl)
    assert data["meta_info"]["estimator"] == "gigpo" and len(data["non_tensor_batch"]["uid"]) == 5

    from datasets import load_dataset, load_from_disk

    cli(capsys, monkeypatch, *base, "--format", "trl", "-o", str(tmp_path / "trl"))
    ds = load_from_disk(str(tmp_path / "trl"))
    assert set(ds.column_names) >= {"prompt_ids", "completion_ids", "completion_mask", "tool_mask", "advantages"}
    assert len(ds) == 5 and ds[0]["tool_mask"] == verl[0]["response_mask"]
    assert len(load_dataset("parquet", data_files=str(tmp_path / "b.parquet"))["train"]) == 5


def test_file_path_and_in_loop_api_agree(tmp_path, capsys, monkeypatch, tokenizer_dir):
    from agentrm.traces.io import write_jsonl
    from agentrm.training.inloop import group_advantages

    trajs = make_group("r", "g")
    write_jsonl(trajs, tmp_path / "trajs.jsonl")
    rows, keys = rows_from_trajectories(trajs)
    with open(tmp_path / "rows.jsonl", "w") as fh:
        for i in range(len(rows)):
            reward = float(rows.reward[i])
            fh.write(json.dumps({"uid": str(rows.uid[i]), "traj_uid": str(rows.traj_uid[i]), "step": int(rows.step[i]),
                                 "anchor": rows.anchor[i], "reward": reward if np.isfinite(reward) else None,
                                 "valid": bool(rows.valid[i])}) + "\n")
    cli(capsys, monkeypatch, "advantages", str(tmp_path / "rows.jsonl"), "-o", str(tmp_path / "adv.jsonl"))
    cli(capsys, monkeypatch, "export", "--trajectories", str(tmp_path / "trajs.jsonl"), "--advantages",
        str(tmp_path / "adv.jsonl"), "--tokenizer", str(tokenizer_dir), "--format", "verl",
        "-o", str(tmp_path / "f.parquet"))
    import pyarrow.parquet as pq
    from transformers import AutoTokenizer

    exported = {(r["traj_uid"], r["step"]): r for r in pq.read_table(tmp_path / "f.parquet").to_pylist()}
    loop = group_advantages(trajs, config=AdvantageConfig(), tokenizer=AutoTokenizer.from_pretrained(tokenizer_dir))
    assert np.isnan(loop.per_turn["g-d"]).all()
    for t in trajs[:3]:
        for k, turn in enumerate(t.turns):
            row = exported[(t.id, turn.index)]
            assert row["advantage"] == pytest.approx(loop.per_turn[t.id][k])
            assert row["advantages"] == pytest.approx(loop.per_token[t.id][k], abs=1e-6)
            assert row["responses"] == loop.tokens[t.id][k].response_ids


def test_export_refuses_when_nothing_to_export(tmp_path, capsys, monkeypatch, tokenizer_dir):
    url = f"sqlite:///{tmp_path / 'y.db'}"
    run_id, _ = fill_store(url)
    monkeypatch.setattr(sys, "argv", ["agentrm", "export", "--db", url, "--run", run_id, "--tokenizer",
                                      str(tokenizer_dir), "-o", str(tmp_path / "z.parquet")])
    with pytest.raises(SystemExit) as exc:
        main()
    assert exc.value.code == 2 and "agentrm advantages" in capsys.readouterr().err
    assert not (tmp_path / "z.parquet").exists()


def test_store_round_trip_postgres(postgres_url, capsys, monkeypatch):
    check_store_round_trip(postgres_url, capsys, monkeypatch)


@pytest.mark.model
def test_export_with_the_embedded_smollm2_tokenizer():
    from agentrm.models import load_tokenizer
    from agentrm.training.export import build_batch

    tok = load_tokenizer("smollm2")
    trajs = make_group("r", "g")[:3]
    rows, keys = rows_from_trajectories(trajs)
    adv = compute(rows, AdvantageConfig()).advantage
    batch = build_batch(trajs, dict(zip(keys, adv.tolist(), strict=True)), tok)
    assert len(batch.rows) == 5
    for row in batch.rows:
        model = tok.decode([t for t, m in zip(row["response_ids"], row["response_mask"], strict=True) if m])
        assert "<tool_call>" in model and model.rstrip().endswith("<|im_end|>")
        assert tok.decode(row["prompt_ids"]).endswith("<|im_start|>assistant\n")


def test_filter_from_the_store(tmp_path, capsys, monkeypatch):
    from agentrm.traces import open_store

    url = f"sqlite:///{tmp_path / 'f.db'}"
    run_id, trajs = fill_store(url)
    open_store(url).write_scores([Score("tests", trajs[0].id, 1.0, ScoreLevel.TRAJECTORY),
                                  Score("tests", trajs[1].id, 0.0, ScoreLevel.TRAJECTORY)])
    ids = tmp_path / "kept.txt"
    report = json.loads(cli(capsys, monkeypatch, "filter", "--db", url, "--run", run_id, "--verifier", "tests",
                            "--require-verified", "--ids-out", str(ids), "--json").out)
    assert ids.read_text().split() == [trajs[0].id]
    assert report["removed_trajectories"]["unverified"] == 3  # b failed, c and d have no verdict
    assert report["before"]["trajectories"] == 4 and report["after"]["trajectories"] == 1


def test_step_rows_huge_step_numbers_still_order_correctly():
    from agentrm.advantages import StepRows

    rows = StepRows.from_columns(["g", "g"], ["t", "t"], [2**62, 3], [1.0, 0.0])
    res = compute(rows, AdvantageConfig(gamma=0.5))
    np.testing.assert_allclose(res.columns["return"], [1.0, 0.5])


def _fails(capsys, monkeypatch, *args) -> str:
    monkeypatch.setattr(sys, "argv", ["agentrm", *args])
    with pytest.raises(SystemExit) as exc:
        main()
    assert exc.value.code == 2
    return capsys.readouterr().err


def test_export_bad_inputs_name_what_to_fix(tmp_path, capsys, monkeypatch):
    from agentrm.traces.io import write_jsonl

    url = f"sqlite:///{tmp_path / 'h.db'}"
    run_id, _ = fill_store(url)
    for gamma in ("1.0", "0.9"):
        cli(capsys, monkeypatch, "advantages", "--db", url, "--run", run_id, "--gamma", gamma, "--json")
    err = _fails(capsys, monkeypatch, "export", "--db", url, "--run", run_id, "-o", str(tmp_path / "o.parquet"))
    assert "--config-hash" in err and not (tmp_path / "o.parquet").exists()
    write_jsonl(make_group("r", "g"), tmp_path / "t.jsonl")
    (tmp_path / "adv.jsonl").write_text('{"traj_uid": "g-a", "step": 0, "advantage": 1.0}\n{"traj_uid": "g-a"}\n')
    err = _fails(capsys, monkeypatch, "export", "--trajectories", str(tmp_path / "t.jsonl"), "--advantages",
                 str(tmp_path / "adv.jsonl"), "-o", str(tmp_path / "o.parquet"))
    assert f"{tmp_path / 'adv.jsonl'}:2:" in err
    err = _fails(capsys, monkeypatch, "export", "-o", str(tmp_path / "o.parquet"))
    assert "--run" in err
    err = _fails(capsys, monkeypatch, "export", "--format", "onnx", "--db", url, "--run", run_id, "-o", "x")
    assert "--format" in err


@pytest.mark.parametrize("estimator", ["gigpo", "grpo", "rloo", "igpo", "minform"])
def test_every_estimator_runs_from_the_store(tmp_path, capsys, monkeypatch, estimator):
    url = f"sqlite:///{tmp_path / 'e.db'}"
    run_id, trajs = fill_store(url)
    out = json.loads(cli(capsys, monkeypatch, "advantages", "--db", url, "--run", run_id,
                         "--estimator", estimator, "--json").out)
    assert out["estimator"] == estimator and out["written"] == 5
    got = stored(url, [t.id for t in trajs], estimator)
    rows, keys = rows_from_trajectories(trajs)
    ref = compute(rows, AdvantageConfig(estimator=estimator)).advantage
    for key, value in zip(keys, ref.tolist(), strict=True):
        assert (key in got) == bool(np.isfinite(value))
        if key in got:
            assert got[key].value == pytest.approx(value)
