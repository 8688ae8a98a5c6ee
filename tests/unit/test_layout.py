"""The dependency direction of STYLE.md, checked on the source.

Task → rollout → trace → scores → rewards → advantages → batch. The core (types, protocols,
errors) imports nothing of ours; a stage uses the core and the contracts of other stages, never
their implementations; only agentrm/pipeline.py and cli/ wire stages together. Also: docker only
in sandboxes/, sqlalchemy only in traces/, no torch at CLI start-up.
"""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CORE_FILES = ["agentrm/types.py", "agentrm/protocols.py", "agentrm/errors.py"]
# The folders of the package-dir mapping, by import name (setup.py).
FOLDERS = {"agentrm.traces": "traces", "agentrm.sandboxes": "sandboxes",
           "agentrm.verifiers": "verifiers", "agentrm.cli": "cli"}


def imported_modules(path: Path, top_level_only: bool = False) -> set[str]:
    """Absolute module names imported anywhere in `path` (lazy imports in functions too)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    nodes = tree.body if top_level_only else ast.walk(tree)
    names: set[str] = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def python_files(*folders: str):
    for folder in folders:
        yield from (REPO / folder).rglob("*.py")


def _under(module: str, prefixes: set[str]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in prefixes)


def violations(folders: tuple[str, ...], forbidden: set[str], allowed: frozenset[str] = frozenset()):
    """(file, module) for each import in `folders` of a module under `forbidden`, except `allowed`."""
    found = []
    for path in python_files(*folders):
        for mod in sorted(imported_modules(path)):
            if _under(mod, forbidden) and mod not in allowed:
                found.append((str(path.relative_to(REPO)), mod))
    return found


def test_core_types_and_protocols_import_nothing_but_each_other():
    allowed = {"agentrm.types", "agentrm.errors"}
    for name in CORE_FILES:
        ours = {m for m in imported_modules(REPO / name) if m.startswith("agentrm")}
        assert ours <= allowed, f"{name} imports {ours - allowed}"


def imported_names(path: Path) -> list[tuple[str, str]]:
    """(module, name) for every `from module import name` and `import module` ("*" as name)."""
    pairs: list[tuple[str, str]] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            pairs += [(alias.name, "*") for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            pairs += [(node.module, alias.name) for alias in node.names]
    return pairs


# What a scorer may name from the stages it must not depend on: their contracts. The store and
# sandboxes come in its ScoringContext; a sandbox is asked for by config; a scorer that rolls
# out (judge, progress provers) goes through the one driver and the policy registry.
VERIFIER_CONTRACTS = {
    "agentrm.sandboxes": {"SandboxConfig", "parse_size"},
    "agentrm.rollout": {"run", "run_groups", "RunOptions", "RunSummary", "Limits", "Group",
                        "Start", "make_policy"},
    "agentrm.traces": set(),
}


# The one crossing left, named so that no other can join it unseen: when no sandbox factory is
# given, the tests verifier grades in a fresh container's main process (sandboxes.run_once,
# ~5x cheaper than a sandbox); it belongs behind the ScoringContext's factory.
KNOWN_CROSSINGS = {"verifiers/tests_verifier.py: agentrm.sandboxes.run_once"}


def test_verifiers_never_import_traces_rollout_or_sandbox_implementations():
    found = []
    for path in python_files("verifiers"):
        for module, name in imported_names(path):
            for stage, contract in VERIFIER_CONTRACTS.items():
                if _under(module, {stage}) and name not in contract:
                    found.append(f"{path.relative_to(REPO)}: {module}.{name}")
    assert set(found) <= KNOWN_CROSSINGS, sorted(set(found) - KNOWN_CROSSINGS)


def test_traces_never_import_rollout_sandboxes_or_later_stages():
    # the store is written by the rollout and read by everything after it, never the reverse
    forbidden = {"agentrm.rollout", "agentrm.sandboxes", "agentrm.replay", "agentrm.verifiers",
                 "agentrm.scoring", "agentrm.rewards", "agentrm.advantages", "agentrm.training",
                 "agentrm.evals"}
    assert violations(("traces",), forbidden) == []


def test_sandboxes_build_on_the_core_only():
    ours = {"agentrm"}
    core = frozenset({"agentrm.types", "agentrm.errors", "agentrm.protocols", "agentrm.files"})
    found = [(f, m) for f, m in violations(("sandboxes",), ours, core)
             if not m.startswith("agentrm.sandboxes")]
    assert found == []


def test_reward_and_advantage_math_never_touch_runtime_or_storage():
    forbidden = {"agentrm.traces", "agentrm.rollout", "agentrm.sandboxes", "agentrm.verifiers",
                 "agentrm.training", "agentrm.evals"}
    assert violations(("agentrm/rewards", "agentrm/advantages"), forbidden) == []


def test_only_the_cli_reaches_the_pipeline_and_nothing_reaches_the_cli():
    # pipeline.py and cli/ are the only places that cross stages: no stage calls back up
    found = [(f, m) for f, m in violations(("agentrm", "sandboxes", "verifiers", "traces"),
                                           {"agentrm.pipeline", "agentrm.cli"})]
    assert found == []


def test_docker_is_imported_only_in_sandboxes():
    for path in python_files("agentrm", "verifiers", "traces", "cli"):
        mods = imported_modules(path)
        assert not any(m == "docker" or m.startswith("docker.") for m in mods), path


def test_sqlalchemy_is_imported_only_in_traces():
    for path in python_files("agentrm", "verifiers", "sandboxes", "cli"):
        mods = imported_modules(path)
        assert not any(m.split(".")[0] in {"sqlalchemy", "alembic"} for m in mods), path


def test_mapped_folders_exist():
    # the rules above walk these folders: a rename must not silently empty them
    for folder in ["agentrm", *FOLDERS.values()]:
        assert any((REPO / folder).rglob("*.py")), folder


def test_cli_and_advantages_load_without_torch():
    # `agentrm --help`, the store and the advantage math must not pay for importing torch.
    import subprocess
    import sys

    code = (
        "import sys, importlib\n"
        "for m in ['agentrm.cli.main', 'agentrm.traces', 'agentrm.advantages']:\n"
        "    try: importlib.import_module(m)\n"
        "    except ModuleNotFoundError as e:\n"
        "        if e.name != m: raise\n"
        "heavy = sorted(m for m in ('torch', 'transformers', 'vllm') if m in sys.modules)\n"
        "print(','.join(heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"imported at CLI start-up: {out.stdout.strip()}"
