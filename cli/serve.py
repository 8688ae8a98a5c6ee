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
        host: Annotated[str, typer.Option(help="Address to bind (loopback by default).")] = "127.0.0.1",
        port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    ) -> None:
        """Serve per-turn scores and advantages over HTTP (/score, OpenRLHF's /get_reward)."""
        from agentrm.serve import RewardService, make_server

        specs = [parse_scorer_spec(s) for s in scorer]
        advantage = {"estimator": estimator} if estimator else None
        service = RewardService(specs, advantage, reward_from)
        server = make_server(service, host, port)
        err_console.print(f"reward server on http://{host}:{server.server_port} "
                          f"(scorers: {', '.join(s['name'] for s in specs)}); Ctrl-C stops it")
        try:
            server.serve_forever()
        finally:
            server.server_close()
