"""Export takes the sampled token ids verbatim: a turn whose text re-tokenises to other ids is
exported with the ids the policy sampled; only text-only turns are re-tokenised, and marked."""

from __future__ import annotations

import pytest
from test_export import call, tokenizer_dir  # noqa: F401  (fixture)

from agentrm.training.export import build_batch, write_batch
from agentrm.training.tokenize import ChatRenderer, default_tools
from agentrm.types import ExitStatus, TokenTrace, Trajectory, Turn, token_hash

SYSTEM = [{"role": "system", "content": "fix the bug"}, {"role": "user", "content": "fix the bug in a.py"}]


def _char_ids(tok, text: str) -> list[int]:
    """One token per character: a valid encoding that a BPE tokenizer never produces itself."""
    return [tok.convert_tokens_to_ids(tok.convert_ids_to_tokens(tok(c, add_special_tokens=False)["input_ids"])[0])
            for c in text]


def _trajectory(tok, with_tokens: bool, name: str) -> Trajectory:
    renderer = ChatRenderer(tok)
    tools = default_tools(Trajectory("x", "t", "g"))
    history, turns, previous = list(SYSTEM), [], None
    for k, cmd in enumerate(["ls", "pytest"]):
        obs = SYSTEM if k == 0 else [{"role": "tool", "tool_call_id": f"c{k - 1}", "content": "a.py"}]
        if k:
            history += obs
        assistant = {"role": "assistant", "content": "", "tool_calls": [call("bash", {"command": cmd}, f"c{k}")]}
        prompt = renderer.ids(renderer.render(history, tools, generation=True))
        text = '<tool_call>{"name": "bash", "arguments": {"command": "' + cmd + '"}}</tool_call>'
        sampled = _char_ids(tok, text) + [tok.eos_token_id]
        tokens = None
        if with_tokens:
            shared = 0
            while previous and shared < min(len(previous), len(prompt)) and previous[shared] == prompt[shared]:
                shared += 1
            tokens = TokenTrace(prompt[shared:], sampled, shared, "", "", token_hash(prompt))
        turns.append(Turn(k, obs, assistant, anchor_key=f"a{k}", tokens=tokens,
                          logprobs=[-0.1] * len(sampled) if with_tokens else None))
        history.append(assistant)
        previous = prompt
    return Trajectory(name, "t", "g", turns, tail=[{"role": "tool", "tool_call_id": "c1", "content": "ok"}],
                      exit_status=ExitStatus.SUBMITTED, reward=1.0)


@pytest.fixture
def tok(tokenizer_dir):  # noqa: F811
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tokenizer_dir)


def test_export_carries_the_sampled_ids_not_a_retokenisation(tok, tmp_path):
    sampled, text_only = _trajectory(tok, True, "s"), _trajectory(tok, False, "t")
    advantages = {(t.id, k): 0.5 for t in (sampled, text_only) for k in range(2)}
    batch = build_batch([sampled, text_only], advantages, tok)
    rows = {(r["traj_uid"], r["step"]): r for r in batch.rows}
    renderer = ChatRenderer(tok)
    for k, turn in enumerate(sampled.turns):
        row = rows[("s", k)]
        # re-tokenising the text gives other ids than were sampled ...
        retok = rows[("t", k)]
        assert retok["token_source"] == "retokenized"
        model_retok = [t for t, m in zip(retok["response_ids"], retok["response_mask"], strict=True) if m]
        assert model_retok != turn.tokens.completion_ids
        assert tok.decode(model_retok).rstrip() == tok.decode(turn.tokens.completion_ids)  # same text
        # ... and the export carries the sampled ones, with the prompt the policy was given
        assert row["token_source"] == "sampled"
        assert row["response_ids"] == turn.tokens.completion_ids
        assert row["prompt_ids"] == retok["prompt_ids"]  # history rendered alike here
        assert row["response_mask"] == [1] * len(turn.tokens.completion_ids)  # exactly the model's tokens
        assert row["logprobs"] == [-0.1] * len(turn.tokens.completion_ids)
        assert row["advantages"] == [0.5] * len(turn.tokens.completion_ids)
    # text-only rows: the model's tokens are exactly the re-rendered assistant message, the
    # tool reply follows with mask 0
    for k, turn in enumerate(text_only.turns):
        row = rows[("t", k)]
        history = [m for t in text_only.turns[:k] for m in (*t.observation, t.assistant)] + turn.observation
        tools = default_tools(text_only)
        prompt = renderer.render(history, tools, generation=True)
        full = renderer.render(history + [turn.assistant], tools, generation=False)
        n = sum(row["response_mask"])
        assert row["response_ids"][:n] == renderer.ids(full[len(prompt):])
        assert row["response_mask"] == [1] * n + [0] * (len(row["response_ids"]) - n)
        assert "<tool_response>" in tok.decode(row["response_ids"][n:])
    assert batch.metadata["retokenized_rows"] == 2

    import pyarrow.parquet as pq

    write_batch(batch, "verl", tmp_path / "b.parquet")
    table = pq.read_table(tmp_path / "b.parquet").to_pylist()
    by_key = {(r["traj_uid"], r["step"]): r for r in table}
    assert by_key[("s", 1)]["responses"] == sampled.turns[1].tokens.completion_ids
    assert by_key[("s", 1)]["token_source"] == "sampled" and by_key[("t", 1)]["token_source"] == "retokenized"
    assert by_key[("s", 0)]["rollout_log_probs"] == pytest.approx([-0.1] * len(sampled.turns[0].tokens.completion_ids))
    assert by_key[("t", 0)]["rollout_log_probs"] is None


