"""Config fields that carry their own help text and flag names.

Every stage takes one config dataclass; `option()` attaches the help and the flag to the field,
so the CLI (agentrm.cli.options) generates its flags from the dataclass and the text lives once.
"""

from __future__ import annotations

import dataclasses
from typing import Any

MISSING: Any = dataclasses.MISSING


def option(default: Any = MISSING, help: str = "", *flags: str, factory: Any = MISSING,
           cli: bool = True, metavar: str | None = None, argument: bool = False) -> Any:
    """A dataclass field with CLI metadata: `flags` (default `--field-name`), `help`,
    `argument=True` for a positional argument, and `cli=False` for fields the library sets but
    users do not."""
    meta = {"help": help, "flags": flags, "cli": cli, "metavar": metavar, "argument": argument}
    if factory is not MISSING:
        return dataclasses.field(default_factory=factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)
