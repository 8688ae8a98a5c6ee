"""The `agentrm` command: a thin typer app; each command group lives in its own module."""

from __future__ import annotations

import importlib
import logging
import sys

import typer

from agentrm.errors import AgentrmError

app = typer.Typer(
    name="agentrm",
    help="Agentic trajectory rewards: rollouts in sandboxes, a trace store, scorers, advantages.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

# Each module exposes register(app). Listed here so `agentrm --help` shows the data flow order.
COMMAND_MODULES = [
    "doctor",      # agentrm doctor
    "traces",      # agentrm traces import|export|list|show
    "sandbox",     # agentrm sandbox run|build|images|prune|cleanup
    "run",         # agentrm run
    "score",       # agentrm score
    "rewards",     # agentrm rewards --combine
    "advantages",  # agentrm advantages, agentrm filter, agentrm export
    "eval",        # agentrm eval swe-bench|verifier
    "audit_scorers",  # agentrm audit (scorer perturbation audit)
    "train",       # agentrm train prm
    "replay",      # agentrm replay
    "view",        # agentrm view (web viewer over the trace store)
    "serve",       # agentrm serve (reward server)
]


@app.callback()
def _root(
    verbose: int = typer.Option(0, "-v", "--verbose", count=True, help="-v info, -vv debug logs."),
) -> None:
    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")


def _register_all() -> None:
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(f"agentrm.cli.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"agentrm.cli.{name}":
                continue  # command group not built yet
            raise
        module.register(app)


_register_all()


def main() -> None:
    from agentrm.cli.common import err_console

    try:
        rc = app(standalone_mode=False)  # click returns typer.Exit(code) here instead of exiting
        if isinstance(rc, int) and rc:
            sys.exit(rc)
    except AgentrmError as err:
        err_console.print(f"[bold red]error:[/] {err}", highlight=False, soft_wrap=True)
        sys.exit(err.exit_code)
    except KeyboardInterrupt:
        err_console.print("interrupted")
        sys.exit(130)
    except SystemExit:
        raise
    except Exception as exc:  # click usage errors etc. come through here in non-standalone mode
        import click

        if isinstance(exc, click.exceptions.Abort):
            err_console.print("interrupted")
            sys.exit(130)
        if isinstance(exc, click.ClickException):
            exc.show()
            sys.exit(exc.exit_code)
        raise


if __name__ == "__main__":
    main()