def test_stored_ids_need_no_tokenizer_and_refuse_another_vocabulary(tok):
    from agentrm.errors import InputError
    from agentrm.rollout.policies.tokens import tokenizer_identity

    traj = _trajectory(tok, True, "s")
    batch = build_batch([traj], {("s", 0): 1.0, ("s", 1): -1.0}, None)
    assert [r["response_ids"] for r in batch.rows] == [t.tokens.completion_ids for t in traj.turns]
    for turn in traj.turns:
        turn.tokens.tokenizer = "other-model@0123456789ab"
    with pytest.raises(InputError, match="other-model"):
        build_batch([traj], {("s", 0): 1.0}, tok)
    for turn in traj.turns:
        turn.tokens.tokenizer = tokenizer_identity(tok)[0]
    assert len(build_batch([traj], {("s", 0): 1.0}, tok).rows) == 1


@pytest.mark.parametrize("path", ["append", "bulk"])
def test_store_keeps_the_ids_and_export_from_a_run_uses_them(tok, tmp_path, path, capsys, monkeypatch):
    import pyarrow.parquet as pq
    from conftest import run_agentrm

    from agentrm.traces import open_store

    url = f"sqlite:///{tmp_path / 'x.db'}"
    store = open_store(url)
    run_id = store.begin_run({"test": "tokens"}, run_id="run-tok")
    trajs = [_trajectory(tok, True, "s"), _trajectory(tok, False, "t")]
    for t in trajs:
        t.run_id = run_id
    if path == "bulk":
        store.import_trajectories(trajs, run_id=run_id)
    else:
        for t in trajs:
            turns, t.turns = t.turns, []
            store.begin_trajectory(t)
            for turn in turns:
                store.append_turn(t.id, turn)
            t.turns = turns
            store.set_tail(t.id, t.tail)
            store.end_trajectory(t.id, t.exit_status, t.reward)
    back = {t.id: store.get_trajectory(t.id) for t in trajs}
    for t in trajs:
        assert [u.tokens for u in back[t.id].turns] == [u.tokens for u in t.turns]
        assert [u.logprobs for u in back[t.id].turns] == [u.logprobs for u in t.turns]
    # the second prompt is stored as a reference plus only the new ids
    second = back["s"].turns[1].tokens
    assert second.prefix_len > 0 and len(second.prompt_ids) < second.prefix_len
    store.close()
    for args in (["advantages", "--db", url, "--run", run_id],
                 ["export", "--db", url, "--run", run_id, "--tokenizer", str(tok.name_or_path),
                  "--format", "verl", "-o", str(tmp_path / "b.parquet")]):
        result = run_agentrm(capsys, monkeypatch, *args)
        assert result.returncode == 0, result.stderr
    rows = {(r["traj_uid"], r["step"]): r for r in pq.read_table(tmp_path / "b.parquet").to_pylist()}
    for k, turn in enumerate(trajs[0].turns):
        assert rows[("s", k)]["responses"] == turn.tokens.completion_ids
        assert rows[("s", k)]["token_source"] == "sampled"
        assert rows[("t", k)]["token_source"] == "retokenized"


def test_upgrade_from_0002_keeps_turns_and_loads_them_without_tokens(tmp_path, tok):
    import sqlalchemy as sa

    from agentrm.traces import open_store
    from agentrm.traces.engine import make_engine
    from agentrm.traces.migrate import upgrade

    url = f"sqlite:///{tmp_path / 'old.db'}"
    engine = make_engine(url)
    upgrade(engine, "0002_run_lease")
    with engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO trajectories (id, task_id, group_id, exit_status, n_turns, started_at)"
                             " VALUES ('old', 't', 'g', 'submitted', 1, 0)"))
        conn.execute(sa.text("INSERT INTO turns (trajectory_id, idx, observation, assistant, anchor_key, valid)"
                             " VALUES ('old', 0, '[]', '{\"role\": \"assistant\", \"content\": \"hi\"}', 'k', 1)"))
    engine.dispose()
    store = open_store(url)  # migrates to 0003_turn_tokens
    old = store.get_trajectory("old")
    assert old.turns[0].tokens is None and old.turns[0].assistant["content"] == "hi"
    store.close()


@pytest.mark.postgres
def test_token_columns_round_trip_on_postgres(tok, fresh_postgres_url):
    from agentrm.traces import open_store

    store = open_store(fresh_postgres_url)
    run_id = store.begin_run({}, run_id="run-pg")
    bulk, appended = _trajectory(tok, True, "pg-bulk"), _trajectory(tok, True, "pg-append")
    store.import_trajectories([bulk], run_id=run_id)
    turns, appended.turns = appended.turns, []
    appended.run_id = run_id
    store.begin_trajectory(appended)
    for turn in turns:
        store.append_turn(appended.id, turn)
    for traj, expected in ((bulk, bulk.turns), (appended, turns)):
        back = store.get_trajectory(traj.id)
        assert [u.tokens for u in back.turns] == [u.tokens for u in expected]
    store.close()
