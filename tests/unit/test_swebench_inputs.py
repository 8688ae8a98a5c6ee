"""SWE-bench inputs: instance files in every format, predictions, spec tables, bundled repos."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from agentrm.errors import InputError
from agentrm.evals.swebench.dataset import load_instances, load_predictions, select
from agentrm.evals.swebench.repos import RepoSource, bundled_mirror, deterministic_repo, git
from agentrm.evals.swebench.specs import load_specs

ROW = {"instance_id": "o__r-1", "repo": "o/r", "base_commit": "abc", "patch": "p", "test_patch": "t",
       "problem_statement": "s", "version": "1.0", "FAIL_TO_PASS": '["a::x"]', "PASS_TO_PASS": ["a::y"]}


def test_bundled_dataset_is_well_formed():
    instances = load_instances("bundled")
    assert 6 <= len(instances) <= 10
    for inst in instances:
        assert inst.fail_to_pass and inst.pass_to_pass and inst.patch and inst.test_patch
        assert not set(inst.fail_to_pass) & set(inst.pass_to_pass)


def test_bundled_repositories_have_the_datasets_commit_hashes(tmp_path):
    # The dataset's base_commit must be reproducible on any machine (fixed identity, dates, modes).
    for inst in load_instances("bundled"):
        name = inst.repo.split("/")[1]
        assert git("rev-parse", "HEAD", cwd=bundled_mirror(name)).strip() == inst.base_commit
    from agentrm.evals.swebench.repos import BUNDLED_REPOS

    assert deterministic_repo(BUNDLED_REPOS / "textkit", tmp_path / "a") == \
        deterministic_repo(BUNDLED_REPOS / "textkit", tmp_path / "b")


def test_bundle_holds_base_commit_only(tmp_path):
    inst = load_instances("bundled")[0]
    data = RepoSource("bundled").bundle(inst.repo, inst.base_commit)
    (tmp_path / "b.bundle").write_bytes(data)
    heads = git("bundle", "list-heads", str(tmp_path / "b.bundle"))
    assert inst.base_commit in heads


@pytest.mark.parametrize("fmt", ["json", "jsonl", "parquet", "saved"])
def test_instance_formats(tmp_path, fmt):
    rows = [ROW, {**ROW, "instance_id": "o__r-2", "FAIL_TO_PASS": ["a::z"]}]
    if fmt == "json":
        path = tmp_path / "d.json"
        path.write_text(json.dumps(rows))
    elif fmt == "jsonl":
        path = tmp_path / "d.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    else:
        import datasets

        norm = [{**r, "PASS_TO_PASS": json.dumps(r["PASS_TO_PASS"]),
                 "FAIL_TO_PASS": r["FAIL_TO_PASS"] if isinstance(r["FAIL_TO_PASS"], str)
                 else json.dumps(r["FAIL_TO_PASS"])} for r in rows]
        ds = datasets.Dataset.from_list(norm)
        if fmt == "parquet":
            path = tmp_path / "d.parquet"
            ds.to_parquet(str(path))
        else:
            path = tmp_path / "saved"
            datasets.DatasetDict({"test": ds}).save_to_disk(str(path))
    got = load_instances(path)
    assert [i.instance_id for i in got] == ["o__r-1", "o__r-2"]
    assert got[0].fail_to_pass == ["a::x"] and got[0].pass_to_pass == ["a::y"]
    assert got[1].fail_to_pass == ["a::z"] and got[0].row["problem_statement"] == "s"


@pytest.mark.parametrize("content,match", [
    ('{"instance_id": "x"\n', "invalid JSON"),
    (json.dumps({**ROW, "repo": None}) + "\n", "lacks repo"),
    (json.dumps({**ROW, "FAIL_TO_PASS": "[not json"}) + "\n", "FAIL_TO_PASS is not a JSON list"),
    (json.dumps(ROW) + "\n" + json.dumps(ROW) + "\n", "duplicate instance_id"),
    (json.dumps({k: v for k, v in ROW.items() if k != "base_commit"}) + "\n", "lacks base_commit"),
])
def test_malformed_instances_name_file_and_line(tmp_path, content, match):
    path = tmp_path / "bad.jsonl"
    path.write_text(content)
    with pytest.raises(InputError, match=match) as err:
        load_instances(path)
    assert str(path) in str(err.value)


def test_v5_rows_may_omit_base_commit_when_they_name_an_image(tmp_path):
    row = {k: v for k, v in ROW.items() if k != "base_commit"}
    path = tmp_path / "v5.json"
    path.write_text(json.dumps([{**row, "image": "img:1", "eval_script": "pytest", "log_parser": "pytest"}]))
    inst = load_instances(path)[0]
    assert inst.image == "img:1" and inst.eval_script == "pytest" and inst.log_parser == "pytest"


def test_unknown_instance_ids_are_rejected():
    instances = load_instances("bundled")
    with pytest.raises(InputError, match="unknown instance id.*nope"):
        select(instances, ["agentrm__textkit-1", "nope"])
    assert [i.instance_id for i in select(instances, ["agentrm__textkit-2"])] == ["agentrm__textkit-2"]


def test_predictions_forms(tmp_path):
    instances = load_instances("bundled")
    iid = instances[0].instance_id
    jsonl = tmp_path / "p.jsonl"
    jsonl.write_text(json.dumps({"instance_id": iid, "model_name_or_path": "m/x", "model_patch": "d"}) + "\n")
    assert load_predictions(str(jsonl), instances)[iid].model_patch == "d"
    as_dict = tmp_path / "preds.json"
    as_dict.write_text(json.dumps({iid: {"model_name_or_path": "m", "model_patch": None}}))
    assert load_predictions(str(as_dict), instances)[iid].model_patch is None
    gold = load_predictions("gold", instances)
    assert gold[iid].model_patch == instances[0].patch
    assert all(p.model_patch == "" for p in load_predictions("empty", instances).values())


@pytest.mark.parametrize("rows,match", [
    ([{"instance_id": "agentrm__textkit-1", "model_patch": "a"}] * 2, "duplicate prediction"),
    ([{"instance_id": "ghost", "model_patch": "a"}], "unknown instance ghost"),
    ([{"model_patch": "a"}], "lacks a string instance_id"),
    ([{"instance_id": "agentrm__textkit-1", "model_patch": 3}], "must be a string or null"),
])
def test_bad_predictions(tmp_path, rows, match):
    path = tmp_path / "p.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(InputError, match=match):
        load_predictions(str(path), load_instances("bundled"))


def test_spec_table_merges_user_yaml(tmp_path):
    extra = tmp_path / "specs.yaml"
    extra.write_text("repos:\n  agentrm/textkit:\n    '1.0': {timeout: 60}\n  me/new:\n    '*': {test_cmd: 'pytest -x'}\n")
    table = load_specs(extra)
    assert table.lookup("agentrm/textkit", "1.0").timeout == 60
    assert table.lookup("agentrm/textkit", "1.0").pip_packages  # defaults still apply
    assert table.lookup("me/new", "9.9").test_cmd == "pytest -x"
    with pytest.raises(KeyError, match="no environment spec for repository x/y"):
        table.lookup("x/y", "1")
    bad = tmp_path / "bad.yaml"
    bad.write_text("repos:\n  a/b:\n    '1': {tset_cmd: x}\n")
    with pytest.raises(InputError, match="unknown field"):
        load_specs(bad)


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "agentrm.cli.main", "eval", "swe-bench", *args],
                          capture_output=True, text=True, timeout=120)


def test_cli_bad_input_is_one_line_and_exit_2(tmp_path):
    proc = _cli("--instance-ids", "agentrm__textkit-1,ghost", "--db", f"sqlite:///{tmp_path}/a.db",
                "--run-dir", str(tmp_path / "runs"))
    assert proc.returncode == 2, proc.stderr
    assert "unknown instance id" in proc.stderr and "ghost" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) <= 2 and "Traceback" not in proc.stderr
    assert not (tmp_path / "runs").exists()  # nothing half-written
    proc = _cli("--predictions", str(tmp_path / "missing.jsonl"))
    assert proc.returncode == 2 and "predictions file not found" in proc.stderr


def test_mirror_directory_and_git_url_sources(tmp_path):
    import shutil

    inst = load_instances("bundled")[0]
    mirrors = tmp_path / "mirrors"
    shutil.copytree(bundled_mirror("textkit"), mirrors / "agentrm__textkit")
    source = RepoSource(str(mirrors))
    assert source.local_repo("agentrm/textkit") == mirrors / "agentrm__textkit"
    bundle = tmp_path / "r.bundle"
    bundle.write_bytes(source._make_bundle(inst.repo, inst.base_commit))
    clone = tmp_path / "clone"
    git("clone", "-q", str(bundle), str(clone))
    assert git("rev-parse", "origin/base", cwd=clone).strip() == inst.base_commit
    assert git("rev-list", "--all", cwd=clone).split() == [inst.base_commit]  # no later history
    with pytest.raises(FileNotFoundError, match="not found in mirror directory"):
        source.local_repo("agentrm/ghost")
    with pytest.raises(FileNotFoundError, match="not in repository"):
        source._make_bundle(inst.repo, "0" * 40)
    # a URL template clones once (a file:// URL stands in for a git host on this offline machine)
    url_source = RepoSource(f"file://{mirrors}/{{owner}}__{{name}}")
    assert git("rev-parse", "HEAD", cwd=url_source.local_repo("agentrm/textkit")).strip() == inst.base_commit


def test_cli_conflicting_flags(tmp_path):
    proc = _cli("--agent", "--predictions", "gold", "--db", f"sqlite:///{tmp_path}/a.db")
    assert proc.returncode == 2 and "exclude each other" in proc.stderr
    proc = _cli("--policy", "scripted:x.jsonl", "--db", f"sqlite:///{tmp_path}/a.db")
    assert proc.returncode == 2 and "--policy needs --agent" in proc.stderr
