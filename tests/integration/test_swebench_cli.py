"""`agentrm eval swe-bench` with the SWE-bench harness's own command line: its underscore
spellings and value forms work unchanged, bad input is one line and exit 2 (never a
traceback), and agent mode's run.json does not claim gold predictions."""

from __future__ import annotations

import json

import pytest

IID, IID2 = "agentrm__textkit-1", "agentrm__textkit-2"


def one_line_error(proc, code: int = 2) -> str:
    assert proc.returncode == code, (proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    return proc.stderr


@pytest.mark.docker
@pytest.mark.slow
def test_the_harness_command_line_runs_unchanged(cli, docker_client, tmp_path):
    reports = tmp_path / "reports"
    proc = cli("eval", "swe-bench", "--dataset_name", "bundled", "--split", "test",
               "--predictions_path", "gold", "--max_workers", "2", "--run_id", "h1",
               "--instance_ids", IID, IID2, "--report_dir", str(reports), "--timeout", "600",
               "--cache_level", "instance", "--clean", "False", "--force_rebuild", "false",
               "--namespace", "none", "--run-dir", str(tmp_path / "runs"), "--json")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    summary = json.loads((reports / "gold.h1.json").read_text())
    assert out["summary"] == summary and summary["resolved_ids"] == [IID, IID2]
    for key in ("unstopped_instances", "unstopped_containers", "unremoved_images"):
        assert key in summary
    run = json.loads((tmp_path / "runs" / "h1" / "run.json").read_text())
    assert run["config"]["clean"] is False and run["config"]["cache_level"] == "instance"


@pytest.mark.parametrize("args, message", [
    (["--pull", "sometimes"], "unknown pull policy 'sometimes'"),
    (["--cache_level", "disk"], "unknown cache level 'disk'"),
    (["--max_workers", "zero"], "Invalid value for '--max-workers'"),
    (["--clean", "True", "stray"], "unexpected argument 'stray'"),
    (["--dataset_name", "./nope.jsonl"], "dataset not found"),
    (["--group-size", "2"], "--group-size and --warm-pool need --agent"),
    (["--predictions_path", "nowhere.jsonl"], "predictions file not found"),
])
def test_bad_input_is_one_line(cli, tmp_path, args, message):
    proc = cli("eval", "swe-bench", "--run-dir", str(tmp_path / "runs"),
               "--db", f"sqlite:///{tmp_path}/a.db", *args)
    assert message in one_line_error(proc)
    assert not (tmp_path / "runs").exists()


def test_short_harness_flags(cli, tmp_path):
    proc = cli("eval", "swe-bench", "-d", "bundled", "-s", "test", "-p", str(tmp_path / "x.jsonl"),
               "-i", IID, IID2, "-t", "60", "--run-dir", str(tmp_path / "runs"))
    assert "predictions file not found" in one_line_error(proc)  # parsed up to the predictions


def test_hub_dataset_with_neither_network_nor_cache(cli, tmp_path, monkeypatch):
    import datasets.config as dconf
    import huggingface_hub.constants as hconst

    monkeypatch.setattr(dconf, "HF_DATASETS_CACHE", tmp_path / "empty-cache")
    monkeypatch.setattr(dconf, "HF_HUB_OFFLINE", True)  # no waiting on retries in a test
    monkeypatch.setattr(hconst, "HF_HUB_OFFLINE", True)
    proc = cli("eval", "swe-bench", "--dataset", "princeton-nlp/SWE-bench_Verified",
               "--run-dir", str(tmp_path / "runs"))
    err = one_line_error(proc)
    assert "princeton-nlp/SWE-bench_Verified is neither reachable on the hub nor in the" in err


def test_multi_model_predictions_are_accepted(tmp_path):
    from agentrm.evals.swebench.dataset import load_instances, load_predictions_by_model

    insts = load_instances("bundled")
    path = tmp_path / "preds.jsonl"
    path.write_text("".join(json.dumps({"instance_id": i.instance_id, "model_name_or_path": m,
                                        "model_patch": i.patch}) + "\n"
                            for m in ("a", "b") for i in insts[:2]))
    by_model = load_predictions_by_model(str(path), insts)
    assert list(by_model) == ["a", "b"] and all(len(v) == 2 for v in by_model.values())


@pytest.mark.docker
@pytest.mark.slow
def test_agent_run_json_names_no_predictions(cli, docker_client, tmp_path):
    script = tmp_path / "submit.jsonl"
    script.write_text(json.dumps({"tool": "submit", "args": {}}) + "\n")
    proc = cli("eval", "swe-bench", "--agent", "--policy", f"scripted:{script}",
               "--instance-ids", IID, "--run-id", "ag", "--run-dir", str(tmp_path / "runs"),
               "--db", f"sqlite:///{tmp_path}/a.db", "--cache-level", "instance", "--json")
    assert proc.returncode == 0, proc.stderr
    run = json.loads((tmp_path / "runs" / "ag" / "run.json").read_text())
    assert run["config"]["predictions"] is None and run["config"]["agent"] is True
    assert json.loads(proc.stdout)["summary"]["empty_patch_ids"] == [IID]  # no edit: no patch


@pytest.mark.docker
@pytest.mark.slow
def test_tables_show_user_data_literally(cli, docker_client, tmp_path):
    from agentrm.evals.swebench.dataset import load_instances

    inst = next(i for i in load_instances("bundled") if i.instance_id == IID)
    preds = tmp_path / "p.jsonl"
    preds.write_text("".join(json.dumps({"instance_id": IID, "model_name_or_path": m,
                                         "model_patch": inst.patch}) + "\n"
                             for m in ("[red]m[/]", "plain")))
    proc = cli("eval", "swe-bench", "--predictions", str(preds), "--instance-ids", IID,
               "--run-dir", str(tmp_path / "runs"), "--cache-level", "instance")
    assert proc.returncode == 0, proc.stderr
    assert "[red]m[/]" in proc.stdout and proc.stdout.count("resolved 1/1") == 2
