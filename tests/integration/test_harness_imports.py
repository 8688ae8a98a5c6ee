"""Other harnesses' output through `agentrm traces import`, and ATIF out through `traces export`:

- a Harbor job directory written by a real `harbor.job.Job` run in Docker
  (tests/fixtures/harbor/make_real_job.py), and one written by Harbor's own models and
  serialisers (tests/fixtures/harbor/make_job.py): one trajectory per trial (per step of a multi-step
  trial), the verifier's rewards as the reward and as `harbor.KEY` scores, ATIF step rewards as
  `atif` scores, token ids from the ATIF steps or from the result's rollout_details, the
  agent's timeout as the exit status; Harbor's ATIF comes back unchanged from the ATIF export;
- Agent Lightning spans and rollouts written by Agent Lightning's own store and tracer
  (tests/fixtures/agentlightning/make_spans.py);
- `traces export --format atif` then `traces import` of what it wrote gives the same
  trajectories and scores; bad input is one line, exit 2, nothing written.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import pytest

from agentrm.traces import open_store
from agentrm.types import full_prompts

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
HARBOR_JOB = FIXTURES / "harbor" / "job"
ATIF_FILES = [Path(__file__).resolve().parents[1] / "data" / "traces" / name
              for name in ("sample.atif.json", "rich.atif.json", "sparse.atif.json")]


def _db(tmp_path: Path, name: str = "h.db") -> str:
    return f"sqlite:///{tmp_path / name}"


def _load(path: Path):
    return json.loads(path.read_text(encoding="utf-8"))


def _stored(db: str):
    store = open_store(db)
    try:
        trajs = {t.id: t for t in store.iter_trajectories()}
        scores = {(s.trajectory_id, s.scorer, s.turn_index): s.value
                  for s in store.get_scores(list(trajs))}
    finally:
        store.close()
    return trajs, scores


# -- Harbor ---------------------------------------------------------------------------------
def test_harbor_job_one_trajectory_per_trial_with_the_verifiers_rewards(tmp_path, cli):
    db = _db(tmp_path)
    got = cli("traces", "import", str(HARBOR_JOB), "--db", db, "--json")
    assert got.returncode == 0, got.stderr
    assert json.loads(got.stdout)["imported"] == 5
    trajs, scores = _stored(db)
    assert sorted(trajs) == ["count-lines__partial", "count-lines__solved", "count-lines__steps/setup",
                             "count-lines__steps/solve", "count-lines__timeout"]
    assert {t.task_id for t in trajs.values()} == {t.group_id for t in trajs.values()} == {"count-lines"}
    # the reward is what Harbor's verifier recorded in each result.json (per step when multi-step)
    for name in ("count-lines__solved", "count-lines__partial"):
        rewards = _load(HARBOR_JOB / name / "result.json")["verifier_result"]["rewards"]
        assert trajs[name].reward == rewards["reward"]
        assert {k: scores[(name, f"harbor.{k}", None)] for k in rewards} == rewards
    steps = {s["step_name"]: s["verifier_result"]["rewards"]["reward"]
             for s in _load(HARBOR_JOB / "count-lines__steps" / "result.json")["step_results"]}
    assert {n: trajs[f"count-lines__steps/{n}"].reward for n in steps} == steps == {"setup": 1.0, "solve": 0.0}
    assert (HARBOR_JOB / "count-lines__solved" / "verifier" / "reward.txt").read_text() == "1"
    # the timed-out trial: no trajectory, no verifier, how it ended
    timeout = trajs["count-lines__timeout"]
    assert (timeout.turns, timeout.reward, timeout.exit_status.value) == ([], None, "time_limit")
    assert timeout.metadata["harbor"]["exception"]["exception_type"] == "AgentTimeoutError"
    # the ATIF step reward of the solved trial (metrics.extra.reward of its first agent step)
    assert scores[("count-lines__solved", "atif", 0)] == 0.5
    assert trajs["count-lines__solved"].policy == "hosted_vllm/tiny-random"


def test_harbor_real_job_run_in_docker(tmp_path, cli):
    """A job Harbor's own Job/Trial/Verifier code ran: rewards as its verifier parsed them, the
    agent's timeout as the exit status (Harbor still verified that trial), the ATIF turns."""
    job = FIXTURES / "harbor" / "real-job"
    db = _db(tmp_path)
    got = cli("traces", "import", str(job), "--db", db)
    assert got.returncode == 0, got.stderr
    trajs, scores = _stored(db)
    results = {p.parent.name: _load(p) for p in job.glob("*/result.json")}
    assert sorted(trajs) == sorted(results) and len(results) == 3
    for name, res in results.items():
        traj, rewards = trajs[name], res["verifier_result"]["rewards"]
        assert traj.task_id == res["task_name"] and traj.reward == rewards["reward"]
        assert {k: scores[(name, f"harbor.{k}", None)] for k in rewards} == rewards
        timed_out = (res["exception_info"] or {}).get("exception_type") == "AgentTimeoutError"
        assert traj.exit_status.value == ("time_limit" if timed_out else "imported")
        atif = job / name / "agent" / "trajectory.json"
        assert bool(traj.turns) == atif.exists()
        if atif.exists():
            steps = _load(atif)["steps"]
            assert [t.assistant["content"] for t in traj.turns] == [s["message"] for s in steps if s["source"] == "agent"]
            assert traj.turns[0].tool_results[0].content == steps[1]["observation"]["results"][0]["content"]
    assert sorted(t.exit_status.value for t in trajs.values()) == ["imported", "imported", "time_limit"]
    strict = next(n for n in results if n.startswith("count-lines-strict"))
    assert (trajs[strict].reward, scores[(strict, "harbor.answer_written", None)]) == (0.0, 1.0)


