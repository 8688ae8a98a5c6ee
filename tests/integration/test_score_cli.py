"""`agentrm score` end to end: files and stored runs, idempotent writes, --json, bad input."""

from __future__ import annotations

import json

import pytest
import torch

from agentrm.traces import open_store
from agentrm.traces.io import write_jsonl
from agentrm.verifiers.prm_tiny import build_tiny_prm, sample_trajectory

pytestmark = pytest.mark.model
TRAJS = [sample_trajectory("x1", 3, seed=1), sample_trajectory("x2", 5, seed=2)]


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("score-cli")
    write_jsonl(TRAJS, root / "t.jsonl")
    return root, build_tiny_prm(root / "tc", "token-cls"), build_tiny_prm(root / "tag", "tag")


def test_file_without_db_scores_in_memory_and_prints_a_table(setup, cli):
    root, tc, _ = setup
    res = cli("score", str(root / "t.jsonl"), "--model", str(tc), "--style", "token-cls")
    assert res.returncode == 0, res.stderr
    assert "2 trajectories, 10 scores" in res.stdout and "min of 5" in res.stdout
    assert not (root / "agentrm.db").exists()


def test_file_into_db_twice_writes_no_duplicates_and_run_rescoring_is_idempotent(setup, cli, tmp_path):
    root, tc, tag = setup
    db = f"sqlite:///{tmp_path / 's.db'}"
    args = ["score", str(root / "t.jsonl"), "--db", db, "--model", str(tc), "--style", "token-cls"]
    assert cli(*args).returncode == 0
    assert cli(*args).returncode == 0
    store = open_store(db)
    first = store.get_scores(scorer="prm")
    assert len(first) == 10 and {s.trajectory_id for s in first} == {"x1", "x2"}
    run_id = store.get_trajectory("x1").run_id
    res = cli("score", "--db", db, "--run", run_id, "--model", str(tag), "--style", "tag",
              "--aggregate", "minform", "--json")
    assert res.returncode == 0, res.stderr
    rows = json.loads(res.stdout)
    assert len(rows) == 10 and {r["details"]["kind"] for r in rows} == {"token-logit-prob"}
    assert all(r["config_hash"] and r["version"] == "1" for r in rows)
    totals = [r for r in rows if r["level"] == "trajectory"]
    assert all(r["details"]["aggregate"] == "minform" for r in totals)
    assert len(store.get_scores(scorer="prm")) == 20  # two configs, ten rows each


def test_json_values_match_the_library(setup, cli):
    from agentrm.verifiers.prm import make_scorer

    root, tc, _ = setup
    res = cli("score", str(root / "t.jsonl"), "--model", str(tc), "--style", "token-cls",
              "--batch-size", "1", "--json")
    got = [r["value"] for r in json.loads(res.stdout)]
    want = [s.value for s in make_scorer(model=str(tc), style="token-cls").score(TRAJS)]
    assert sorted(got) == pytest.approx(sorted(want), abs=1e-6)


@pytest.mark.parametrize("args, message", [
    (["nope.jsonl"], "nope.jsonl: no such file"),
    (["{file}", "--scorer", "magic"], "unknown scorer 'magic'"),
    (["{file}", "--style", "orm"], "--style"),
    (["{file}", "--style", "tag", "--separator", "<step>", "--model", "{tag}"], "must be one token"),
    (["{file}", "-o", "novalue"], "expected KEY=VALUE"),
    ([], "nothing to score"),
])
def test_bad_input_is_one_line_and_exit_2(setup, cli, args, message):
    root, _, tag = setup
    args = [a.format(file=root / "t.jsonl", tag=tag) for a in args]
    res = cli("score", *args)
    assert res.returncode == 2, (res.stdout, res.stderr)
    assert message in res.stderr and len(res.stderr.strip().splitlines()) == 1


def test_broken_jsonl_names_the_line(setup, cli, tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text((setup[0] / "t.jsonl").read_text().splitlines()[0] + "\n{not json\n")
    res = cli("score", str(bad), "--model", str(setup[1]), "--style", "token-cls")
    assert res.returncode == 2 and f"{bad}:2" in res.stderr
