"""Combined rewards reach the advantages: `agentrm rewards --combine SPEC --run R` stores
`combined` rows, `agentrm advantages --reward SPEC` computes GiGPO from them, and the numbers
equal an independent computation (hand-made per-turn rewards through the plain-Python GiGPO
reference). Different rewards give different advantage configs and never overwrite each other."""

from __future__ import annotations

import importlib.util
import json
import uuid
from pathlib import Path

import pytest

from agentrm.traces import open_store
from agentrm.types import ExitStatus, Score, ScoreLevel, Trajectory, Turn

SPEC = "tests + 0.5*prm|clip:0.8"
REF = Path(__file__).resolve().parents[1] / "unit" / "test_adv_reference.py"


def reference():
    spec = importlib.util.spec_from_file_location("adv_reference", REF)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def trajectory(run_id, group, name, actions, reward, status=ExitStatus.SUBMITTED):
    turns, obs = [], [{"role": "user", "content": "fix it"}]
    for k, cmd in enumerate(actions):
        turns.append(Turn(index=k, observation=obs, assistant={"role": "assistant", "content": cmd},
                          anchor_key=f"s{k}:{actions[k - 1] if k else ''}"))
        obs = [{"role": "tool", "content": f"out of {cmd}"}]
    return Trajectory(id=f"{group}-{name}", task_id="t1", group_id=group, turns=turns, tail=obs,
                      exit_status=status, reward=reward, run_id=run_id)


PRM = {"a": [0.9, 0.95], "b": [0.9, 0.3], "c": [0.5, 0.6], "d": [0.7]}
TESTS = {"a": 1.0, "b": 0.0, "c": 0.0}


@pytest.fixture
def stored_run(tmp_path):
    url = f"sqlite:///{tmp_path / 'p.db'}"
    store = open_store(url)
    run_id = store.begin_run({"test": "pipeline"}, run_id=f"run-{uuid.uuid4().hex[:6]}")
    group = "g1"
    trajs = [trajectory(run_id, group, "a", ["ls", "pytest"], 1.0),
             trajectory(run_id, group, "b", ["ls", "cat a.py"], 0.0),
             trajectory(run_id, group, "c", ["pytest", "ls"], 0.0),
             trajectory(run_id, group, "d", ["ls"], None, ExitStatus.SANDBOX_ERROR)]
    for t in trajs:
        store.begin_trajectory(t)
        store.end_trajectory(t.id, t.exit_status, t.reward)
    name = lambda t: t.id.rsplit("-", 1)[1]  # noqa: E731
    scores = [Score("prm", t.id, v, ScoreLevel.TURN, k, "1", "p1") for t in trajs
              for k, v in enumerate(PRM[name(t)])]
    scores += [Score("tests", t.id, TESTS[name(t)], ScoreLevel.TRAJECTORY, None, "1", "t1")
               for t in trajs if name(t) in TESTS]
    scores.append(Score("tests", trajs[3].id, None, ScoreLevel.TRAJECTORY, None, "1", "t1",
                        {"failure": "infrastructure"}))
    store.write_scores(scores)
    return url, run_id, trajs


def expected_rewards(name: str) -> list[float]:
    """tests on the last turn + 0.5 · min(prm − 0.8, 0) per turn, by hand."""
    prm = PRM[name]
    out = [0.5 * min(p - 0.8, 0.0) for p in prm]
    out[-1] += TESTS[name]
    return out


def test_combined_rewards_reach_gigpo(stored_run, cli):
    url, run_id, trajs = stored_run
    res = cli("rewards", "--combine", SPEC, "--run", run_id, "--db", url, "--json")
    assert res.returncode == 0, res.stderr
    table = {r["trajectory_id"]: r for r in json.loads(res.stdout)}
    for t in trajs[:3]:
        assert table[t.id]["rewards"] == pytest.approx(expected_rewards(t.id[-1]))
    assert table[trajs[3].id]["rewards"] is None  # infrastructure: no reward, never 0
    combined = open_store(url).get_scores(scorer="combined")
    assert {s.trajectory_id for s in combined if s.level == ScoreLevel.TURN} == {t.id for t in trajs[:3]}

    res = cli("advantages", "--reward", SPEC, "--run", run_id, "--db", url, "--json")
    assert res.returncode == 0, res.stderr
    meta = json.loads(res.stdout)
    assert meta["reward"] == SPEC and meta["excluded_trajectories"] == 1

    rows = [{"uid": "g1", "traj_uid": t.id, "step": k, "reward": r, "valid": True,
             "anchor": t.turns[k].anchor_key}
            for t in trajs[:3] for k, r in enumerate(expected_rewards(t.id[-1]))]
    conventions = {"gamma": 1.0, "omega": 1.0, "norm": "mean", "std": "sample", "eps": 1e-6,
                   "eps_var": 0.0, "invalid_penalty": 0.1, "penalty_placement": "row",
                   "baseline": "trajectory", "anchor": "exact"}
    want, _, step_terms = reference().gigpo(rows, conventions)
    got = {(a.trajectory_id, a.turn_index): a for a in
           open_store(url).get_advantages(estimator="gigpo") if a.config_hash == meta["config_hash"]}
    assert len(got) == len(rows)
    for row, value in zip(rows, want, strict=True):
        assert got[(row["traj_uid"], row["step"])].value == pytest.approx(value, abs=1e-9)
    assert any(abs(s) > 1e-9 for s in step_terms)  # the step-level term fires on shared states
    assert all(a.details["reward"]["reward"] == SPEC for a in got.values())


