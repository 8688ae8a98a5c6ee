"""Official image layout, end to end in real Docker: images laid out like SWE-bench's (the
repository in /testbed, an environment `testbed` entered by the official activation lines, run as
root, tagged sweb.eval.x86_64.<id>:latest), built offline from agentrm's base image, graded by
official name (--namespace local) with gold, empty and v5 eval-script rows; a venv layout named
by the row; missing images with each pull policy; Python per spec; multi-model predictions;
saved and hub-cached datasets; leftovers, report dir and image retention in the summary; agent
mode in an official-layout image (unprivileged, in /testbed, activated), with and without the
warm pool."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agentrm.evals.swebench.dataset import load_instances
from agentrm.evals.swebench.harness import EvalConfig, Harness, evaluate
from agentrm.evals.swebench.local_official import build_official_style
from agentrm.evals.swebench.repos import RepoSource
from agentrm.evals.swebench.specs import load_specs

pytestmark = [pytest.mark.docker, pytest.mark.slow]
IDS = ["agentrm__textkit-1", "agentrm__ministats-1"]


def cfg(tmp: Path, **kw) -> EvalConfig:
    kw.setdefault("cache_level", "instance")  # keep the images the module shares
    return EvalConfig(run_dir=str(tmp / "runs"), max_workers=2, **kw)


@pytest.fixture(scope="module")
def official(docker_client, tmp_path_factory):
    """Official-layout images of two bundled instances, built here without any network."""
    table, repos = load_specs(), RepoSource("bundled")
    insts = {i.instance_id: i for i in load_instances("bundled") if i.instance_id in IDS}
    names = {iid: build_official_style(inst, table.lookup(inst.repo, inst.version), repos)
             for iid, inst in insts.items()}
    return insts, names, tmp_path_factory.mktemp("official")


def test_images_are_laid_out_like_the_official_ones(official, docker_client):
    insts, names, _ = official
    assert names["agentrm__textkit-1"] == "sweb.eval.x86_64.agentrm__textkit-1:latest"
    out = docker_client.containers.run(
        names["agentrm__textkit-1"], ["bash", "-c", "source /opt/miniconda3/bin/activate && "
                                                    "conda activate testbed && cd /testbed && "
                                                    "which python && git rev-parse HEAD && whoami"],
        remove=True, network_mode="none").decode().split()
    assert out[0] == "/opt/miniconda3/envs/testbed/bin/python"
    assert out[1] == insts["agentrm__textkit-1"].base_commit and out[2] == "root"


def test_gold_and_empty_by_official_name(official):
    _, _, tmp = official
    gold = evaluate(cfg(tmp, predictions="gold", instance_ids=IDS, namespace="local",
                        pull="never", run_id="off-gold"))
    assert gold.summary["resolved_ids"] == sorted(IDS), gold.results
    res = gold.results[0]
    assert res.image.startswith("sweb.eval.x86_64.") and res.run["apply_method"]
    script = (tmp / "runs" / "off-gold" / "gold" / res.instance_id / "eval.sh").read_text()
    assert "cd /testbed" in script and "conda activate testbed" in script
    empty = evaluate(cfg(tmp, predictions="empty", instance_ids=IDS, namespace="local",
                         pull="never", run_id="off-empty"))
    assert empty.summary["resolved_instances"] == 0
    assert empty.summary["empty_patch_instances"] == len(IDS)


def test_v5_row_with_an_official_style_eval_script(official):
    insts, names, tmp = official
    inst = insts["agentrm__textkit-1"]
    files = "tests/test_slug.py"
    script = "\n".join([
        "#!/bin/bash", "set -uxo pipefail", "source /opt/miniconda3/bin/activate",
        "conda activate testbed", "cd /testbed", f"git checkout {inst.base_commit} {files}",
        "git apply -v - <<'EOF_114329324912'", inst.test_patch.rstrip("\n"), "EOF_114329324912",
        ": '>>>>> Start Test Output'", f"pytest -rA {files}", ": '>>>>> End Test Output'",
        f"git checkout {inst.base_commit} {files}"]) + "\n"
    row = {**inst.row, "image": names[inst.instance_id], "eval_script": script,
           "log_parser": "parse_log_pytest", "eval_type": "pass_and_fail"}
    data = tmp / "v5.jsonl"
    data.write_text(json.dumps(row) + "\n")
    gold = evaluate(cfg(tmp, dataset=str(data), predictions="gold", run_id="off-v5", pull="never"))
    assert gold.summary["resolved_ids"] == [inst.instance_id], gold.results
    # the package's exit-code recording is in the script the grader ran
    out = tmp / "runs" / "off-v5" / "gold" / inst.instance_id
    assert "SWEBENCH_TEST_EXIT_CODE=$?" in (out / "eval.sh").read_text()
    # and the package's own grading of our test_output.txt gives the same report.json
    from swebench.harness.grading import get_eval_report
    from swebench.harness.utils import make_test_spec

    theirs = get_eval_report(make_test_spec({**row, "FAIL_TO_PASS": inst.fail_to_pass,
                                             "PASS_TO_PASS": inst.pass_to_pass}),
                             {"instance_id": inst.instance_id, "model_patch": inst.patch},
                             str(out / "test_output.txt"), include_tests_status=True)
    ours = json.loads((out / "report.json").read_text())
    assert theirs[inst.instance_id]["resolved"] is ours[inst.instance_id]["resolved"] is True
    for key in ("FAIL_TO_PASS", "PASS_TO_PASS"):
        assert (theirs[inst.instance_id]["tests_status"][key]
                == ours[inst.instance_id]["tests_status"][key])


def test_venv_layout_named_by_the_row(official, tmp_path):
    insts, _, _ = official
    inst = insts["agentrm__ministats-1"]
    spec = load_specs().lookup(inst.repo, inst.version)
    name = build_official_style(inst, spec, RepoSource("bundled"), tag="venv", kind="venv")
    row = {**inst.row, "image": name, "activate": ["source /opt/venvs/testbed/bin/activate"]}
    data = tmp_path / "venv.json"
    data.write_text(json.dumps([row]))
    run = evaluate(cfg(tmp_path, dataset=str(data), predictions="gold", pull="never"))
    assert run.summary["resolved_ids"] == [inst.instance_id], run.results


def test_missing_images_are_one_line_errors_per_instance(official, tmp_path):
    never = evaluate(cfg(tmp_path, predictions="gold", instance_ids=IDS[:1], namespace="local",
                         instance_image_tag="nope", pull="never", run_id="m1"))
    [res] = never.results
    assert res.status == "error" and "\n" not in res.error
    assert "sweb.eval.x86_64.agentrm__textkit-1:nope is not on this machine" in res.error
    # a registry namespace: pulled through the engine, which has no registry here
    remote = evaluate(cfg(tmp_path, predictions="gold", instance_ids=IDS[:1], namespace="swebench",
                          pull="missing", run_id="m2"))
    [res] = remote.results
    assert res.status == "error" and "\n" not in res.error
    assert "swebench/sweb.eval.x86_64.agentrm_1776_textkit-1:latest" in res.error
    assert remote.summary["infrastructure_error_ids"] == remote.summary["infra_failure_ids"] == IDS[:1]
    log = tmp_path / "runs" / "m2" / "image_builds" / (
        "swebench__sweb.eval.x86_64.agentrm_1776_textkit-1__latest.log")
    assert "could not be pulled" in log.read_text()


def test_python_per_spec(docker_client, tmp_path):
    from agentrm.evals.swebench.images import python_versions
    from agentrm.sandboxes import base_image

    have = python_versions(base_image())
    assert have, "the base image has a python3.X"
    specs = tmp_path / "specs.yaml"
    specs.write_text(f"repos:\n  agentrm/textkit:\n    '1.0': {{python: '{have[0]}'}}\n"
                     "  agentrm/ministats:\n    '1.0': {python: '3.6'}\n")
    run = evaluate(cfg(tmp_path, predictions="gold", instance_ids=IDS, specs=str(specs)))
    by = {r.instance_id: r for r in run.results}
    assert by["agentrm__textkit-1"].status == "resolved"  # the base's own Python, named
    bad = by["agentrm__ministats-1"]
    assert bad.status == "error" and "needs Python 3.6" in bad.error and "\n" not in bad.error
    assert run.summary["infrastructure_error_ids"] == ["agentrm__ministats-1"]


def test_python_of_a_prebuilt_image_is_checked_against_the_spec(official, tmp_path):
    from agentrm.evals.swebench.images import python_versions
    from agentrm.sandboxes import base_image

    have = python_versions(base_image())[0]  # the official-style images' venv is made from it
    specs = tmp_path / "specs.yaml"
    specs.write_text(f"repos:\n  agentrm/textkit:\n    '1.0': {{python: '{have}'}}\n"
                     "  agentrm/ministats:\n    '1.0': {python: '3.6'}\n")
    run = evaluate(cfg(tmp_path, predictions="gold", instance_ids=IDS, namespace="local",
                       pull="never", specs=str(specs)))
    by = {r.instance_id: r for r in run.results}
    assert by["agentrm__textkit-1"].status == "resolved"
    assert by["agentrm__ministats-1"].status == "error"
    assert f"needs Python 3.6; image sweb.eval.x86_64.agentrm__ministats-1:latest provides {have}" \
        in by["agentrm__ministats-1"].error


def test_two_models_two_directories_and_leftovers(official, tmp_path):
    insts, _, _ = official
    inst = insts["agentrm__textkit-1"]
    preds = tmp_path / "preds.jsonl"
    preds.write_text(json.dumps({"instance_id": inst.instance_id, "model_name_or_path": "org/a",
                                 "model_patch": inst.patch}) + "\n"
                     + json.dumps({"instance_id": inst.instance_id, "model_name_or_path": "b",
                                   "model_patch": ""}) + "\n")
    reports = tmp_path / "reports"
    run = evaluate(cfg(tmp_path, predictions=str(preds), instance_ids=[inst.instance_id],
                       run_id="two", report_dir=str(reports)))
    assert set(run.summaries) == {"org/a", "b"}
    a, a_path = run.summaries["org/a"]
    b, b_path = run.summaries["b"]
    assert a_path == reports / "org__a.two.json" and b_path == reports / "b.two.json"
    assert a["resolved_ids"] == [inst.instance_id] and b["empty_patch_ids"] == [inst.instance_id]
    assert (tmp_path / "runs" / "two" / "org__a" / inst.instance_id / "report.json").is_file()
    assert (tmp_path / "runs" / "two" / "b" / inst.instance_id / "result.json").is_file()
    for s in (a, b):
        assert s["unstopped_instances"] == 0 and s["unstopped_containers"] == []
        assert s["unremoved_images"] == [run.results[0].image]  # kept: --cache-level instance
    assert list((tmp_path / "runs" / "two" / "image_builds").glob("agentrm__swe-inst*.log"))


def test_cache_level_env_removes_the_instance_images_a_run_built(docker_client, tmp_path):
    specs = tmp_path / "specs.yaml"  # a spec of its own: an image no other test shares
    specs.write_text("repos:\n  agentrm/textkit:\n    '1.0': {install: 'python -m pip install "
                     "--no-index --no-build-isolation --no-deps -q -e . && true'}\n")
    run = evaluate(cfg(tmp_path, predictions="gold", instance_ids=IDS[:1], specs=str(specs),
                       cache_level="env", run_id="ret"))
    image = run.results[0].image
    assert run.summary["resolved_ids"] == IDS[:1] and run.summary["unremoved_images"] == []
    tags = {t for row in docker_client.api.images() for t in (row.get("RepoTags") or [])}
    assert image.startswith("agentrm/swe-inst:") and image not in tags
    log = next((tmp_path / "runs" / "ret" / "image_builds").glob("agentrm__swe-inst*.log"))
    assert "repo.bundle" in log.read_text() and "ok in" in log.read_text()


def test_saved_and_hub_cached_datasets(docker_client, tmp_path, monkeypatch):
    import shutil

    import datasets
    import datasets.config as dconf

    insts = [i for i in load_instances("bundled") if i.instance_id in IDS[:1]]
    ds = datasets.Dataset.from_list([{**i.row, "FAIL_TO_PASS": json.dumps(i.fail_to_pass),
                                      "PASS_TO_PASS": json.dumps(i.pass_to_pass)} for i in insts])
    datasets.DatasetDict({"test": ds}).save_to_disk(str(tmp_path / "saved"))
    saved = evaluate(cfg(tmp_path, dataset=str(tmp_path / "saved"), predictions="gold"))
    assert saved.summary["resolved_ids"] == IDS[:1]
    # a hub dataset in the datasets cache: loaded by name without reaching the hub
    cache = tmp_path / "hf"
    monkeypatch.setattr(dconf, "HF_DATASETS_CACHE", cache)
    jsonl = tmp_path / "rows.jsonl"
    jsonl.write_text("".join(json.dumps(r) + "\n" for r in ds.to_list()))
    datasets.load_dataset("json", data_files={"test": str(jsonl)}, cache_dir=str(cache / "build"))
    built = next((cache / "build" / "json").glob("*/0.0.0/*/"))
    target = cache / "acme___swe_mini" / "default" / "0.0.0" / built.name
    shutil.copytree(built, target)
    (target / "json-test.arrow").rename(target / "swe_mini-test.arrow")
    hub = evaluate(cfg(tmp_path, dataset="acme/swe_mini", split="test", predictions="gold"))
    assert hub.summary["resolved_ids"] == IDS[:1]


def _script(path: Path, actions: list[dict]) -> str:
    path.write_text("".join(json.dumps(a) + "\n" for a in actions))
    return f"scripted:{path}"


@pytest.mark.parametrize("warm_pool", [0, 1])
def test_agent_mode_in_an_official_layout_image(official, tmp_path, warm_pool):
    """The agent works in /testbed as an unprivileged user inside the activated environment;
    its `git diff` is graded in the pristine official image: the gold patch applied by the
    scripted agent resolves, an agent that changes nothing does not; rewards are stored."""
    from agentrm.traces import open_store

    insts, _, _ = official
    inst = insts["agentrm__textkit-1"]
    check = {"tool": "bash", "args": {"command": "id -u && pwd && which python && git status --short"}}
    gold = _script(tmp_path / "gold.jsonl", [
        check,
        {"tool": "bash", "args": {"command": f"git apply <<'EOF_GOLD'\n{inst.patch}\nEOF_GOLD\n"
                                             "git diff --stat"}},
        {"tool": "submit", "args": {}}])
    idle = _script(tmp_path / "idle.jsonl", [check, {"tool": "submit", "args": {}}])
    db = f"sqlite:///{tmp_path}/store.db"
    runs = {}
    for name, policy in (("gold", gold), ("idle", idle)):
        harness = Harness(cfg(tmp_path, db=db, agent=True, policy=policy, namespace="local",
                              pull="never", instance_ids=[inst.instance_id], warm_pool=warm_pool,
                              run_id=f"agent-{name}-{warm_pool}"))
        runs[name] = harness.run()
        if warm_pool:  # the rollout's sandbox came from the pool (started ahead, agent layer)
            pool = harness.sandbox_factory
            assert pool.hits + pool.waits == 1 and pool.misses == 0
    (ok,), (empty,) = runs["gold"].results, runs["idle"].results
    assert ok.status == "resolved", ok
    assert ok.image == "sweb.eval.x86_64.agentrm__textkit-1:latest"  # graded in the official image
    assert empty.status == "empty_patch" and empty.trajectory_id
    store = open_store(db)
    [good] = store.iter_trajectories(run_id=f"agent-gold-{warm_pool}")
    [none] = store.iter_trajectories(run_id=f"agent-idle-{warm_pool}")
    assert good.reward == 1.0 and none.reward == 0.0
    assert good.metadata["model_patch"].strip() == inst.patch.strip()
    seen = good.turns[0].tool_results[0].content
    # not root, in the row's workdir, inside the environment the official activation enters
    assert "1000\n/testbed\n/opt/miniconda3/envs/testbed/bin/python" in seen, seen
    scores = store.get_scores(trajectory_ids=[good.id, none.id])
    assert sorted((s.trajectory_id, s.value) for s in scores if s.scorer == "tests") == sorted(
        [(good.id, 1.0), (none.id, 0.0)])


def test_agent_mode_with_an_activation_that_fails_is_infrastructure(official, tmp_path):
    insts, names, _ = official
    inst = insts["agentrm__ministats-1"]
    row = {**inst.row, "image": names[inst.instance_id], "activate": ["source /nope/activate"]}
    data = tmp_path / "bad.json"
    data.write_text(json.dumps([row]))
    policy = _script(tmp_path / "idle.jsonl", [{"tool": "submit", "args": {}}])
    run = evaluate(cfg(tmp_path, dataset=str(data), agent=True, policy=policy, pull="never"))
    [res] = run.results
    assert res.status == "error" and "could not be activated as the agent" in res.error, res
    assert "/nope/activate" in res.error and "\n" not in res.error


def test_warm_pool_is_told_before_the_instance_asks_on_a_busy_machine(official, tmp_path, monkeypatch):
    """The pool is told what is coming from a background thread; when that thread is slow (a
    busy machine), the instance used to get there first, miss, and start a second sandbox."""
    import time as clock

    import agentrm.evals.swebench.warm_pool as warm_pool

    real = warm_pool.agent_sandbox_config

    def slow(*args, **kwargs):  # only the background thread computes the config this way
        clock.sleep(4)
        return real(*args, **kwargs)
    monkeypatch.setattr(warm_pool, "agent_sandbox_config", slow)
    insts, _, _ = official
    inst = insts["agentrm__textkit-1"]
    idle = _script(tmp_path / "idle.jsonl", [{"tool": "submit", "args": {}}])
    harness = Harness(cfg(tmp_path, db=f"sqlite:///{tmp_path}/store.db", agent=True, policy=idle,
                          namespace="local", pull="never", instance_ids=[inst.instance_id],
                          warm_pool=1, run_id="agent-busy"))
    (result,) = harness.run().results
    pool = harness.sandbox_factory
    assert result.status == "empty_patch"
    assert pool.hits + pool.waits == 1 and pool.misses == 0
