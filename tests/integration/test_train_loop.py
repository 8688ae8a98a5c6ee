"""`agentrm train`: two iterations with a tiny random model move the policy the way the
advantages say (the surrogate Σ A·Δlog p over the last update's tokens rises, checked with an
independent forward pass of the saved checkpoint), the stored sampling log-probs are the
trainer's own (importance ratio 1 before the first step), a kill -9 resumes after the last
finished iteration, and the curve is written."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "data" / "rollout"))
from tiny_model import build_tiny_model  # noqa: E402

from agentrm.testing import DirSandbox  # noqa: E402
from agentrm.traces import open_store  # noqa: E402

pytestmark = [pytest.mark.model, pytest.mark.timeout(900)]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "model")


def task_file(path: Path, n: int = 2) -> Path:
    path.write_text("".join(json.dumps({"id": f"t{i}", "instruction": f"How many lines has file {i}?",
                                        "answer": "3"}) + "\n" for i in range(n)))
    return path


def test_two_iterations_follow_the_advantages(tiny, tmp_path, monkeypatch):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from agentrm.training.export import build_batch
    from agentrm.training.loop import TrainConfig, iteration_run, train
    from agentrm.verifiers import registry

    # registered for this test only: the scorer list other tests (and --help) see stays the shipped one
    monkeypatch.setitem(registry.SCORERS, "token-parity",
                        registry.Entry("agentrm.testing:make_token_parity_scorer", (), "test reward"))
    store = open_store(f"sqlite:///{tmp_path / 's.db'}")
    config = TrainConfig(tasks=str(task_file(tmp_path / "tasks.jsonl")),
                         policy=f"transformers:{tiny}?max_new_tokens=12&temperature=1.0",
                         iterations=2, group_size=4, max_turns=2, reward="token-parity",
                         estimator="grpo", lr=1e-3, lora_rank=4, run_id="tl", out=tmp_path / "ckpt")
    result = train(store, config, sandbox_factory=lambda c: DirSandbox(tmp_path / "ws" / uuid.uuid4().hex))
    assert [it["iteration"] for it in result.iterations] == [0, 1]
    assert all((tmp_path / "ckpt" / f"it00{k}" / "DONE").exists() for k in (0, 1))
    last = result.iterations[1]
    assert last["update"]["rows"] > 0, last  # token parity splits the groups: advantages ≠ 0
    assert abs(last["update"]["ratio_max"] - 1.0) < 1e-3  # stored log-probs = the trainer's

    # the last update's batch, rebuilt from the store as `agentrm export` would
    run_id = iteration_run("tl", 1)
    trajs = list(store.iter_trajectories(run_id=run_id))
    advs = store.get_advantages(trajectory_ids=[t.id for t in trajs], estimator="grpo")
    tok = AutoTokenizer.from_pretrained(tiny)
    rows = build_batch(trajs, {(a.trajectory_id, a.turn_index): a.value for a in advs}, tok).rows
    rows = [r for r in rows if r["advantage"] != 0]
    assert rows and all(r["token_source"] == "sampled" for r in rows)

    def logprobs(adapter: Path) -> list[torch.Tensor]:
        base = AutoModelForCausalLM.from_pretrained(tiny, dtype=torch.float32)
        model = PeftModel.from_pretrained(base, str(adapter)).eval()
        out = []
        with torch.no_grad():
            for r in rows:
                ids = torch.tensor([r["prompt_ids"] + r["response_ids"]])
                logits = model(input_ids=ids).logits[0, len(r["prompt_ids"]) - 1:-1]
                out.append(torch.log_softmax(logits, -1)[torch.arange(len(r["response_ids"])),
                                                         torch.tensor(r["response_ids"])])
        return out

    before, after = logprobs(tmp_path / "ckpt" / "it000" / "adapter"), logprobs(tmp_path / "ckpt" / "it001" / "adapter")
    for r, b in zip(rows, before, strict=True):  # the checkpoint before the update sampled them
        assert b.tolist() == pytest.approx(r["logprobs"], abs=1e-3)
    gain = sum(float((torch.tensor(r["advantages"]) * (a - b)).sum()) for r, a, b in zip(rows, after, before, strict=True))
    assert gain > 0  # log-probs of positively-advantaged tokens rose, of negative ones fell
    up = [float((a - b).mean()) for r, a, b in zip(rows, after, before, strict=True) if r["advantage"] > 0]
    down = [float((a - b).mean()) for r, a, b in zip(rows, after, before, strict=True) if r["advantage"] < 0]
    assert sum(up) / len(up) > sum(down) / len(down)
    assert store.get_run(run_id)["config"]["update"]["rows"] == last["update"]["rows"]
    assert store.get_run("tl")["kind"] == "train"


@pytest.mark.vllm
def test_vllm_policy_samples_from_the_updated_weights(tiny, tmp_path, monkeypatch, vllm_module):
    """`--policy vllm:…`: vLLM samples, the update runs on a transformers copy, and after the
    update the engine's log-probs are the trained checkpoint's (an independent forward pass of
    base + saved adapter), not the base model's."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM
    from vllm import SamplingParams

    from agentrm.training.loop import TrainConfig, Trainer, iteration_run
    from agentrm.types import full_prompts
    from agentrm.verifiers import registry

    monkeypatch.setenv("VLLM_CPU_KVCACHE_SPACE", os.environ.get("VLLM_CPU_KVCACHE_SPACE", "1"))
    monkeypatch.setitem(registry.SCORERS, "token-parity",
                        registry.Entry("agentrm.testing:make_token_parity_scorer", (), "test reward"))
    store = open_store(f"sqlite:///{tmp_path / 's.db'}")
    engine = "dtype=float32&max_model_len=2048&gpu_memory_utilization=0.05&seed=0"
    config = TrainConfig(tasks=str(task_file(tmp_path / "tasks.jsonl")),
                         policy=f"vllm:{tiny}?max_new_tokens=12&temperature=1.0&{engine}",
                         iterations=1, group_size=4, max_turns=2, reward="token-parity",
                         estimator="grpo", lr=5e-2, lora_rank=4, run_id="tv", out=tmp_path / "ckpt")
    trainer = Trainer(store, config, lambda c: DirSandbox(tmp_path / "ws" / uuid.uuid4().hex), None)
    try:
        result = trainer.run()
        update = result.iterations[0]["update"]
        assert update["rows"] > 0 and update["sync_s"] >= 0, update

        trajs = list(store.iter_trajectories(run_id=iteration_run("tv", 0)))
        turn = next(tr.turns[-1] for tr in trajs if tr.turns[-1].tokens and tr.turns[-1].logprobs)
        prompt = full_prompts(next(tr for tr in trajs if tr.turns[-1] is turn).turns)[-1]
        response = turn.tokens.completion_ids
        assert prompt and response
        ids = list(prompt) + list(response)

        def forward(model) -> list[float]:
            with torch.no_grad():
                logits = model(input_ids=torch.tensor([ids])).logits[0, len(prompt) - 1:-1]
            return torch.log_softmax(logits, -1)[torch.arange(len(response)), torch.tensor(response)].tolist()

        base = AutoModelForCausalLM.from_pretrained(tiny, dtype=torch.float32).eval()
        before = forward(base)
        assert turn.logprobs == pytest.approx(before, abs=2e-3)  # vLLM sampled from the base
        trained = forward(PeftModel.from_pretrained(base, str(tmp_path / "ckpt" / "it000" / "adapter")).eval())
        assert max(abs(a - b) for a, b in zip(trained, before, strict=True)) > 1e-2  # the update moved it

        llm = trainer.policy._llm
        params = SamplingParams(max_tokens=1, prompt_logprobs=0, temperature=0.0)
        out = trainer.policy._thread.submit(
            lambda: llm.generate([{"prompt_token_ids": ids}], params, use_tqdm=False)[0]).result()
        engine_now = [float(out.prompt_logprobs[i][t].logprob) for i, t in enumerate(ids) if i >= len(prompt)]
        assert engine_now == pytest.approx(trained, abs=2e-3)
    finally:
        trainer.policy.close()


