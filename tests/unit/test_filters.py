"""Filters (dynamic sampling, thresholds, best-of-N, verified, near-duplicates) and statistics."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest

from agentrm.advantages import StepRows
from agentrm.advantages.filters import FilterConfig, apply_filters, batch_statistics
from agentrm.cli.main import main
from agentrm.errors import InputError


def batch():
    # group g: tied outcomes (1, 1) but its anchor "b" is reached with different returns
    # group h: tied outcomes (0, 0), no step signal; group k: varied outcomes 0 / 1 / 0.5
    specs = [("g", "g0", 0, 1.0, "a"), ("g", "g0", 1, 0.0, "b"),
             ("g", "g1", 0, 1.0, "b"), ("g", "g1", 1, 0.0, "c"),
             ("h", "h0", 0, 0.0, "a"), ("h", "h1", 0, 0.0, "a"),
             ("k", "k0", 0, 0.0, "x"), ("k", "k1", 0, 1.0, "x"), ("k", "k2", 0, 0.5, "y")]
    uid, traj, step, reward, anchor = zip(*specs, strict=True)
    return StepRows.from_columns(uid, traj, step, reward, None, anchor)


def kept_trajectories(rows, keep):
    return sorted(set(rows.traj_uid[keep].tolist()))


def test_zero_variance_drop_vs_keep_for_step_terms():
    rows = batch()
    keep, removed = apply_filters(rows, FilterConfig(zero_variance="drop"))
    assert kept_trajectories(rows, keep) == ["k0", "k1", "k2"] and removed["zero_variance"] == 4
    keep, _ = apply_filters(rows, FilterConfig(zero_variance="keep-step"))
    assert kept_trajectories(rows, keep) == ["g0", "g1", "k0", "k1", "k2"]
    keep, _ = apply_filters(rows, FilterConfig())
    assert keep.all()


def test_thresholds_and_best_of_n():
    rows = batch()
    keep, removed = apply_filters(rows, FilterConfig(min_score=0.5))
    assert kept_trajectories(rows, keep) == ["g0", "g1", "k1", "k2"] and removed["min_score"] == 3
    keep, _ = apply_filters(rows, FilterConfig(max_score=0.5))
    assert kept_trajectories(rows, keep) == ["h0", "h1", "k0", "k2"]
    keep, _ = apply_filters(rows, FilterConfig(best_of=1))
    assert kept_trajectories(rows, keep) == ["g0", "h0", "k1"]  # ties → first trajectory id
    keep, _ = apply_filters(rows, FilterConfig(best_of=2, min_score=0.1))
    assert kept_trajectories(rows, keep) == ["g0", "g1", "k1", "k2"]


def test_verified_gate_and_near_duplicates():
    rows = batch()
    verified = np.array([True, True, True, False, True, True, True, True, True])
    keep, removed = apply_filters(rows, FilterConfig(require_verified=True), verified=verified)
    assert "g1" not in kept_trajectories(rows, keep) and removed["unverified"] == 1
    with pytest.raises(InputError, match="verified"):
        apply_filters(rows, FilterConfig(require_verified=True))
    text = np.array(["ls", "cat a", "ls", "cat b", "same", "same", "x", "y", "z"], dtype=object)
    keep, removed = apply_filters(rows, FilterConfig(dedup=1.0), text=text)
    assert kept_trajectories(rows, keep) == ["g0", "g1", "h0", "k0", "k1", "k2"]
    keep, _ = apply_filters(rows, FilterConfig(dedup=0.8), text=text)  # "ls\ncat a" ≈ "ls\ncat b"
    assert kept_trajectories(rows, keep) == ["g0", "h0", "k0", "k1", "k2"]


def test_statistics():
    stats = batch_statistics(batch())
    assert stats["zero_variance_groups"] == 2 and stats["zero_variance_share"] == pytest.approx(2 / 3)
    # anchor groups: g{a}, g{b,b}, g{c}, h{a,a}, k{x,x}, k{y}
    assert stats["step_group_size_histogram"] == {1: 3, 2: 3}
    assert stats["singleton_share"] == pytest.approx(0.5)
    assert stats["singleton_row_share"] == pytest.approx(3 / 9)


def test_filter_cli_json_and_output(tmp_path, capsys, monkeypatch):
    rows = batch()
    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps({"uid": str(rows.uid[i]), "traj_uid": str(rows.traj_uid[i]),
                                       "step": int(rows.step[i]), "reward": float(rows.reward[i]),
                                       "anchor": rows.anchor[i]}) + "\n" for i in range(len(rows))))
    out = tmp_path / "kept.jsonl"
    monkeypatch.setattr(sys, "argv", ["agentrm", "filter", str(src), "-o", str(out),
                                      "--zero-variance", "drop", "--json"])
    main()
    report = json.loads(capsys.readouterr().out)
    assert report["before"]["zero_variance_share"] == pytest.approx(2 / 3)
    assert report["after"]["zero_variance_share"] == 0.0
    assert report["removed_trajectories"]["zero_variance"] == 4
    assert len(out.read_text().splitlines()) == 3
    monkeypatch.setattr(sys, "argv", ["agentrm", "filter", str(src), "--best-of", "0"])
    with pytest.raises(SystemExit) as exc:
        main()
    assert exc.value.code == 2 and "--best-of" in capsys.readouterr().err
