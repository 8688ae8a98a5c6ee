"""SWE-bench agent mode through the one rollout driver: `--group-size 2` rolls the policy out
twice on an instance as one group (shared group id, ids RUN/INSTANCE/K), and every member's
patch is graded and stored, so GRPO/GiGPO have a group to compare."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agentrm.evals.swebench.harness import EvalConfig, evaluate
from agentrm.evals.swebench.report import model_dir_name

pytestmark = [pytest.mark.docker, pytest.mark.slow]
FIX = [
    {"tool": "bash", "args": {"command": "git status --short && cat textkit/slug.py"}},
    {"tool": "edit_file", "args": {"path": "textkit/slug.py",
                                   "old_str": 'return re.sub(r"[^a-z0-9]", sep, text.lower())',
                                   "new_str": 'return re.sub(r"[^a-z0-9]+", sep, text.lower()).strip(sep)'}},
    {"tool": "submit", "args": {}},
]


def test_agent_mode_group_of_two(docker_client, tmp_path: Path):
    from agentrm.traces import open_store

    script = tmp_path / "fix.jsonl"
    script.write_text("".join(json.dumps(a) + "\n" for a in FIX))
    db = f"sqlite:///{tmp_path}/store.db"
    run = evaluate(EvalConfig(run_dir=str(tmp_path / "runs"), db=db, max_workers=1, agent=True,
                              policy=f"scripted:{script}", run_id="grp", group_size=2,
                              instance_ids=["agentrm__textkit-1"]))
    (result,) = run.results  # the instance's report is the first member's
    assert result.status == "resolved" and result.trajectory_id == "grp/agentrm__textkit-1/0"
    store = open_store(db)
    trajs = sorted(store.iter_trajectories(run_id="grp"), key=lambda t: t.id)
    assert [t.id for t in trajs] == ["grp/agentrm__textkit-1/0", "grp/agentrm__textkit-1/1"]
    assert {t.group_id for t in trajs} == {"grp/agentrm__textkit-1"}
    for t in trajs:  # both rolled out (3 turns each) and graded from their own patch
        assert len(t.turns) == 3 and t.reward == 1.0
        assert "textkit/slug.py" in t.metadata["model_patch"]
    scores = store.get_scores(trajectory_ids=[t.id for t in trajs])
    assert sorted((s.trajectory_id, s.scorer, s.value) for s in scores) == [
        (t.id, "tests", 1.0) for t in trajs]
    member = tmp_path / "runs" / "grp" / model_dir_name(run.model) / "agentrm__textkit-1" / "group" / "1"
    assert json.loads((member / "report.json").read_text())["agentrm__textkit-1"]["resolved"]
    assert store.get_run("grp")["status"] == "finished"  # the harness's run, ended once by it


def test_bytecode_an_agent_leaves_behind_stays_out_of_its_patch(docker_client, tmp_path: Path):
    """An agent that checks its fix with pytest or compileall leaves __pycache__/*.pyc in the
    repository; `git add -A` put them into the patch, which then failed to apply at grading."""
    script = tmp_path / "fix.jsonl"
    actions = FIX[:2] + [{"tool": "bash", "args": {"command": "python -m compileall -q . ; python -m pytest -q -p no:cacheprovider >/dev/null 2>&1; find . -name '*.pyc' | head -3"}},
                         FIX[2]]
    script.write_text("".join(json.dumps(a) + "\n" for a in actions))
    run = evaluate(EvalConfig(run_dir=str(tmp_path / "runs"), db=f"sqlite:///{tmp_path}/store.db",
                              max_workers=1, agent=True, policy=f"scripted:{script}", run_id="pyc",
                              instance_ids=["agentrm__textkit-1"]))
    (result,) = run.results
    from agentrm.traces import open_store

    traj = open_store(f"sqlite:///{tmp_path}/store.db").get_trajectory(result.trajectory_id)
    assert ".pyc" in traj.turns[2].tool_results[0].content  # the bytecode was there
    patch = traj.metadata["model_patch"]
    assert "textkit/slug.py" in patch and ".pyc" not in patch and "__pycache__" not in patch
    assert result.status == "resolved"
