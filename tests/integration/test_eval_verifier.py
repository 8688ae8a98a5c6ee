"""`agentrm eval verifier` on a real SQLite store: table, --json, HTML with inline plots, step labels."""

from __future__ import annotations

import base64
import json
import re

import pytest

from agentrm.evaluation import metrics
from agentrm.types import ExitStatus, Score, ScoreLevel, Trajectory, Turn

# 3 groups × 4 rollouts; labels and two scorers' values (trajectory rows for "good", turn rows
# only for "noisy", aggregated by mean)
LABELS = [1, 0, 1, 0, 0, 0, 1, 1, 1, 0, 0, 0]
GOOD = [0.9, 0.2, 0.8, 0.3, 0.1, 0.4, 0.7, 0.95, 0.6, 0.5, 0.2, 0.1]
NOISY = [[0.2, 0.4], [0.9, 0.7], [0.5, 0.5], [0.1, 0.3], [0.6, 0.6], [0.8, 1.0],
         [0.3, 0.1], [0.4, 0.4], [0.7, 0.9], [0.2, 0.2], [0.5, 0.7], [0.6, 0.2]]


def _traj(i: int) -> Trajectory:
    turns = [Turn(k, [{"role": "user", "content": f"task {i // 4}"}] if k == 0 else
                  [{"role": "tool", "tool_call_id": f"c{k - 1}", "content": f"out {k}"}],
                  {"role": "assistant", "content": f"step {k} of {i}"}) for k in range(2)]
    return Trajectory(f"t{i}", f"task{i // 4}", f"g{i // 4}", turns, exit_status=ExitStatus.SUBMITTED,
                      reward=float(LABELS[i]), run_id="r1")


@pytest.fixture
def db(tmp_path):
    from agentrm.traces import open_store

    url = f"sqlite:///{tmp_path / 'eval.db'}"
    store = open_store(url)
    store.import_trajectories([_traj(i) for i in range(12)], run_id="r1")
    rows = [Score("good", f"t{i}", v, ScoreLevel.TRAJECTORY, config_hash="h1") for i, v in enumerate(GOOD)]
    rows += [Score("noisy", f"t{i}", v, ScoreLevel.TURN, k, config_hash="h2")
             for i, vs in enumerate(NOISY) for k, v in enumerate(vs)]
    store.write_scores(rows)
    store.close()
    return url


def test_json_metrics_equal_direct_computation(cli, db):
    res = cli("eval", "verifier", "--db", db, "--run", "r1", "-s", "good", "-s", "noisy", "--json")
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    assert out["labels"] == {"source": "reward", "kind": "outcome", "trajectories": 12, "positives": 5,
                             "groups": 3, "group_by": "group"}
    good, noisy = out["scorers"]
    assert good["auc"] == pytest.approx(metrics.roc_auc(GOOD, LABELS))
    means = [sum(v) / 2 for v in NOISY]
    assert noisy["auc"] == pytest.approx(metrics.roc_auc(means, LABELS))
    assert good["ece"] == pytest.approx(metrics.ece(GOOD, LABELS))
    groups = [(GOOD[g * 4:g * 4 + 4], LABELS[g * 4:g * 4 + 4]) for g in range(3)]
    assert good["best_of_n"][:4] == [pytest.approx(r) for r in metrics.best_of_n(groups, [1, 2, 3, 4])]
    assert good["best_of_n"][4] == {"n": 5, "groups": 0, "accuracy": None, "oracle": None}
    assert len(good["best_of_n"]) == 16
    hybrid = out["hybrid"]
    assert hybrid["kind"] == "learned" and hybrid["n"] == 12 and len(hybrid["fold_reports"]) == 2
    assert all(r["chosen"] in ("good", "noisy", "combination") for r in hybrid["fold_reports"])
    assert "Infinity" not in res.stdout and "NaN" not in res.stdout  # strict JSON for other tools
    assert set(hybrid["best_of_n"]) == {"good", "noisy", "hybrid"}


def test_table_and_html_report(cli, db, tmp_path):
    html = tmp_path / "report.html"
    res = cli("eval", "verifier", "--db", db, "--run", "r1", "-s", "good", "-s", "noisy",
              "--html", str(html), "--png-dir", str(tmp_path / "png"))
    assert res.returncode == 0, res.stderr
    assert "AUC" in res.stdout and "BoN@4" in res.stdout and "hybrid" in res.stdout
    assert max(len(line) for line in res.stdout.splitlines()) <= 80
    page = html.read_text()
    images = re.findall(r'src="data:image/png;base64,([^"]+)"', page)
    assert len(images) == 2  # best-of-N and reliability, inlined
    assert all(base64.b64decode(img)[:8] == b"\x89PNG\r\n\x1a\n" for img in images)
    assert (tmp_path / "png" / "reliability.png").read_bytes()[:4] == b"\x89PNG"
    assert "src=\"http" not in page


def test_step_labels_give_processbench_f1(cli, db, tmp_path):
    # first wrong step per trajectory; "noisy" predicts the first step below 0.5
    gold = {"t0": 0, "t1": -1, "t2": -1, "t3": 1}
    path = tmp_path / "steps.jsonl"
    path.write_text("".join(json.dumps({"trajectory_id": k, "label": v}) + "\n" for k, v in gold.items()))
    res = cli("eval", "verifier", "--db", db, "--run", "r1", "-s", "noisy", "--labels", str(path), "--json")
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    assert out["labels"]["kind"] == "steps" and out["labels"]["trajectories"] == 4
    fe = out["scorers"][0]["first_error"]
    predicted = [metrics.first_error(NOISY[i]) for i in range(4)]  # [0, -1, -1, 0]
    assert predicted == [0, -1, -1, 0]
    assert fe["acc_err"] == pytest.approx(0.5) and fe["acc_cor"] == pytest.approx(1.0)
    assert fe["f1"] == pytest.approx(2 * 0.5 / 1.5)


def test_bad_input_is_one_line_exit_2(cli, db, tmp_path):
    res = cli("eval", "verifier", "--db", db, "--run", "nope", "-s", "good")
    assert res.returncode == 2 and "no stored trajectories" in res.stderr
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"trajectory_id": "t0"}\n')
    res = cli("eval", "verifier", "--db", db, "--run", "r1", "-s", "good", "--labels", str(bad))
    assert res.returncode == 2 and "bad.jsonl:1" in res.stderr
    res = cli("eval", "verifier", "--db", db, "--run", "r1", "-s", "good", "--labels", "tests")
    assert res.returncode == 2 and "no stored trajectory scores" in res.stderr


def test_hybrid_from_a_combine_spec(cli, db):
    """--hybrid SPEC ranks by the combined reward: good's verdict on the last turn + noisy's
    per-turn values, summed over turns."""
    res = cli("eval", "verifier", "--db", db, "--run", "r1", "-s", "good", "-s", "noisy",
              "--hybrid", "good + 2*noisy", "--json")
    assert res.returncode == 0, res.stderr
    hybrid = json.loads(res.stdout)["hybrid"]
    assert hybrid["kind"] == "spec" and hybrid["spec"] == "good + 2*noisy"
    totals = [g + 2 * sum(n) for g, n in zip(GOOD, NOISY, strict=True)]
    assert hybrid["auc"] == pytest.approx(metrics.roc_auc(totals, LABELS))
    groups = [(totals[g * 4:g * 4 + 4], LABELS[g * 4:g * 4 + 4]) for g in range(3)]
    assert hybrid["best_of_n"]["hybrid"][1]["accuracy"] == pytest.approx(
        metrics.best_of_n(groups, [2])[0]["accuracy"])
