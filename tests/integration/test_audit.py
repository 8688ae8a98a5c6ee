"""Perturbation audit: the library on a padding-loving scorer (hand-computed shifts, transforms
that neutralise it), and `agentrm audit` on a stored run with real registry scorers."""

from __future__ import annotations

import json
from collections.abc import Sequence

import pytest

from agentrm.evaluation.audit import AuditConfig, audit, shift_stats, turn_returns
from agentrm.types import ExitStatus, Score, ToolResult, Trajectory, Turn
from agentrm.verifiers.base import ScorerBase


def make(n_turns: int) -> Trajectory:
    """Turn k runs `cmd k` and sees `out k: 1{k} items`; the last turn submits 12."""
    observation = [{"role": "system", "content": "You are an agent."}, {"role": "user", "content": "Count."}]
    turns = []
    for k in range(n_turns):
        fn = ({"name": "submit", "arguments": '{"answer": "12"}'} if k == n_turns - 1
              else {"name": "bash", "arguments": json.dumps({"cmd": f"cmd {k}"})})
        assistant = {"role": "assistant", "content": f"thought {k}",
                     "tool_calls": [{"id": f"c{k}", "type": "function", "function": fn}]}
        turns.append(Turn(k, observation, assistant, tool_results=[ToolResult(f"c{k}", f"out {k}", exit_code=0)]))
        observation = [{"role": "tool", "tool_call_id": f"c{k}", "content": f"out {k}: 1{k} items"}]
    return Trajectory("t", "task", "g", turns, tail=observation, exit_status=ExitStatus.SUBMITTED)


class TurnCounter(ScorerBase):
    """Every turn earns 1.0: its summed return rewards padding by construction."""

    name = "turns"

    def score(self, trajectories: Sequence[Trajectory], context=None) -> list[Score]:
        return [self.turn_score(t.id, k, 1.0) for t in trajectories for k in range(len(t.turns))]


def _run(n: int = 4) -> list[Trajectory]:
    out = []
    for i in range(n):
        t = make(4)
        t.id, t.group_id, t.answer = f"t{i}", "g0", "12"
        out.append(t)
    return out


def test_padding_is_flagged_and_neutralised_by_bounded_transforms():
    report = audit(_run(), [TurnCounter()], AuditConfig(perturbations=["pad", "truncate", "polite"]))
    entry = report["scorers"][0]
    assert report["applied"] == {"pad": 4, "truncate": 4, "polite": 4}
    # the trajectory value is the mean turn value: 1.0 before and after, whatever the edit
    assert entry["perturbations"]["pad"]["mean_shift"] == pytest.approx(0.0)
    pad = entry["padding"]
    assert pad["flagged"] is True
    assert pad["returns"]["sum"]["mean_shift"] == pytest.approx(3.0)  # 4 turns → 7 turns
    assert pad["returns"]["sum"]["above"] == pytest.approx(1.0)
    assert sorted(pad["neutralised_by"]) == ["clip", "delta", "min"]
    assert all(pad["returns"][k]["mean_shift"] == pytest.approx(0.0) for k in ("clip", "delta", "min"))


def test_shift_stats_hand_computed():
    orig = {"a": 0.9, "b": 0.5, "c": 0.1}
    pert = {"a": 0.9, "b": 0.95, "c": 0.1}  # b overtakes a; b−c order kept
    groups = {"a": "g", "b": "g", "c": "g"}
    got = shift_stats(orig, pert, "no_rise", 1e-3, groups)
    assert got["mean_shift"] == pytest.approx(0.15)
    assert got["above"] == pytest.approx(1 / 3) and got["violations"] == pytest.approx(1 / 3)
    assert got["flip_rate"] == pytest.approx(1 / 3)  # pairs ab (flipped), ac, bc
    assert shift_stats(orig, pert, "drop", 1e-3, groups)["violations"] == pytest.approx(1.0)
    assert shift_stats(orig, pert, "neutral", 1e-3, groups)["violations"] == pytest.approx(1 / 3)


def test_turn_returns_under_transforms():
    got = turn_returns({"x": [0.9, None, 0.2]}, eta=0.5)
    assert got["sum"]["x"] == pytest.approx(1.1)
    assert got["clip"]["x"] == pytest.approx(-0.5 - 0.3)  # min(r − .5, 0): 0, −.5, −.3
    assert got["delta"]["x"] == pytest.approx(0.9)  # keep: telescopes to r_0
    assert got["min"]["x"] == pytest.approx(0.0)  # the abstained turn counts 0


@pytest.fixture
def db(tmp_path):
    from agentrm.traces import open_store

    url = f"sqlite:///{tmp_path / 'audit.db'}"
    store = open_store(url)
    store.import_trajectories(_run(), run_id="r1")
    store.close()
    return url


def test_cli_audit_answer_verifier(cli, db):
    res = cli("audit", "--db", db, "--run", "r1", "-s", "answer", "-o", "answer.mode=numeric", "--json")
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    entry = out["scorers"][0]
    assert entry["name"] == "answer" and entry["scored"] == 4
    moves = entry["perturbations"]
    # the submitted answer is untouched by text edits: an execution-style check does not move
    for name in ("polite", "pad", "false_claim", "forge_output", "reorder"):
        assert moves[name]["mean_shift"] == pytest.approx(0.0), name
    assert moves["truncate"]["mean_shift"] < 0  # no submission any more
    assert entry["padding"]["flagged"] is False
    table = cli("audit", "--db", db, "--run", "r1", "-s", "answer", "-p", "pad", "-p", "truncate")
    assert table.returncode == 0, table.stderr
    assert "truncate" in table.stdout and "rewards padding: no" in table.stdout
    assert max(len(line) for line in table.stdout.splitlines()) <= 80


def test_cli_audit_bad_input(cli, db):
    res = cli("audit", "--db", db, "--run", "r1", "-s", "answer", "-p", "nonsense")
    assert res.returncode == 2 and "nonsense" in res.stderr
    res = cli("audit", "--db", db, "--run", "r1", "-s", "answer", "-o", "prm.model=x")
    assert res.returncode == 2 and "prm" in res.stderr
    res = cli("audit", "--db", db, "--run", "r1")
    assert res.returncode == 2


@pytest.mark.model
def test_cli_audit_tiny_prm(cli, db, tmp_path):
    torch = pytest.importorskip("torch")
    torch.set_num_threads(1)
    from agentrm.verifiers.prm_tiny import build_tiny_prm

    model = build_tiny_prm(tmp_path / "prm", "token-cls", seed=3)
    res = cli("audit", "--db", db, "--run", "r1", "-s", "prm", "-o", f"prm.model={model}",
              "-o", "prm.style=token-cls", "-o", "prm.aggregate=mean", "--json")
    assert res.returncode == 0, res.stderr
    entry = json.loads(res.stdout)["scorers"][0]
    assert entry["scored"] == 4
    # a random PRM reads text: the style rewrite moves its scores, the bounded transforms are measured
    assert entry["perturbations"]["polite"]["mean_shift"] != pytest.approx(0.0, abs=1e-6)
    assert set(entry["padding"]["returns"]) == {"sum", "clip", "delta", "min"}
    assert entry["padding"]["returns"]["delta"]["above"] == pytest.approx(0.0)
