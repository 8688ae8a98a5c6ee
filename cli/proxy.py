"""`agentrm proxy`: record any harness's model calls as trajectories (agentrm/proxy.py)."""

from __future__ import annotations

import inspect
from typing import Any

import typer

from agentrm.cli.common import DbOption, OtelOption, err_console, open_db, otel
from agentrm.cli.options import build, command, parameters
from agentrm.proxy import ProxyConfig


def _proxy(values: dict[str, Any]) -> None:
    import uvicorn

    from agentrm.cli.view import HOST, bind
    from agentrm.errors import InputError
    from agentrm.proxy import check_upstream, start

    config = build(ProxyConfig, values)
    if not config.upstream:
        raise InputError("--upstream URL is required (the OpenAI-compatible server to forward to)")
    check_upstream(config)  # before anything is created: an unreachable upstream is one line
    otel(values["otel"])
    store = open_db(values["db"])
    recorder, app = start(store, config)
    sock = bind(config.port)
    url = f"http://{HOST}:{sock.getsockname()[1]}"
    err_console.print(f"agentrm proxy: {url}/t/TRAJECTORY_ID/v1 → {config.base()}; recording run "
                      f"{recorder.run_id} into {store.url} (Ctrl-C or SIGTERM closes open trajectories "
                      "and stops)", markup=False, highlight=False, soft_wrap=True)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False))
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()


def register(app: typer.Typer) -> None:
    db = inspect.Parameter("db", inspect.Parameter.KEYWORD_ONLY, default=None, annotation=DbOption)
    otel_flag = inspect.Parameter("otel", inspect.Parameter.KEYWORD_ONLY, default=False, annotation=OtelOption)
    app.command("proxy")(command(
        _proxy, parameters(ProxyConfig) + [otel_flag, db],
        "Forward an OpenAI-compatible API to --upstream and record every call as a turn "
        "(token ids and log-probs included): point any harness's base URL at /t/ID/v1."))