def test_harbor_token_ids_from_the_atif_steps_or_the_rollout_details(tmp_path, cli):
    db = _db(tmp_path)
    assert cli("traces", "import", str(HARBOR_JOB), "--db", db).returncode == 0
    trajs, _ = _stored(db)
    atif_steps = [s for s in _load(HARBOR_JOB / "count-lines__solved" / "agent" / "trajectory.json")["steps"]
                  if s["source"] == "agent"]
    solved = trajs["count-lines__solved"]
    assert full_prompts(solved.turns) == [s["metrics"]["prompt_token_ids"] for s in atif_steps]
    assert [t.tokens.completion_ids for t in solved.turns] == [s["metrics"]["completion_token_ids"] for s in atif_steps]
    assert [t.logprobs for t in solved.turns] == [s["metrics"]["logprobs"] for s in atif_steps]
    # the partial trial's ATIF has no ids: they come from agent_result.rollout_details[0]
    detail = _load(HARBOR_JOB / "count-lines__partial" / "result.json")["agent_result"]["rollout_details"][0]
    partial = trajs["count-lines__partial"]
    assert full_prompts(partial.turns) == detail["prompt_token_ids"]
    assert [t.tokens.completion_ids for t in partial.turns] == detail["completion_token_ids"]
    assert [t.logprobs for t in partial.turns] == detail["logprobs"]
    assert partial.turns[1].tokens.prefix_len == 4  # stored as the previous prompt plus new ids


def test_harbor_trial_directory_alone_and_its_atif_comes_back_unchanged(tmp_path, cli):
    db = _db(tmp_path)
    trial = HARBOR_JOB / "count-lines__solved"
    assert cli("traces", "import", str(trial), "--db", db).returncode == 0
    assert cli("traces", "import", str(trial / "result.json"), "--format", "harbor",
               "--db", _db(tmp_path, "b.db")).returncode == 0
    out = tmp_path / "solved.json"
    got = cli("traces", "export", "--format", "atif", "-o", str(out), "--db", db)
    assert got.returncode == 0, got.stderr
    assert _load(out) == _load(trial / "agent" / "trajectory.json")


