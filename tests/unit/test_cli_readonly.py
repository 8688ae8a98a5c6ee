"""Commands that read the store never create one: a typo in --db, or running them in the wrong
folder, gives one line and a non-zero exit and leaves no empty agentrm.db behind."""

from __future__ import annotations

import pytest


@pytest.mark.parametrize("args", [
    ["replay", "nope"], ["traces", "list"], ["traces", "show", "nope"], ["traces", "export", "--run", "x"],
    ["advantages", "--run", "x"], ["filter", "--run", "x"], ["export", "--run", "x"],
    ["rewards", "--combine", "outcome", "--run", "x"], ["score", "--run", "x", "-s", "answer"],
    ["train", "report", "x"], ["eval", "verifier", "--run", "x", "-s", "answer"],
])
def test_read_only_commands_create_no_database(tmp_path, monkeypatch, cli, args):
    monkeypatch.chdir(tmp_path)
    res = cli(*args)
    assert res.returncode == 2, (res.stdout, res.stderr)
    assert "no trace store" in res.stderr and len(res.stderr.strip().splitlines()) == 1, res.stderr
    assert not (tmp_path / "agentrm.db").exists()
