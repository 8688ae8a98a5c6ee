"""The step-row JSONL format through the real entry point: OUT echoes IN plus advantage parts,
conventions in OUT.meta.json; a bad row is a one-line error naming file:line, exit 2, and no
output file at all."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import run_agentrm

DATA = Path(__file__).resolve().parents[1] / "data" / "advantages"


def run_cli(capsys, monkeypatch, *args: str) -> tuple[int, str, str]:
    result = run_agentrm(capsys, monkeypatch, *args)
    return result.returncode, result.stdout, result.stderr


def test_file_round_trip_echoes_rows_and_records_conventions(tmp_path, capsys, monkeypatch):
    out = tmp_path / "out.jsonl"
    code, stdout, _ = run_cli(capsys, monkeypatch, "advantages", str(DATA / "tiny_gigpo.jsonl"), "-o", str(out),
                              "--gamma", "0.5", "--json")
    assert code == 0
    meta = json.loads(stdout)
    assert meta["gamma"] == 0.5 and meta["baseline"] == "trajectory" and meta["rows"] == 6
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    inputs = [json.loads(line) for line in (DATA / "tiny_gigpo.jsonl").read_text().splitlines()]
    assert len(rows) == len(inputs)
    for row, given in zip(rows, inputs, strict=True):
        assert {k: row[k] for k in given} == given
        assert row["advantage"] == pytest.approx(row["episode_advantage"] + row["step_advantage"])
    # A0 step 0 (hand-computed in docs/advantages.md): A_E = 1 − 29/60, A_S = 0.25
    assert rows[0]["advantage"] == pytest.approx(1 - 29 / 60 + 0.25)
    assert json.loads((tmp_path / "out.jsonl.meta.json").read_text())["config_hash"] == meta["config_hash"]


@pytest.mark.parametrize("estimator", ["gigpo", "grpo", "rloo", "igpo", "minform"])
def test_every_estimator_runs_from_a_file(tmp_path, capsys, monkeypatch, estimator):
    out = tmp_path / "out.jsonl"
    code, _, err = run_cli(capsys, monkeypatch, "advantages", "--estimator", estimator,
                           str(DATA / "tiny_igpo.jsonl"), "-o", str(out))
    assert code == 0, err
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert all(isinstance(r["advantage"], float) for r in rows)


BAD = [
    ('{"uid": "a", "traj_uid": "x", "step": 0, "reward": 1}\nnot json\n', 2, "not valid JSON"),
    ('{"uid": "a", "traj_uid": "x", "step": 0}\n', 1, "missing field 'reward'"),
    ('{"uid": "a", "traj_uid": "x", "step": -1, "reward": 0}\n', 1, "'step' must be a non-negative integer"),
    ('{"uid": "a", "traj_uid": "x", "step": 0, "reward": "1"}\n', 1, "'reward' must be a finite number"),
    ('{"uid": "a", "traj_uid": "x", "step": 0, "reward": true}\n', 1, "'reward' must be a finite number"),
    ('{"uid": "a", "traj_uid": "x", "step": 0, "reward": NaN}\n', 1, "'reward' must be a finite number"),
    ('{"uid": "a", "traj_uid": "x", "step": 0, "reward": 0, "valid": "yes"}\n', 1, "'valid' must be"),
    ('{"uid": "a", "traj_uid": "x", "step": 0, "reward": 0}\n{"uid": "a", "traj_uid": "x", "step": 0, "reward": 1}\n',
     2, "duplicate step 0 of trajectory 'x' (first at line 1)"),
    ('{"uid": "a", "traj_uid": "x", "step": 0, "reward": 0}\n{"uid": "b", "traj_uid": "x", "step": 1, "reward": 1}\n',
     2, "appears in groups"),
    ('[1, 2]\n', 1, "must be a JSON object"),
    ('{"traj_uid": "x", "step": 0, "reward": 0}\n', 1, "missing field 'uid'"),
]


@pytest.mark.parametrize("text, line, message", BAD, ids=[b[2][:30] for b in BAD])
def test_bad_rows_name_file_and_line_and_write_nothing(tmp_path, capsys, monkeypatch, text, line, message):
    src = tmp_path / "in.jsonl"
    src.write_text(text)
    out = tmp_path / "out.jsonl"
    code, _, err = run_cli(capsys, monkeypatch, "advantages", str(src), "-o", str(out))
    assert code == 2
    assert f"{src}:{line}:" in err and message in err
    assert len(err.strip().splitlines()) == 1
    assert not out.exists() and not list(tmp_path.glob(".out.jsonl*"))


def test_bad_flags_exit_2(tmp_path, capsys, monkeypatch):
    src = DATA / "tiny_gigpo.jsonl"
    for args, needle in [(["--anchor", "similar:2"], "--anchor"), (["--norm", "z"], "--norm"),
                         (["--estimator", "ppo"], "--estimator")]:
        code, _, err = run_cli(capsys, monkeypatch, "advantages", str(src), "-o", str(tmp_path / "o.jsonl"), *args)
        assert code == 2 and needle in err
    code, _, err = run_cli(capsys, monkeypatch, "advantages", str(src))
    assert code == 2 and "-o" in err
    code, _, err = run_cli(capsys, monkeypatch, "advantages", str(tmp_path / "nope.jsonl"), "-o", "x")
    assert code == 2 and "nope.jsonl" in err
    assert not (tmp_path / "o.jsonl").exists()


def test_std_conventions_from_the_command_line(tmp_path, capsys, monkeypatch):
    """IGPO-style σ₀ with sqrt(var + 0.75) on rewards {1, 0}: σ = 1, so A = ±0.5 exactly."""
    src = tmp_path / "in.jsonl"
    src.write_text('{"uid": "g", "traj_uid": "a", "step": 0, "reward": 1}\n'
                   '{"uid": "g", "traj_uid": "b", "step": 0, "reward": 0}\n')
    out = tmp_path / "out.jsonl"
    code, stdout, err = run_cli(capsys, monkeypatch, "advantages", "--estimator", "grpo", "--std", "population",
                                "--eps-var", "0.75", "--eps", "0", str(src), "-o", str(out), "--json")
    assert code == 0, err
    assert [json.loads(x)["advantage"] for x in out.read_text().splitlines()] == [0.5, -0.5]
    meta = json.loads(stdout)
    assert meta["std"] == "population" and meta["eps_var"] == 0.75 and meta["eps"] == 0.0


def test_empty_file_is_an_error(tmp_path, capsys, monkeypatch):
    src = tmp_path / "empty.jsonl"
    src.write_text("\n\n")
    code, _, err = run_cli(capsys, monkeypatch, "advantages", str(src), "-o", str(tmp_path / "o.jsonl"))
    assert code == 2 and "no step rows" in err and not (tmp_path / "o.jsonl").exists()
