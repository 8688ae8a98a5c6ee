"""Shared test set-up: component markers and the fixtures that bring the components up.

A test that needs Docker, PostgreSQL, a model or vLLM carries the matching marker and uses the
fixture below. When the component is missing the test is skipped on a developer's laptop but
FAILS when CI=true: CI must never pass by silently testing less.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
PG_URL_DEFAULT = "postgresql+psycopg://agentrm:agentrm@127.0.0.1:5432/agentrm_test"


def missing(component: str, why: str) -> None:
    """Skip locally, fail in CI."""
    message = f"{component} unavailable: {why}"
    if IN_CI:
        pytest.fail(f"{message} (CI=true: components are required)", pytrace=False)
    pytest.skip(message)


def run_agentrm(capsys, monkeypatch, *args: str) -> subprocess.CompletedProcess:
    """`agentrm ARGS` in this process (a subprocess costs seconds of imports on a busy box):
    exit code, stdout and stderr as a CompletedProcess. The user's AGENTRM_DB is not seen."""
    from agentrm.cli.main import main

    monkeypatch.delenv("AGENTRM_DB", raising=False)
    monkeypatch.setattr(sys, "argv", ["agentrm", *args])
    code = 0
    try:
        main()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    out = capsys.readouterr()
    return subprocess.CompletedProcess(list(args), code, out.out, out.err)


@pytest.fixture
def cli(capsys, monkeypatch):
    """run_agentrm bound to this test: cli("traces", "list") -> CompletedProcess."""
    return lambda *args: run_agentrm(capsys, monkeypatch, *args)


def _start_service(name: str) -> str | None:
    script = REPO / ".ci" / "start-services"
    try:
        proc = subprocess.run(["bash", str(script), name], capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return str(exc)
    return None if proc.returncode == 0 else (proc.stderr.strip() or proc.stdout.strip())


@pytest.fixture(scope="session")
def docker_client():
    """A client of a running Docker engine (started by the set-up if installed but stopped)."""
    try:
        import docker
    except ImportError as exc:
        missing("docker", f"python package: {exc}")
    def ping():
        try:
            client = docker.from_env()
            client.ping()
            return client
        except Exception as exc:  # noqa: BLE001 - any failure means no engine
            return exc
    client = ping()
    if isinstance(client, Exception) and shutil.which("dockerd"):
        _start_service("docker")
        client = ping()
    if isinstance(client, Exception):
        missing("docker", str(client).splitlines()[0][:200])
    return client


@pytest.fixture(scope="session")
def postgres_url():
    """URL of a reachable PostgreSQL test database (AGENTRM_TEST_PG overrides the default)."""
    url = os.environ.get("AGENTRM_TEST_PG", PG_URL_DEFAULT)
    try:
        import sqlalchemy as sa
    except ImportError as exc:
        missing("postgres", str(exc))

    def reachable():
        try:
            engine = sa.create_engine(url)
            with engine.connect() as conn:
                conn.execute(sa.text("select 1"))
            engine.dispose()
            return None
        except Exception as exc:  # noqa: BLE001
            return str(exc).splitlines()[0][:200]

    error = reachable()
    if error and "AGENTRM_TEST_PG" not in os.environ and shutil.which("pg_ctlcluster"):
        _start_service("postgres")
        error = reachable()
    if error:
        missing("postgres", error)
    return url


@contextlib.contextmanager
def fresh_pg_database(base_url: str):
    """A uniquely named database on the test server (yields its URL; dropped afterwards), so
    tests never see each other's rows, even when several suites share one server."""
    import sqlalchemy as sa

    name = f"agentrm_t_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(base_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        yield base_url.rsplit("/", 1)[0] + "/" + name
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture
def fresh_postgres_url(postgres_url):
    with fresh_pg_database(postgres_url) as url:
        yield url


@pytest.fixture(scope="session")
def vllm_module():
    try:
        import vllm  # noqa: F401
    except Exception as exc:  # noqa: BLE001 - vllm import can fail in many ways
        missing("vllm", f"import vllm failed: {exc}")
    return vllm


@pytest.fixture(scope="session")
def ray_cluster():
    """A real local Ray cluster (`ray start --head` on 127.0.0.1, 2 worker slots); its address.

    RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 keeps every Ray process on loopback (Ray otherwise
    advertises the machine's network address); a multi-host cluster does not set it.
    """
    import socket

    if shutil.which("ray") is None:
        missing("ray", "the `ray` command is not installed (pip install 'agentrm[ray]')")
    # Loopback-only test cluster: no auth token (a token left in ~/.ray by another cluster would
    # otherwise lock this one out).
    env_vars = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_USAGE_STATS_ENABLED": "0",
                "RAY_AUTH_MODE": "disabled"}
    os.environ.update(env_vars)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    cmd = ["ray", "start", "--head", "--node-ip-address=127.0.0.1", f"--port={port}",
           "--num-cpus=2", "--include-dashboard=false", "--disable-usage-stats",
           f"--temp-dir=/tmp/agentrm-ray-{os.getpid()}"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=180, env=os.environ)
    if proc.returncode != 0:
        missing("ray", (proc.stderr or proc.stdout).strip().splitlines()[-1][:200])
    address = f"127.0.0.1:{port}"
    os.environ["RAY_ADDRESS"] = address
    yield address
    try:
        import ray

        ray.shutdown()
    finally:
        os.environ.pop("RAY_ADDRESS", None)
        subprocess.run(["ray", "stop", "--force"], capture_output=True, timeout=120)