def test_harbor_bad_directories_are_one_line_and_exit_2(tmp_path, cli):
    empty = tmp_path / "empty"
    empty.mkdir()
    got = cli("traces", "import", str(empty), "--format", "harbor", "--db", _db(tmp_path))
    assert got.returncode == 2 and len(got.stderr.strip().splitlines()) == 1
    assert str(empty) in got.stderr and "not a Harbor trial or job directory" in got.stderr
    assert not (tmp_path / "h.db").exists()
    # a verifier reward that is not a number: the file is named, nothing is stored
    import shutil

    trial = tmp_path / "job" / "t1"
    shutil.copytree(HARBOR_JOB / "count-lines__partial", trial)
    result = _load(trial / "result.json")
    result["verifier_result"] = None
    (trial / "result.json").write_text(json.dumps(result))
    (trial / "verifier" / "reward.json").write_text('{"reward": "high"}')
    got = cli("traces", "import", str(tmp_path / "job"), "--db", _db(tmp_path, "c.db"))
    assert got.returncode == 2 and len(got.stderr.strip().splitlines()) == 1
    assert "verifier" in got.stderr and "finite numbers" in got.stderr
    assert _stored(_db(tmp_path, "c.db"))[0] == {}
    # a trial whose result.json was cut short is named, not skipped (one still running, with
    # no result.json yet, is skipped)
    (trial / "verifier" / "reward.json").write_text('{"reward": 1}')
    shutil.copytree(HARBOR_JOB / "count-lines__solved", tmp_path / "job" / "t2")
    (tmp_path / "job" / "t3").mkdir()
    assert cli("traces", "import", str(tmp_path / "job"), "--db", _db(tmp_path, "d.db")).returncode == 0
    assert sorted(_stored(_db(tmp_path, "d.db"))[0]) == ["count-lines__partial", "count-lines__solved"]
    cut = tmp_path / "job" / "t2" / "result.json"
    cut.write_text(cut.read_text()[:200])
    got = cli("traces", "import", str(tmp_path / "job"), "--db", _db(tmp_path, "e.db"))
    assert got.returncode == 2 and f"{cut}: not a Harbor trial result" in got.stderr


# -- Agent Lightning --------------------------------------------------------------------------
AGL = FIXTURES / "agentlightning"


def _agl_rollouts() -> list[dict]:
    return _load(AGL / "store" / "rollouts.json")["items"]


def test_agentlightning_store_one_trajectory_per_rollout_as_its_store_serves_it(tmp_path, cli):
    db = _db(tmp_path)
    got = cli("traces", "import", str(AGL / "store"), "--db", db, "--json")
    assert got.returncode == 0, got.stderr
    trajs, scores = _stored(db)
    rollouts = _agl_rollouts()
    assert list(trajs) == [r["rollout_id"] for r in rollouts] and len(trajs) == 4
    for r in rollouts:  # the task is the input's id; a failed rollout (the agent raised) crashed
        traj = trajs[r["rollout_id"]]
        assert traj.task_id == traj.group_id == r["input"]["id"]
        assert traj.exit_status.value == {"succeeded": "imported", "failed": "crashed"}[r["status"]]
    failed = next(r["rollout_id"] for r in rollouts if r["status"] == "failed")
    assert (trajs[failed].turns, trajs[failed].reward) == ([], None)
    assert {t.policy for t in trajs.values() if t.turns} == {"tiny"}


def test_agentlightning_tokens_and_rewards_agree_with_its_own_adapter(tmp_path, cli):
    """expected.json is Agent Lightning's own reading of the same spans: TracerTraceToTriplet's
    token ids and per-call rewards, find_final_reward's final reward."""
    db = _db(tmp_path)
    assert cli("traces", "import", str(AGL / "store"), "--db", db).returncode == 0
    trajs, scores = _stored(db)
    expected = _load(AGL / "expected.json")
    assert set(expected) == set(trajs)
    for rid, want in expected.items():
        traj = trajs[rid]
        assert full_prompts(traj.turns) == [t["prompt_token_ids"] for t in want["triplets"]]
        assert [t.tokens.completion_ids for t in traj.turns] == [t["response_token_ids"] for t in want["triplets"]]
        assert [scores.get((rid, "agentlightning", k)) for k in range(len(traj.turns))] == \
            [t["reward"] for t in want["triplets"]]
        assert traj.reward == want["final_reward"]
        assert [t.metadata["agentlightning"]["response_id"] for t in traj.turns] == \
            [t["response_id"] for t in want["triplets"]]
    multi = next(rid for rid, w in expected.items() if w["input"].get("multi"))
    assert scores[(multi, "agentlightning.format", 1)] == 0.5  # the second reward dimension
    assert sum(len(t.turns) for t in trajs.values()) == 6 and any(t.turns[1].tokens.prefix_len for t in trajs.values() if t.turns)


