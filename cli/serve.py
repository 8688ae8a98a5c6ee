"""`agentrm serve`: the HTTP reward server (agentrm/serve.py) for remote training loops."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import parse_qsl

import typer

from agentrm.cli.common import err_console


def parse_scorer_spec(spec: str) -> dict:
    """'name?key=value&key2=value2' → {"name", "options"} (numbers and booleans coerced)."""
    name, _, query = spec.partition("?")
    options = {}
    for key, value in parse_qsl(query, keep_blank_values=True):
        lowered = value.lower()
        if lowered in {"true", "false"}:
            options[key] = lowered == "true"
        else:
            try:
                options[key] = int(value)
            except ValueError:
                try:
                    options[key] = float(value)
                except ValueError:
                    options[key] = value
    return {"name": name, "options": options}


def register(app: typer.Typer) -> None:
    @app.command("serve")
    def serve(
        scorer: Annotated[list[str], typer.Option("--scorer", help="Scorer spec NAME?key=value&…; repeat for several.")],
        estimator: Annotated[str | None, typer.Option(help="Also return per-turn advantages (gigpo, grpo, rloo, igpo, minform).")] = None,
        reward_from: Annotated[str | None, typer.Option(help="Scorer whose trajectory score is the reward (default: the first).")] = None,
        host: Annotated[str, typer.Option(help="Address to bind (loopback by default; any other needs --token).")] = "127.0.0.1",
        port: Annotated[int, typer.Option(min=0, max=65535, help="Port to listen on (0: any free port).")] = 8000,
        token: Annotated[str | None, typer.Option(envvar="AGENTRM_TOKEN", show_default=False,
                                                  help="Bearer token clients must send (env AGENTRM_TOKEN).")] = None,
        max_body_mb: Annotated[float, typer.Option(min=0.001, help="Largest request body, MiB (larger: 413).")] = 64.0,
        max_concurrency: Annotated[int, typer.Option(min=1, help="Requests handled at once (more wait, then 503).")] = 16,
        body_timeout: Annotated[float, typer.Option(min=0.1, help="Seconds a client has to send its body (else 408).")] = 120.0,
        large_body_mb: Annotated[float, typer.Option(min=0, help="Bodies over this (MiB) are scored in a second process with its own scorers, so they stall no one; 0: off.")] = 4.0,
    ) -> None:
        """Serve per-turn scores and advantages over HTTP (/score, OpenRLHF's /get_reward)."""
        from agentrm.serve import RewardService, ServerLimits, make_server

        limits = ServerLimits(max_body=int(max_body_mb * (1 << 20)), max_concurrency=max_concurrency,
                              body_timeout=body_timeout, large_body=int(large_body_mb * (1 << 20)))
        specs = [parse_scorer_spec(s) for s in scorer]
        advantage = {"estimator": estimator} if estimator else None
        service = RewardService(specs, advantage, reward_from)
        server = make_server(service, host, port, token=token, limits=limits)
        err_console.print(f"reward server on http://{host}:{server.server_port} "
                          f"(scorers: {', '.join(s['name'] for s in specs)}"
                          f"{'; bearer token required' if token else ''}); "
                          "Ctrl-C or SIGTERM drains and stops it", highlight=False, markup=False)
        serve_until_signalled(server)


def serve_until_signalled(server) -> None:
    """serve_forever until SIGTERM/SIGINT, then drain: no new connections, requests in flight
    finish (each within its deadlines)."""
    import signal
    import threading

    stopping = threading.Event()

    def stop(signum, frame):  # noqa: ARG001 - signal handler signature
        if not stopping.is_set():
            stopping.set()
            threading.Thread(target=server.shutdown, name="serve-stop", daemon=True).start()

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        server.serve_forever()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        server.server_close()  # joins the requests in flight, stops the large-body process
    if stopping.is_set():
        err_console.print("reward server stopped (drained)")
