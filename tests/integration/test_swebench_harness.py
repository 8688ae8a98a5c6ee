"""`agentrm eval swe-bench` end to end in real Docker with a real trace store: gold patches
resolve every bundled instance, empty patches resolve none, results resume by content key, bad
rows become per-instance errors, agent mode turns a scripted fix into a resolved instance, and
the "tests" scorer re-grades a stored trajectory."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agentrm.evals.swebench.dataset import BUNDLED, load_instances
from agentrm.evals.swebench.harness import EvalConfig, evaluate

pytestmark = [pytest.mark.docker, pytest.mark.slow]


def cfg(tmp: Path, **kw) -> EvalConfig:
    return EvalConfig(run_dir=str(tmp / "runs"), db=f"sqlite:///{tmp}/store.db", max_workers=2, **kw)


@pytest.fixture(scope="module")
def gold_run(docker_client, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("gold")
    return tmp, evaluate(cfg(tmp, predictions="gold", run_id="gold-run"))


def test_gold_resolves_every_bundled_instance(gold_run):
    tmp, run = gold_run
    ids = sorted(i.instance_id for i in load_instances("bundled"))
    s = run.summary
    assert s["resolved_ids"] == ids and s["resolved_instances"] == len(ids) == s["total_instances"]
    assert s["error_ids"] == [] and s["schema_version"] == 2
    on_disk = json.loads(run.summary_path.read_text())
    assert on_disk == s and run.summary_path.name == "gold.gold-run.json"
    inst_dir = tmp / "runs" / "gold-run" / "gold" / ids[0]
    for name in ("patch.diff", "eval.sh", "test_output.txt", "run_instance.log", "report.json"):
        assert (inst_dir / name).is_file(), name
    report = json.loads((inst_dir / "report.json").read_text())[ids[0]]
    assert report["resolved"] and report["patch_successfully_applied"]
    assert report["tests_status"]["FAIL_TO_PASS"]["failure"] == []


def test_gold_results_are_in_the_trace_store(gold_run):
    from agentrm.traces import open_store

    tmp, run = gold_run
    store = open_store(f"sqlite:///{tmp}/store.db")
    trajs = list(store.iter_trajectories(run_id="gold-run"))
    assert len(trajs) == len(run.results) and all(t.reward == 1.0 for t in trajs)
    scores = store.get_scores(scorer="tests")
    assert len(scores) == len(trajs) and {s.value for s in scores} == {1.0}
    assert all(s.details["status"] == "resolved" for s in scores)


def test_rerun_reuses_matching_results_only(gold_run):
    tmp, first = gold_run
    one = first.results[0].instance_id
    again = evaluate(cfg(tmp, predictions="gold", run_id="gold-run", instance_ids=[one]))
    assert again.results[0].reused and again.results[0].status == "resolved"
    # a different patch for the same instance under the same run id is evaluated afresh
    preds = tmp / "preds.jsonl"
    preds.write_text(json.dumps({"instance_id": one, "model_name_or_path": "gold",
                                 "model_patch": "--- a/nope.py\n+++ b/nope.py\n@@ -1 +1 @@\n-a\n+b\n"}) + "\n")
    changed = evaluate(cfg(tmp, predictions=str(preds), run_id="gold-run", instance_ids=[one]))
    assert not changed.results[0].reused and changed.results[0].status == "patch_failed"
    assert changed.summary["patch_failed_ids"] == [one] and changed.summary["error_ids"] == [one]


def test_empty_patches_resolve_nothing(docker_client, tmp_path):
    run = evaluate(cfg(tmp_path, predictions="empty"))
    n = len(load_instances("bundled"))
    assert run.summary["resolved_instances"] == 0 and run.summary["empty_patch_instances"] == n


def test_bad_rows_are_per_instance_errors(docker_client, tmp_path):
    good = json.loads(BUNDLED.read_text().splitlines()[0])
    missing_repo = {**good, "instance_id": "ghost__repo-1", "repo": "ghost/repo"}
    no_spec = {**good, "instance_id": "agentrm__textkit-99", "version": "9.9"}
    bad_commit = {**good, "instance_id": "agentrm__textkit-98", "base_commit": "0" * 40}
    data = tmp_path / "d.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in (good, missing_repo, no_spec, bad_commit)))
    specs = tmp_path / "specs.yaml"
    specs.write_text("repos:\n  ghost/repo:\n    '*': {}\n")
    run = evaluate(cfg(tmp_path, dataset=str(data), predictions="gold", specs=str(specs)))
    by_id = {r.instance_id: r for r in run.results}
    assert by_id[good["instance_id"]].status == "resolved"
    assert "no bundled repository 'repo'" in by_id["ghost__repo-1"].error
    assert "no environment spec" in by_id["agentrm__textkit-99"].error
    assert "not in repository" in by_id["agentrm__textkit-98"].error
    assert sorted(run.summary["infrastructure_error_ids"]) == sorted(
        ["ghost__repo-1", "agentrm__textkit-99", "agentrm__textkit-98"])


def test_agent_mode_with_a_scripted_fix(docker_client, tmp_path):
    from agentrm.traces import open_store
    from agentrm.verifiers.registry import make_scorer

    inst = next(i for i in load_instances("bundled") if i.instance_id == "agentrm__textkit-1")
    actions = [
        {"tool": "bash", "args": {"command": "git status --short && cat textkit/slug.py"}},
        {"tool": "edit_file", "args": {"path": "textkit/slug.py",
                                       "old_str": 'return re.sub(r"[^a-z0-9]", sep, text.lower())',
                                       "new_str": 'return re.sub(r"[^a-z0-9]+", sep, text.lower()).strip(sep)'}},
        {"tool": "submit", "args": {}},
    ]
    script = tmp_path / "fix.jsonl"
    script.write_text("".join(json.dumps(a) + "\n" for a in actions))
    run = evaluate(cfg(tmp_path, agent=True, policy=f"scripted:{script}", run_id="agent-run",
                       instance_ids=[inst.instance_id, "agentrm__textkit-2"]))
    by_id = {r.instance_id: r for r in run.results}
    assert by_id[inst.instance_id].status == "resolved"
    assert by_id["agentrm__textkit-2"].status == "unresolved"  # the same edit does not fix it
    store = open_store(f"sqlite:///{tmp_path}/store.db")
    traj = store.get_trajectory(by_id[inst.instance_id].trajectory_id)
    assert len(traj.turns) == 3 and traj.reward == 1.0
    assert "textkit/slug.py" in traj.metadata["model_patch"]
    # resuming the run id keeps finished attempts instead of rolling out again
    again = evaluate(cfg(tmp_path, agent=True, policy=f"scripted:{script}", run_id="agent-run",
                         instance_ids=[inst.instance_id]))
    assert again.results[0].reused and again.results[0].status == "resolved"
    # a new database: the attempt on disk is not reused, so the new store gets the rollout
    fresh = EvalConfig(run_dir=str(tmp_path / "runs"), db=f"sqlite:///{tmp_path}/fresh.db", max_workers=2,
                       agent=True, policy=f"scripted:{script}", run_id="agent-run",
                       instance_ids=[inst.instance_id])
    third = evaluate(fresh)
    assert not third.results[0].reused and third.results[0].status == "resolved"
    assert open_store(f"sqlite:///{tmp_path}/fresh.db").get_trajectory(third.results[0].trajectory_id).turns
    # the registered "tests" scorer re-grades the stored trajectory from its metadata alone
    [score] = make_scorer("tests").score([traj])
    assert score.value == 1.0 and score.details["status"] == "resolved"


def test_v5_rows_bring_their_own_image_eval_script_and_parser(docker_client, tmp_path):
    from agentrm.evals.swebench.images import instance_image
    from agentrm.evals.swebench.repos import RepoSource
    from agentrm.evals.swebench.specs import load_specs

    inst = next(i for i in load_instances("bundled") if i.instance_id == "agentrm__textkit-1")
    image = instance_image(inst, load_specs().lookup(inst.repo, inst.version), RepoSource("bundled"))
    script = ("cd /workspace\ngit apply <<'TESTS'\n" + inst.test_patch + "TESTS\n"
              "python -m pytest -rA -p no:cacheprovider tests/test_slug.py\n")
    row = {k: v for k, v in inst.row.items() if k != "base_commit"}
    row.update(image=image, eval_script=script, log_parser="parse_log_pytest", repo="elsewhere/textkit")
    data = tmp_path / "v5.json"
    data.write_text(json.dumps([row]))
    gold = evaluate(cfg(tmp_path, dataset=str(data), predictions="gold", run_id="v5-gold"))
    assert gold.summary["resolved_ids"] == [inst.instance_id]
    preds = tmp_path / "p.json"
    unrelated = "--- a/README.md\n+++ b/README.md\n@@ -1,2 +1,3 @@\n # textkit\n+Unrelated.\n \n"
    preds.write_text(json.dumps({inst.instance_id: {"model_patch": unrelated, "model_name_or_path": "m"}}))
    other = evaluate(cfg(tmp_path, dataset=str(data), predictions=str(preds), run_id="v5-other"))
    assert other.summary["unresolved_ids"] == [inst.instance_id]