@pytest.fixture(scope="module")
def browser():
    """Headless Chromium from Debian's package (/usr/bin/chromium, or AGENTRM_CHROMIUM) driven by
    Playwright; Playwright's own browser downloads are never used."""
    path = os.environ.get("AGENTRM_CHROMIUM", "/usr/bin/chromium")
    if not os.path.exists(path):
        missing("browser", f"{path} not found (apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as exc:
        missing("browser", f"python package playwright: {exc}")
    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=path, args=["--no-sandbox"])
        yield chromium
        chromium.close()


def pytest_collection_modifyitems(config, items):
    """Keep marker hygiene: a test using a component fixture must carry its marker."""
    needs = {"docker_client": "docker", "postgres_url": "postgres",
             "fresh_postgres_url": "postgres", "vllm_module": "vllm",
             "ray_cluster": "ray", "browser": "browser"}
    for item in items:
        for fixture, marker in needs.items():
            if fixture in getattr(item, "fixturenames", ()) and marker not in item.keywords:
                item.add_marker(getattr(pytest.mark, marker))


@contextlib.contextmanager
def vllm_serve(model, log_dir, kv_cache_gib: str = "1", extra_args: tuple[str, ...] = ()):
    """`vllm serve` (python -m vllm.entrypoints.openai.api_server) for `model` on a free
    loopback port, served as "tiny", with its CPU KV cache sized explicitly. Yields a function
    that waits until it answers and returns its /v1 URL (start-up overlaps the caller's work).
    `extra_args` go to `vllm serve` as they are (e.g. a tool-call parser)."""
    import httpx

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log_path = Path(log_dir) / "server.log"
    log = open(log_path, "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", str(model),
         "--served-model-name", "tiny", "--host", "127.0.0.1", "--port", str(port),
         "--dtype", "float32", "--max-model-len", "2048", "--gpu-memory-utilization", "0.05",
         "--enforce-eager", "--max-logprobs", "1", *extra_args],
        stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "VLLM_ENABLE_V1_MULTIPROCESSING": "0",
                                                   "VLLM_CPU_KVCACHE_SPACE": kv_cache_gib})
    url = f"http://127.0.0.1:{port}"

    def wait_ready():
        deadline = time.time() + 420
        while time.time() < deadline:
            if proc.poll() is not None:
                pytest.fail(f"vllm serve exited {proc.returncode}: {log_path.read_text()[-2000:]}")
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    return f"{url}/v1"
            except httpx.HTTPError:
                pass
            time.sleep(1)
        pytest.fail(f"vllm serve not ready after 420 s: {log_path.read_text()[-2000:]}")
    try:
        yield wait_ready
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def serve_asgi(app):
    """An ASGI app on a free 127.0.0.1 port in a thread of this process: (url, server, thread);
    stop it with `server.should_exit = True; thread.join()`."""
    import threading

    import uvicorn

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "server did not start"
        time.sleep(0.05)
    return f"http://127.0.0.1:{sock.getsockname()[1]}", server, thread


def mini_swe_agent_attempt(api_base: str, task, max_tokens: int, step_limit: int = 3):
    """mini-swe-agent, unchanged (its own LitellmModel in tool-calling mode, DockerEnvironment and
    DefaultAgent with its shipped config), on a builtin task; the model is whatever serves
    `api_base` (the proxy). Returns (agent, solved). The raw responses mini-swe-agent keeps
    carry the ids vLLM sampled because this client asks for them; a harness that does not ask
    is recorded all the same."""
    import yaml
    from minisweagent.agents.default import DefaultAgent
    from minisweagent.environments.docker import DockerEnvironment
    from minisweagent.models.litellm_model import LitellmModel

    from agentrm.sandboxes.images import base_image

    config = yaml.safe_load((Path(sys.modules["minisweagent"].__file__).parent / "config" / "mini.yaml").read_text())
    # no seed: vLLM 0.32 on CPU kills its engine ("CPU Generator does not use offset") on a
    # seeded request whose prompt is prefilled in chunks
    model = LitellmModel(model_name="openai/tiny", cost_tracking="ignore_errors", **{**config["model"], "model_kwargs": {
        "api_base": api_base, "api_key": "none", "tool_choice": "required", "max_tokens": max_tokens,
        "temperature": 1.0, "drop_params": True, "logprobs": True, "extra_body": {"return_token_ids": True}}})
    env = DockerEnvironment(image=base_image(), cwd="/workspace", timeout=30)
    try:
        for line in task.setup:
            assert env.execute({"command": f"mkdir -p /workspace && cd /workspace && {line}"})["returncode"] == 0
        agent = DefaultAgent(model, env, **{**config["agent"], "step_limit": step_limit, "cost_limit": 0})
        info = agent.run(task=task.instruction)
    finally:
        env.cleanup()
    return agent, str(info.get("submission", "")).strip() == str(task.answer)
