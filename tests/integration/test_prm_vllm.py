"""The vLLM backend gives the transformers backend's scores (within 1e-4), for all four styles,
through `agentrm score --backend vllm` writing to a store.

vLLM runs in ONE subprocess for the whole module (engine start-up dominates: ~30-60 s for the
first engine, ~12 s for each further one in the same process), with the engine core in-process
(VLLM_ENABLE_V1_MULTIPROCESSING=0) so the imports are paid once.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from agentrm.types import ScoreLevel
from agentrm.verifiers.prm import KIND, STYLES, make_scorer
from agentrm.verifiers.prm_tiny import build_tiny_prm, sample_trajectory

pytestmark = [pytest.mark.vllm, pytest.mark.model, pytest.mark.slow]
TRAJS = [sample_trajectory("a", 4, seed=1), sample_trajectory("b", 6, seed=2, words=20),
         sample_trajectory("c", 1, seed=3)]

SCRIPT = textwrap.dedent('''
    import sys
    from agentrm.cli.main import main

    if __name__ == "__main__":
        file, db = sys.argv[1], sys.argv[2]
        for spec in sys.argv[3:]:
            style, model = spec.split("=", 1)
            sys.argv = ["agentrm", "score", file, "--db", db, "--model", model, "--style", style,
                        "--backend", "vllm", "--json"]
            main()
''')


@pytest.fixture(scope="module")
def vllm_run(vllm_module, tmp_path_factory):
    from agentrm.traces import open_store
    from agentrm.traces.io import write_jsonl

    root = tmp_path_factory.mktemp("prm-vllm")
    models = {s: build_tiny_prm(root / s, s, seed=i) for i, s in enumerate(STYLES)}
    write_jsonl(TRAJS, root / "trajs.jsonl")
    (root / "run.py").write_text(SCRIPT)
    db = f"sqlite:///{root / 'store.db'}"
    # the CPU KV cache sized explicitly (GiB), not from whatever memory is free at start-up
    env = dict(os.environ, VLLM_ENABLE_V1_MULTIPROCESSING="0",
               VLLM_CPU_KVCACHE_SPACE=os.environ.get("VLLM_CPU_KVCACHE_SPACE", "1"))
    env.pop("VLLM_LOGGING_STREAM", None)  # vLLM's own default (stdout) unless agentrm changes it
    proc = subprocess.run([sys.executable, str(root / "run.py"), str(root / "trajs.jsonl"), db,
                           *(f"{s}={m}" for s, m in models.items())],
                          capture_output=True, text=True, timeout=900, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    decoder, out, documents = json.JSONDecoder(), proc.stdout.strip(), 0
    while out:  # stdout is the three --json documents and nothing else (vLLM logs go to stderr)
        _, end = decoder.raw_decode(out)
        out, documents = out[end:].strip(), documents + 1
    assert documents == len(models) and "INFO" in proc.stderr
    return models, open_store(db).get_scores(scorer="prm")


@pytest.mark.parametrize("style", STYLES)
def test_vllm_scores_equal_transformers(vllm_run, style):
    models, stored = vllm_run
    want = make_scorer(model=str(models[style]), style=style).score(TRAJS)
    got = {(s.trajectory_id, s.level, s.turn_index): s for s in stored
           if s.details.get("kind") == KIND[style]}
    assert len(got) == len(want) == sum(len(t.turns) + 1 for t in TRAJS)
    for row in want:
        other = got[(row.trajectory_id, row.level, row.turn_index)]
        assert other.details["backend"] == "vllm"
        assert other.config_hash == row.config_hash  # same scorer config on either backend
        assert other.value == pytest.approx(row.value, abs=1e-4), (style, row.trajectory_id, row.turn_index)
    values = [r.value for r in want if r.level == ScoreLevel.TURN]
    assert max(values) - min(values) > 1e-2  # the comparison is not between constants
