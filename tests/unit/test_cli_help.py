"""Every command's --help reads cleanly: no `<int>`-style type labels, flags shown bare (they
take no value), and `agentrm score --help` names the scorers that exist."""

from __future__ import annotations

import re

import typer
from typer.testing import CliRunner

from agentrm.cli.main import app
from agentrm.verifiers.registry import available


def commands(group, path=()):
    for name, cmd in getattr(group, "commands", {}).items():
        yield (*path, name)
        yield from commands(cmd, (*path, name))


def test_help_has_no_type_labels_and_bare_flags():
    click_app = typer.main.get_command(app)
    paths = list(commands(click_app))
    assert ("train",) in paths and ("traces", "list") in paths
    runner = CliRunner()
    for path in paths:
        res = runner.invoke(app, [*path, "--help"], env={"COLUMNS": "120"})
        assert res.exit_code == 0, (path, res.output)
        assert not re.search(r"<(bool|int|str|float|path)[^>]*>", res.output), (path, res.output)
        for line in res.output.splitlines():
            if "--json " in line or "--help " in line:
                assert not re.search(r"--(json|help)\s+(BOOL|TEXT)", line), (path, line)


def test_score_help_lists_the_scorers():
    res = CliRunner().invoke(app, ["score", "--help"], env={"COLUMNS": "200"})
    for name in available():
        assert name in res.output
