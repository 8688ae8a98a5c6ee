"""The `agentrm` command: a thin typer app; each command group lives in its own module."""

from __future__ import annotations

import importlib
import logging
import os
import sys

import typer
from rich.markup import escape

from agentrm.errors import AgentrmError

# Standard output is for results (tables, --json); vLLM logs to it unless told otherwise.
os.environ.setdefault("VLLM_LOGGING_STREAM", "ext://sys.stderr")

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
    "train",       # agentrm train prm
    "replay",      # agentrm replay
    "view",        # agentrm view (web viewer over the trace store)
    "serve",       # agentrm serve (reward server)
    "proxy",       # agentrm proxy (record any harness's model calls)
    "audit",       # agentrm audit hacks (reward-hack corpus)
]


@app.callback()
def _root(
    verbose: int = typer.Option(0, "-v", "--verbose", count=True, help="-v info, -vv debug logs."),
) -> None:
    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")


def _plain_value_labels() -> None:
    """typer labels every option's value `<int>`, `<str>`, and flags, which take no value,
    `<bool>`: show a flag bare and a value the way click names it (INT, TEXT, FLOAT)."""
    from typer.core import TyperArgument, TyperOption

    for cls in (TyperOption, TyperArgument):
        typed = cls.display_type_rich

        def label(self, ctx, _typed=typed):
            if getattr(self, "is_flag", False) or getattr(self, "count", False):
                return None
            text = _typed(self, ctx)
            if not text or not (text.startswith("<") and text.endswith(">")):
                return text
            inner = text[1:-1]
            inner = inner.removeprefix("list[").removesuffix("]")  # repeatable: one value each
            words = {"str": "TEXT", "int": "INT", "float": "FLOAT", "path": "PATH", "file": "FILE",
                     "directory": "DIR", "bool": "BOOL"}
            return " ".join(words.get(w, w.upper()) for w in inner.split())

        cls.display_type_rich = label  # type: ignore[method-assign]


def _register_all() -> None:
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(f"agentrm.cli.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"agentrm.cli.{name}":
                continue  # command group not built yet
            raise
        module.register(app)


_plain_value_labels()
_register_all()


def _click_exceptions() -> tuple[type[BaseException], ...]:
    """typer ≥ 0.22 vendors its own click (typer._click), whose exceptions are not click's;
    catch both in case a command or plug-in uses the real click."""
    from typer._click import exceptions as vendored

    kinds: list[type[BaseException]] = [vendored.ClickException]
    try:
        import click

        kinds.append(click.ClickException)
    except ImportError:
        pass
    return tuple(kinds)


def _is_abort(exc: BaseException) -> bool:
    return type(exc).__name__ == "Abort" and "click" in type(exc).__module__


def _is_database_error(exc: BaseException) -> bool:
    module = sys.modules.get("sqlalchemy.exc")
    return module is not None and isinstance(exc, module.DBAPIError)


def _usage_line(exc: BaseException) -> str:
    """One line: the command, what is wrong, where to look."""
    message = " ".join(exc.format_message().split())  # type: ignore[attr-defined]
    ctx = getattr(exc, "ctx", None)
    where = f"{ctx.command_path}: " if ctx is not None else ""
    hint = f" (see {ctx.command_path} --help)" if ctx is not None and exc.exit_code == 2 else ""  # type: ignore[attr-defined]
    return f"{where}{message}{hint}"


def main() -> None:
    from agentrm.cli.common import err_console

    def fail(message: str, code: int) -> None:
        err_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
        sys.exit(code)

    try:
        rc = app(standalone_mode=False)  # click returns typer.Exit(code) here instead of exiting
        if isinstance(rc, int) and rc:
            sys.exit(rc)
    except AgentrmError as err:
        fail(str(err), err.exit_code)
    except KeyboardInterrupt:
        err_console.print("interrupted")
        sys.exit(130)
    except UnicodeDecodeError as exc:  # a reader without its own check met a non-UTF-8 file
        fail(f"an input file is not UTF-8 text ({exc.reason} at byte {exc.start}); "
             "convert it to UTF-8", 2)
    except SystemExit:
        raise
    except Exception as exc:  # click usage errors etc. come through here in non-standalone mode
        if _is_abort(exc):
            err_console.print("interrupted")
            sys.exit(130)
        if isinstance(exc, _click_exceptions()):
            if type(exc).__name__ == "NoArgsIsHelpError":  # the help is the answer (rich: printed)
                text = exc.format_message()  # type: ignore[attr-defined]
                if text.strip():
                    err_console.print(text, markup=False, highlight=False)
                sys.exit(exc.exit_code)  # type: ignore[attr-defined]
            fail(_usage_line(exc), exc.exit_code)  # type: ignore[attr-defined]
        if _is_database_error(exc):  # e.g. writing to a read-only database file
            reason = " ".join(str(getattr(exc, "orig", None) or exc).split())[:200]
            fail(f"database error: {reason} (check the --db file's permissions or the server)",
                 2 if "readonly" in reason or "not a database" in reason else 3)
        raise


if __name__ == "__main__":
    main()