def test_agentlightning_messages_tool_calls_and_logprobs_are_the_spans(tmp_path, cli):
    db = _db(tmp_path)
    assert cli("traces", "import", str(AGL / "store"), "--db", db).returncode == 0
    trajs, _ = _stored(db)
    rid = _agl_rollouts()[0]["rollout_id"]
    spans = _load(AGL / "store" / f"spans-{rid}.json")["items"]
    calls = [s for s in spans if s["name"] == "openai.chat.completion"]
    tool_span = next(s for s in spans if s["name"].startswith("tool_call."))
    first, second = trajs[rid].turns
    a = calls[0]["attributes"]
    assert [m["content"] for m in first.observation] == [a["gen_ai.prompt.0.content"], a["gen_ai.prompt.1.content"]]
    [call] = first.assistant["tool_calls"]
    assert tool_span["parent_id"] == calls[0]["span_id"]
    assert (call["id"], call["function"]["name"], call["function"]["arguments"]) == (
        tool_span["attributes"]["tool.call.id"], "bash", tool_span["attributes"]["tool.parameters"])
    b = calls[1]["attributes"]
    assert second.observation == [{"role": "tool", "content": b["gen_ai.prompt.3.content"],
                                   "tool_call_id": call["id"]}]
    assert [r.content for r in first.tool_results] == [b["gen_ai.prompt.3.content"]]
    assert second.assistant["content"] == b["gen_ai.completion.0.content"]
    for turn, span in zip((first, second), calls, strict=True):
        want = [e["logprob"] for e in json.loads(span["attributes"]["logprobs.content"])]
        assert turn.logprobs == want and len(want) == len(turn.tokens.completion_ids)
        assert (turn.prompt_tokens, turn.completion_tokens) == (
            span["attributes"]["gen_ai.usage.prompt_tokens"], span["attributes"]["gen_ai.usage.completion_tokens"])


def test_agentlightning_import_feeds_the_training_export_with_its_sampled_ids(tmp_path, cli):
    """advantages → export (verl rows, torch): every row's response is the ids vLLM sampled as
    Agent Lightning recorded them, none re-tokenised, log-probs included."""
    import sys

    import torch

    sys.path.insert(0, str(FIXTURES.parent / "data" / "rollout"))
    from tiny_model import build_tiny_model  # the tokenizer the fixture's model server used

    tokenizer = build_tiny_model(tmp_path / "model")
    db = _db(tmp_path)
    assert cli("traces", "import", str(AGL / "store"), "--db", db, "--run-id", "agl").returncode == 0
    got = cli("advantages", "--run", "agl", "--estimator", "grpo", "--db", db)
    assert got.returncode == 0, got.stderr
    out = tmp_path / "rows.pt"
    got = cli("export", "--run", "agl", "--estimator", "grpo", "--format", "torch", "-o", str(out),
              "--tokenizer", str(tokenizer), "--db", db)
    assert got.returncode == 0, got.stderr
    rows = torch.load(out, weights_only=False)
    assert set(rows["non_tensor_batch"]["token_source"]) == {"sampled"}
    assert rows["meta_info"]["retokenized_rows"] == 0
    expected = _load(AGL / "expected.json")
    want = [(rid, k, t["response_token_ids"]) for rid, w in expected.items() for k, t in enumerate(w["triplets"])]
    mask = rows["batch"]["response_mask"].bool()
    got_rows = [(rid, step, rows["batch"]["responses"][i][mask[i]].tolist())
                for i, (rid, step) in enumerate(zip(rows["non_tensor_batch"]["traj_uid"],
                                                    rows["non_tensor_batch"]["step"], strict=True))]
    assert sorted(got_rows) == sorted(want)
    trajs, _ = _stored(db)
    for i, (rid, step) in enumerate(zip(rows["non_tensor_batch"]["traj_uid"], rows["non_tensor_batch"]["step"],
                                        strict=True)):
        logprobs = rows["batch"]["rollout_log_probs"][i][mask[i]].tolist()
        assert logprobs == pytest.approx(trajs[rid].turns[step].logprobs, abs=1e-6)


