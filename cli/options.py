"""Typer flags generated from config dataclasses (agentrm.config.option metadata).

A command is `command(body, ConfigA, ConfigB, extra=[...])`: the flags are the configs' fields,
the help text is the field's, and `body(values)` gets a dict of what the user gave, from which
`build(ConfigA, values)` makes the config (whose own validation then runs in the library).
"""

from __future__ import annotations

import dataclasses
import inspect
import typing
from collections.abc import Callable, Iterable
from typing import Annotated, Any

import typer


def _flag_names(field: dataclasses.Field) -> tuple[str, ...]:
    names = tuple(field.metadata.get("flags") or ())
    return names or ("--" + field.name.replace("_", "-"),)


def config_fields(cls: type) -> list[tuple[dataclasses.Field, Any]]:
    """(field, resolved type) for every field of `cls` that is a CLI flag."""
    hints = typing.get_type_hints(cls)
    return [(f, hints[f.name]) for f in dataclasses.fields(cls) if f.metadata.get("cli", True)]


def _default(field: dataclasses.Field) -> Any:
    if field.default is not dataclasses.MISSING:
        return field.default
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return inspect.Parameter.empty


def parameters(cls: type, skip: Iterable[str] = (), defaults: dict[str, Any] | None = None
               ) -> list[inspect.Parameter]:
    """typer parameters for the CLI fields of `cls` (minus `skip`), with optional new defaults."""
    skip, defaults = set(skip), defaults or {}
    out = []
    for field, kind in config_fields(cls):
        if field.name in skip:
            continue
        default = defaults.get(field.name, _default(field))
        shown = default not in (None, [], (), False)
        if field.metadata.get("argument"):
            opt = typer.Argument(help=field.metadata.get("help") or None, show_default=shown,
                                 metavar=field.metadata.get("metavar"))
        else:
            opt = typer.Option(*_flag_names(field), help=field.metadata.get("help") or None,
                               metavar=field.metadata.get("metavar"), show_default=shown)
        out.append(inspect.Parameter(field.name, inspect.Parameter.KEYWORD_ONLY, default=default,
                                     annotation=Annotated[kind, opt]))
    return out


def build(cls: type, values: dict[str, Any], **fixed: Any) -> Any:
    """An instance of `cls` from the flag values (only its own fields) plus `fixed` ones."""
    names = {f.name for f in dataclasses.fields(cls)}
    given = {k: v for k, v in values.items() if k in names}
    return cls(**(given | fixed))


def command(body: Callable[[dict[str, Any]], Any], params: list[inspect.Parameter], doc: str
            ) -> Callable[..., Any]:
    """A typer command whose signature is `params`; it calls `body(values)`."""
    seen: set[str] = set()
    for p in params:
        if p.name in seen:
            raise ValueError(f"flag {p.name!r} declared twice")
        seen.add(p.name)

    def cmd(**values: Any) -> Any:
        return body(values)

    cmd.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    cmd.__annotations__ = {p.name: p.annotation for p in params}
    cmd.__doc__ = doc
    return cmd