def test_each_reward_keeps_its_own_advantages(stored_run, cli):
    url, run_id, _ = stored_run
    hashes = []
    for reward in ("tests", "prm", SPEC, "outcome"):
        res = cli("advantages", "--reward", reward, "--run", run_id, "--db", url, "--json")
        assert res.returncode == 0, res.stderr
        hashes.append(json.loads(res.stdout)["config_hash"])
    assert len(set(hashes)) == 4
    stored = open_store(url).get_advantages(estimator="gigpo")
    assert {a.config_hash for a in stored} == set(hashes)
    res = cli("export", "--run", run_id, "--db", url, "-o", str(Path(url[10:]).parent / "b.parquet"))
    assert res.returncode == 2 and "several configs" in res.stderr and "prm" in res.stderr


@pytest.mark.parametrize("args, code, message", [
    (["advantages", "--reward", "tests + ", "--run", "RUN"], 2, "--combine"),
    (["advantages", "--reward", "nosuch", "--run", "RUN"], 2, "no stored scores from 'nosuch'"),
    (["advantages", "--run", "unknown-run"], 4, "no such run"),
    (["rewards", "--combine", "tests + magic", "--run", "RUN"], 2, "no stored scores from magic"),
    (["score", "--run", "unknown-run", "-s", "answer"], 4, "no such run"),
])
def test_bad_input_is_one_line(stored_run, cli, args, code, message):
    url, run_id, _ = stored_run
    res = cli(*[run_id if a == "RUN" else a for a in args], "--db", url)
    assert res.returncode == code, (res.stdout, res.stderr)
    assert message in res.stderr and len(res.stderr.strip().splitlines()) == 1, res.stderr


def test_filter_sees_the_reward_the_advantages_use(stored_run, cli, tmp_path):
    """Tied tests but different PRM: zero variance under the outcome, not under the combined
    reward, so `filter --reward SPEC` keeps what `advantages --reward SPEC` trains on."""
    url, run_id, _ = stored_run
    store = open_store(url)
    tied = [trajectory(run_id, "g2", "x", ["ls", "cat a.py"], 0.0),
            trajectory(run_id, "g2", "y", ["ls", "pytest"], 0.0)]
    for t, prm in zip(tied, ([0.9, 0.2], [0.9, 0.9]), strict=True):
        store.begin_trajectory(t)
        store.end_trajectory(t.id, t.exit_status, t.reward)
        store.write_scores([Score("prm", t.id, v, ScoreLevel.TURN, k, "1", "p1") for k, v in enumerate(prm)]
                           + [Score("tests", t.id, 0.0, ScoreLevel.TRAJECTORY, None, "1", "t1")])
    kept = {}
    for reward in ("outcome", SPEC):
        ids = tmp_path / "ids.txt"
        res = cli("filter", "--run", run_id, "--reward", reward, "--zero-variance", "drop",
                  "--ids-out", str(ids), "--db", url)
        assert res.returncode == 0, res.stderr
        kept[reward] = set(ids.read_text().split())
    assert not {t.id for t in tied} & kept["outcome"]
    assert {t.id for t in tied} <= kept[SPEC]
    assert not open_store(url).get_scores(scorer="combined")  # filtering stores nothing


def test_parquet_in_and_out_of_a_stored_run(stored_run, cli, tmp_path):
    import pyarrow.parquet as pq

    url, run_id, trajs = stored_run
    out = tmp_path / "adv.parquet"
    res = cli("advantages", "--reward", SPEC, "--run", run_id, "--db", url, "-o", str(out))
    assert res.returncode == 0, res.stderr
    table = pq.read_table(out)
    assert table.num_rows == 7 and {"traj_uid", "step", "reward", "advantage"} <= set(table.column_names)
    again = tmp_path / "adv2.parquet"
    res = cli("advantages", str(out), "-o", str(again), "--estimator", "grpo")
    assert res.returncode == 0, res.stderr
    assert pq.read_table(again).num_rows == 7  # the unknown-reward trajectory: null advantages
    kept = tmp_path / "kept.parquet"
    res = cli("filter", str(out), "-o", str(kept), "--best-of", "1")
    assert res.returncode == 0, res.stderr
    assert set(pq.read_table(kept).column("traj_uid").to_pylist()) == {trajs[0].id}
