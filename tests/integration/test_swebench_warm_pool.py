"""The warm pool with real Docker sandboxes: sandboxes started ahead are handed out fresh (one
rollout's edits are not in the next one's), the rollout driver takes the pool as its sandbox
factory, agent mode with --warm-pool resolves a scripted fix, and nothing is left running."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agentrm.evals.swebench.dataset import load_instances
from agentrm.evals.swebench.harness import EvalConfig, Harness
from agentrm.evals.swebench.images import instance_image
from agentrm.evals.swebench.repos import RepoSource
from agentrm.evals.swebench.specs import load_specs
from agentrm.evals.swebench.warm_pool import WarmPool, agent_sandbox_config

pytestmark = [pytest.mark.docker, pytest.mark.slow]
IID = "agentrm__textkit-1"
FIX = [
    {"tool": "edit_file", "args": {"path": "textkit/slug.py",
                                   "old_str": 'return re.sub(r"[^a-z0-9]", sep, text.lower())',
                                   "new_str": 'return re.sub(r"[^a-z0-9]+", sep, text.lower()).strip(sep)'}},
    {"tool": "submit", "args": {}},
]


@pytest.fixture(scope="module")
def image(docker_client):
    inst = next(i for i in load_instances("bundled") if i.instance_id == IID)
    return instance_image(inst, load_specs().lookup(inst.repo, inst.version), RepoSource("bundled"))


def test_pooled_sandboxes_are_fresh_and_cleaned_up(docker_client, image):
    cfg = EvalConfig(agent=True, agent_timeout=300)
    config = agent_sandbox_config(image, cfg, "warm-test")
    with WarmPool(size=2) as pool:
        for _ in range(3):
            pool.expect(config)
        first = pool(config)
        try:
            assert first.exec("git rev-parse --is-inside-work-tree && touch mark", timeout=60).ok
        finally:
            first.close()
        second = pool(config)
        try:
            assert second.exec("test ! -e mark && git status --porcelain", timeout=60).stdout == ""
        finally:
            second.close()
        assert pool.hits + pool.waits == 2 and pool.misses == 0
    left = docker_client.api.containers(all=True, filters={"label": "agentrm.run_id=warm-test"})
    assert left == []


def test_agent_mode_through_the_pool(docker_client, tmp_path: Path):
    script = tmp_path / "fix.jsonl"
    script.write_text("".join(json.dumps(a) + "\n" for a in FIX))
    harness = Harness(EvalConfig(run_dir=str(tmp_path / "runs"), db=f"sqlite:///{tmp_path}/s.db",
                                 max_workers=1, agent=True, policy=f"scripted:{script}",
                                 run_id="warm", warm_pool=2, group_size=2, cache_level="instance",
                                 instance_ids=[IID, "agentrm__textkit-2"]))
    run = harness.run()
    by = {r.instance_id: r for r in run.results}
    assert by[IID].status == "resolved" and by["agentrm__textkit-2"].status == "unresolved"
    assert run.summary["unstopped_instances"] == 0
    pool = harness.sandbox_factory  # 2 instances x 2 members, all asked of the pool
    assert pool.hits + pool.waits + pool.misses == 4 and pool.hits + pool.waits >= 2