def test_agentlightning_one_spans_file_alone_and_through_atif(tmp_path, cli):
    rid = _agl_rollouts()[0]["rollout_id"]
    db = _db(tmp_path)
    got = cli("traces", "import", str(AGL / "store" / f"spans-{rid}.json"), "--db", db)
    assert got.returncode == 0, got.stderr
    trajs, scores = _stored(db)
    traj = trajs[rid]
    assert traj.task_id == rid and traj.exit_status.value == "imported"  # no rollout record: no task
    assert len(traj.turns) == 2 and scores[(rid, "agentlightning", 0)] == 0.25
    # exported as ATIF and read back: the same conversation, ids and log-probs
    out = tmp_path / "one.json"
    assert cli("traces", "export", "--format", "atif", "-o", str(out), "--db", db).returncode == 0
    assert cli("traces", "import", str(out), "--db", _db(tmp_path, "b.db")).returncode == 0
    back = _stored(_db(tmp_path, "b.db"))[0][rid]
    assert [t.assistant for t in back.turns] == [t.assistant for t in traj.turns]
    assert [t.observation for t in back.turns] == [t.observation for t in traj.turns]
    assert full_prompts(back.turns) == full_prompts(traj.turns)
    assert [t.logprobs for t in back.turns] == [t.logprobs for t in traj.turns]


def test_agentlightning_items_as_json_lines_or_a_list_read_the_same(tmp_path, cli):
    """The store's items in the other containers the reader takes: JSON lines, a bare list."""
    items = [it for p in sorted((AGL / "store").glob("*.json")) for it in _load(p)["items"]]
    lines, listed = tmp_path / "all.jsonl", tmp_path / "all.json"
    lines.write_text("".join(json.dumps(it) + "\n" for it in items))
    listed.write_text(json.dumps(items))
    db0 = _db(tmp_path, "dir.db")
    assert cli("traces", "import", str(AGL / "store"), "--db", db0).returncode == 0
    want = {k: _comparable(v) for k, v in _stored(db0)[0].items()}
    for n, (path, fmt) in enumerate([(lines, ["--format", "agentlightning"]), (listed, [])]):
        db = _db(tmp_path, f"{n}.db")
        got = cli("traces", "import", str(path), *fmt, "--db", db)
        assert got.returncode == 0, got.stderr
        assert {k: _comparable(v) for k, v in _stored(db)[0].items()} == want


def test_agentlightning_bad_input_is_one_line_and_exit_2(tmp_path, cli):
    other = tmp_path / "other.json"
    other.write_text('{"hello": "world"}')
    got = cli("traces", "import", str(other), "--format", "agentlightning", "--db", _db(tmp_path))
    assert got.returncode == 2 and len(got.stderr.strip().splitlines()) == 1
    assert str(other) in got.stderr and "not Agent Lightning store data" in got.stderr
    rid = _agl_rollouts()[0]["rollout_id"]
    page = _load(AGL / "store" / f"spans-{rid}.json")
    del page["items"][1]["attributes"]
    broken = tmp_path / "spans.json"
    broken.write_text(json.dumps(page))
    got = cli("traces", "import", str(broken), "--db", _db(tmp_path))
    assert got.returncode == 2 and len(got.stderr.strip().splitlines()) == 1
    assert f"{broken}: items[1]: span needs attributes" in got.stderr
    assert not (tmp_path / "h.db").exists()


# -- ATIF export ------------------------------------------------------------------------------
def _comparable(traj) -> dict:
    data = asdict(traj)
    data.pop("run_id")
    return data