def agentrm(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "agentrm.cli.main", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)


@pytest.mark.docker
def test_kill_9_resumes_after_the_last_finished_iteration(tiny, docker_client, tmp_path):
    db = f"sqlite:///{tmp_path / 'train.db'}"
    args = ["train", "--db", db, "--tasks", str(task_file(tmp_path / "tasks.jsonl")),
            "--eval-tasks", str(tmp_path / "tasks.jsonl"), "--eval-group-size", "2",
            "--policy", f"transformers:{tiny}?max_new_tokens=8&temperature=1.0",
            "--iterations", "3", "--group-size", "2", "--max-turns", "2", "--run-id", "k9",
            "--out", str(tmp_path / "ckpt"), "--json"]
    first = agentrm(*args)
    deadline = time.monotonic() + 600
    while not (tmp_path / "ckpt" / "it000" / "DONE").exists():
        assert first.poll() is None, first.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.2)
    os.killpg(first.pid, signal.SIGKILL)
    first.wait()
    started = open_store(db).get_run("k9.it000")["started_at"]
    second = agentrm(*args)
    out, err = second.communicate(timeout=600)
    assert second.returncode == 0, err
    report = json.loads(out)
    assert report["resumed_from"] >= 1 and [it["iteration"] for it in report["iterations"]] == [0, 1, 2]
    assert [e["after_iterations"] for e in report["evaluations"]] == [0, 1, 2, 3]
    assert open_store(db).get_run("k9.it000")["started_at"] == started  # not redone
    # what the killed process had running is left to `agentrm sandbox cleanup` (its owner is dead)
    res = subprocess.run([sys.executable, "-m", "agentrm.cli.main", "sandbox", "cleanup", "--json"],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    left = [c for c in docker_client.containers.list(all=True, filters={"label": "agentrm.run_id"})
            if c.labels["agentrm.run_id"].startswith("k9.")]
    assert left == []
    for name in ("curve.png", "curve.html"):
        res = subprocess.run([sys.executable, "-m", "agentrm.cli.main", "train", "report", "k9", "--db", db,
                              "-o", str(tmp_path / name)], capture_output=True, text=True, timeout=120)
        assert res.returncode == 0, res.stderr
    assert (tmp_path / "curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "data:image/png;base64," in (tmp_path / "curve.html").read_text()


@pytest.mark.docker
def test_swe_bench_instances_train_through_the_harness(tiny, docker_client, tmp_path):
    """`--tasks swe-bench:ID`: each iteration's group solves the instance in its image through
    the SWE-bench harness, every member's patch is graded by the instance's tests, and that
    verdict is the reward the advantages and the update use (0.0 for the tiny model's empty
    patches: the model's failure, never None)."""
    from agentrm.evals.swebench.dataset import load_instances
    from agentrm.training.loop import TrainConfig, eval_run, iteration_run, train

    instance = load_instances("bundled")[0].instance_id
    store = open_store(f"sqlite:///{tmp_path / 'swe.db'}")
    config = TrainConfig(tasks=f"swe-bench:{instance}", eval_tasks=f"swe-bench:{instance}",
                         eval_group_size=2, policy=f"transformers:{tiny}?max_new_tokens=8&temperature=1.0",
                         iterations=1, group_size=2, max_turns=1, reward="outcome", estimator="gigpo",
                         zero_variance="keep", lr=1e-3, lora_rank=4, concurrency=2, run_id="swe",
                         out=tmp_path / "ckpt")
    result = train(store, config)
    for run_id in (iteration_run("swe", 0), eval_run("swe", 0), eval_run("swe", 1)):
        trajs = list(store.iter_trajectories(run_id=run_id))
        assert len(trajs) == 2 and len({t.group_id for t in trajs}) == 1, run_id
        assert {t.task_id for t in trajs} == {instance}
        assert all(t.reward == 0.0 for t in trajs), [(t.id, t.reward, t.metadata.get("swebench")) for t in trajs]
        assert all(t.metadata["swebench"]["status"] for t in trajs)  # graded by the harness
        assert all(turn.tokens is not None for t in trajs for turn in t.turns)  # what the update reads
    assert result.iterations[0]["success_rate"] == 0.0 and result.iterations[0]["rewarded"] == 2
    assert [e["after_iterations"] for e in result.evaluations] == [0, 1]
    assert (tmp_path / "ckpt" / "it000" / "DONE").exists()


@pytest.mark.parametrize("args, code, message", [
    (["--policy", "openai:gpt-4o"], 2, "agentrm train samples with transformers:PATH_OR_ID or vllm:"),
    (["--group-size", "1"], 2, "--group-size must be at least 2"),
    (["--estimator", "nope"], 2, "unknown estimator"),
    (["--reward", "outcome +"], 2, "--combine"),
    (["--kl-coef", "0.1", "--lora-rank", "0"], 2, "--kl-coef needs --lora-rank"),
    (["--tasks", "nope.jsonl"], 2, "no such task file"),
    (["--task", "no-such-task"], 2, "no task no-such-task"),
    (["--tasks", "swe-bench:no-such-instance"], 2, "no bundled SWE-bench instance no-such-instance"),
    (["--trainer", "verl", "--out", "recipe", "--tasks", "swe-bench"], 2, "--trainer verl: SWE-bench tasks"),
])
def test_bad_flags_are_one_line_and_write_nothing(tmp_path, args, code, message):
    db = tmp_path / "never.db"
    res = subprocess.run([sys.executable, "-m", "agentrm.cli.main", "train", "--db", f"sqlite:///{db}", *args],
                         capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert res.returncode == code, (res.stdout, res.stderr)
    assert message in res.stderr and len(res.stderr.strip().splitlines()) == 1, res.stderr
    assert not db.exists() and not (tmp_path / "runs").exists()


def test_report_of_an_unknown_run_is_one_line(tmp_path):
    db = tmp_path / "r.db"
    open_store(f"sqlite:///{db}")
    res = subprocess.run([sys.executable, "-m", "agentrm.cli.main", "train", "report", "nope", "--db",
                          f"sqlite:///{db}"], capture_output=True, text=True, timeout=120)
    assert res.returncode == 4 and len(res.stderr.strip().splitlines()) == 1, res.stderr


def test_a_run_that_never_rolled_out_takes_corrected_settings(tmp_path):
    """A typo in --policy fails at load, after the run id is recorded: the rerun with the right
    policy reuses the id. Once anything was rolled out, other settings are still refused."""
    from agentrm.errors import InputError
    from agentrm.training.loop import TrainConfig, Trainer, iteration_run

    store = open_store(f"sqlite:///{tmp_path / 's.db'}")
    tasks = str(task_file(tmp_path / "tasks.jsonl"))

    def begin(policy: str) -> None:
        Trainer(store, TrainConfig(tasks=tasks, policy=policy, run_id="r", out=tmp_path / "ckpt"),
                None, None)._begin()

    begin("transformers:/nowhere")
    begin("transformers:smollm2")
    assert store.get_run("r")["config"]["policy"] == "transformers:smollm2"
    store.begin_run({}, run_id=iteration_run("r", 0), kind="train-rollout")
    with pytest.raises(InputError, match="other settings"):
        begin("transformers:/elsewhere")
    assert store.get_run("r")["config"]["policy"] == "transformers:smollm2"
