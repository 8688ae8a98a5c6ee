"""`agentrm view`: browse the trace store in a web browser (read-only, on 127.0.0.1)."""

from __future__ import annotations

import errno
import socket
from typing import Annotated

import typer

from agentrm.cli.common import DbOption, db_url, err_console

HOST = "127.0.0.1"  # the store holds prompts, outputs and patches: never served beyond this host


def bind(port: int) -> socket.socket:
    """A listening socket on 127.0.0.1:port (0 = any free port), or one clear error."""
    from agentrm.errors import InputError

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.bind((HOST, port))
    except OSError as exc:
        sock.close()
        why = "is in use" if exc.errno == errno.EADDRINUSE else f"cannot be used ({exc.strerror})"
        raise InputError(f"port {port} on {HOST} {why}: pass --port N (0 picks a free one)") from None
    sock.listen(128)
    return sock


def register(app: typer.Typer) -> None:
    @app.command()
    def view(
        db: DbOption = None,
        port: Annotated[int, typer.Option("--port", min=0, max=65535, help="Port on 127.0.0.1 (0 = any free port).")] = 7700,
    ) -> None:
        """Browse runs, trajectories, scores, advantages and patches in a web browser (read-only)."""
        import uvicorn

        from agentrm.traces.views import open_readonly
        from agentrm.view.app import create_app

        store = open_readonly(db_url(db))
        sock = bind(port)
        url = f"http://{HOST}:{sock.getsockname()[1]}/"
        err_console.print(f"agentrm view: serving {store.url} (read-only) at {url}  (Ctrl-C stops)",
                          markup=False, highlight=False, soft_wrap=True)
        config = uvicorn.Config(create_app(store), log_level="warning", access_log=False)
        try:
            uvicorn.Server(config).run(sockets=[sock])
        finally:
            sock.close()
            store.close()