def test_atif_export_then_import_gives_the_same_trajectories_and_scores(tmp_path, cli):
    from agentrm.traces.harnesses import atif_file_name

    db1, db2 = _db(tmp_path, "one.db"), _db(tmp_path, "two.db")
    for path in ATIF_FILES:
        got = cli("traces", "import", str(path), "--db", db1)
        assert got.returncode == 0, got.stderr
    out = tmp_path / "atif"
    got = cli("traces", "export", "--format", "atif", "-o", str(out), "--db", db1, "--json")
    assert got.returncode == 0, got.stderr
    before, scores_before = _stored(db1)
    assert json.loads(got.stdout) == {"exported": 3, "path": str(out)}
    assert sorted(p.name for p in out.iterdir()) == sorted(atif_file_name(t) for t in before)
    got = cli("traces", "import", str(out), "--db", db2)
    assert got.returncode == 0, got.stderr
    after, scores_after = _stored(db2)
    assert {k: _comparable(v) for k, v in after.items()} == {k: _comparable(v) for k, v in before.items()}
    assert scores_after == scores_before and any(k[1] == "atif" for k in scores_after)
    for path in ATIF_FILES:  # each exported file is the document that was imported
        original = _load(path)
        tid = original.get("trajectory_id") or original.get("session_id")
        assert _load(out / atif_file_name(tid)) == original


def test_atif_export_of_trajectories_not_from_atif_keeps_group_and_exit_status(tmp_path, cli):
    """write_atif puts task, group, exit status and reward in `extra`; read_atif takes them back."""
    src = tmp_path / "in.jsonl"
    lines = [json.loads(line) for line in (ATIF_FILES[0].parent / "good.jsonl").read_text().splitlines()]
    for k, record in enumerate(lines):
        record["exit_status"] = ["submitted", "turn_limit", "crashed"][k % 3]
    src.write_text("".join(json.dumps(r) + "\n" for r in lines))
    db1, db2 = _db(tmp_path, "one.db"), _db(tmp_path, "two.db")
    assert cli("traces", "import", str(src), "--db", db1).returncode == 0
    assert cli("traces", "export", "--format", "atif", "-o", str(tmp_path / "out"), "--db", db1).returncode == 0
    assert cli("traces", "import", str(tmp_path / "out"), "--db", db2).returncode == 0
    before, after = _stored(db1)[0], _stored(db2)[0]
    keys = ("id", "task_id", "group_id", "exit_status", "reward", "policy", "tail")
    assert {t: [getattr(v, k) for k in keys] for t, v in after.items()} == \
        {t: [getattr(v, k) for k in keys] for t, v in before.items()}
    def text(trajs):  # ATIF's step message is a string: a null reply content comes back as ""
        return {t: [(x.observation, {**x.assistant, "content": x.assistant["content"] or ""})
                    for x in v.turns] for t, v in trajs.items()}

    assert text(after) == text(before)
    assert {t.group_id for t in after.values()} != {t.task_id for t in after.values()}


def test_atif_export_to_stdout_or_a_file_needs_exactly_one_trajectory(tmp_path, cli):
    db = _db(tmp_path)
    for path in ATIF_FILES:
        assert cli("traces", "import", str(path), "--db", db, "--run-id", path.name).returncode == 0
    got = cli("traces", "export", "--format", "atif", "--run", "rich.atif.json", "--db", db)
    assert got.returncode == 0 and json.loads(got.stdout) == _load(ATIF_FILES[1])
    target = tmp_path / "all.json"
    got = cli("traces", "export", "--format", "atif", "-o", str(target), "--db", db)
    assert got.returncode == 2 and len(got.stderr.strip().splitlines()) == 1
    assert "more than one trajectory matches" in got.stderr and not target.exists()
    got = cli("traces", "export", "--format", "atif", "--task", "no-such-task", "--db", db)
    assert got.returncode == 2 and "no trajectory matches" in got.stderr and got.stdout == ""
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "keep.txt").write_text("mine")
    got = cli("traces", "export", "--format", "atif", "-o", str(busy), "--db", db)
    assert got.returncode == 2 and "not an empty directory" in got.stderr
    assert [p.name for p in busy.iterdir()] == ["keep.txt"]
    assert not list(tmp_path.glob(".busy*"))  # no temporary directory left behind
    got = cli("traces", "export", "--format", "yaml", "--db", db)
    assert got.returncode == 2 and "--format 'yaml'" in got.stderr


@pytest.mark.parametrize("name", ["a/b/0", "x y", "..", "ümlaut%"])
def test_atif_file_names_keep_ids_apart(name):
    from urllib.parse import unquote

    from agentrm.traces.harnesses import atif_file_name

    file = atif_file_name(name)
    assert "/" not in file and unquote(file.removesuffix(".atif.json")) == name
