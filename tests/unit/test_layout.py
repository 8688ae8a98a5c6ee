"""The dependency direction of STYLE.md, checked on the source: core imports nothing of ours,
docker only in sandboxes/, sqlalchemy only in traces/, no torch at CLI start-up."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CORE_FILES = ["agentrm/types.py", "agentrm/protocols.py", "agentrm/errors.py"]


def imported_modules(path: Path, top_level_only: bool = False) -> set[str]:
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


def test_core_types_and_protocols_import_nothing_but_each_other():
    allowed = {"agentrm.types", "agentrm.errors"}
    for name in CORE_FILES:
        ours = {m for m in imported_modules(REPO / name) if m.startswith("agentrm")}
        assert ours <= allowed, f"{name} imports {ours - allowed}"


def test_docker_is_imported_only_in_sandboxes():
    for path in python_files("agentrm", "verifiers", "traces", "cli"):
        mods = imported_modules(path)
        assert not any(m == "docker" or m.startswith("docker.") for m in mods), path


def test_sqlalchemy_is_imported_only_in_traces():
    for path in python_files("agentrm", "verifiers", "sandboxes", "cli"):
        mods = imported_modules(path)
        assert not any(m.split(".")[0] in {"sqlalchemy", "alembic"} for m in mods), path


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
