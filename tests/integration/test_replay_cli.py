"""`agentrm replay` from the CLI: store ids and files, printed view, exports, bad input."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from asciinema.asciicast import v2

from agentrm.traces import open_store

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit"))
from test_replay_view import DATA, demo_scores, load_demo, make_demo_store  # noqa: E402


def agentrm(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    import os

    return subprocess.run([sys.executable, "-m", "agentrm.cli.main", *args], capture_output=True,
                          text=True, timeout=60, env={**os.environ, "COLUMNS": "120", **(env or {})})


@pytest.fixture(scope="module")
def db(tmp_path_factory) -> str:
    return make_demo_store(f"sqlite:///{tmp_path_factory.mktemp('replay') / 'store.db'}")


def test_store_trajectory_prints_everything_when_piped(db):
    proc = agentrm("replay", "traj-demo", "--db", db)  # stdout is a pipe: non-interactive
    assert proc.returncode == 0, proc.stderr
    for needle in ["turn 1/4", "turn 4/4", "ls /workspace", "README.md", "prm", "advantage",
                   "-1.200", "tests", "INVALID ACTION", "lines folded"]:
        assert needle in proc.stdout, needle


def test_json_view_has_turn_scores(db, cli):
    proc = cli("replay", "traj-demo", "--db", db, "--json")
    view = json.loads(proc.stdout)
    assert [t["index"] for t in view["turns"]] == [0, 1, 2, 3]
    assert view["turns"][1]["scores"] == {"prm": 0.2, "info_gain": -0.3, "advantage": -1.2}


def played(events, width: int) -> str:
    """The recording as a terminal shows it at the end (pyte emulates the escapes), all lines."""
    import pyte

    screen = pyte.HistoryScreen(width, 4000, history=0)
    stream = pyte.Stream(screen)
    for _, code, data in events:
        if code == "o":
            stream.feed(data)
    return "\n".join(line.rstrip() for line in screen.display)


def test_exports_from_store_and_from_file(db, tmp_path, cli):
    cast, page = tmp_path / "a.cast", tmp_path / "a.html"
    proc = cli("replay", "traj-demo", "--db", db, "--export-cast", str(cast),
                   "--export-html", str(page), "--json")
    assert proc.returncode == 0, proc.stderr
    assert {w["kind"] for w in json.loads(proc.stdout)} == {"asciicast", "html"}
    with open(cast, encoding="utf-8") as f, v2.open_from_file(f.readline(), f) as parsed:
        events = list(parsed.events())
    assert sum(e[1] == "m" for e in events) == 4
    assert all(f'id="turn-{i}"' in page.read_text() for i in range(4))
    screen = played(events, parsed.v2_header["width"])
    assert "thinking…" not in screen  # each turn's "thinking…" gives way to its action
    assert screen.count("advantage") == 4  # every turn's scores once, not twice
    assert oct(page.stat().st_mode & 0o777) == "0o644" and oct(cast.stat().st_mode & 0o777) == "0o644"

    cast2 = tmp_path / "imported.cast"
    proc = cli("replay", str(DATA / "imported.jsonl"), "--index", "1", "--export-cast", str(cast2))
    assert proc.returncode == 0, proc.stderr
    with open(cast2, encoding="utf-8") as f, v2.open_from_file(f.readline(), f) as parsed:
        assert "hello" in parsed.v2_header["title"]
        events = list(parsed.events())
    assert [e[1] for e in events].count("m") == 1
    shown = re.sub(r"\x1b\[[0-9;]*m", "", "".join(e[2] for e in events if e[1] == "o"))
    assert "echo hello" in shown and "\r\nhello\r\n" in shown


def test_imported_file_prints_all_turns(cli):
    proc = cli("replay", str(DATA / "imported.jsonl"), "--no-interactive")
    assert proc.returncode == 0, proc.stderr
    assert "turn 3/3" in proc.stdout and "expr 1 + 2 + 3" in proc.stdout


@pytest.mark.parametrize("args, code, message", [
    (["no-such-trajectory"], 4, "no-such-trajectory"),
    ([str(DATA / "no_turns.jsonl")], 2, "has no turns"),
    ([str(DATA / "truncated.jsonl")], 2, "truncated.jsonl:2"),
    ([str(DATA / "missing.jsonl")], 2, "no such file"),
    ([str(DATA / "imported.jsonl"), "--index", "7"], 2, "--index 7"),
    ([str(DATA / "imported.jsonl"), "--speed", "0"], 2, "--speed"),
])
def test_bad_input_is_one_clear_line(db, tmp_path, cli, args, code, message):
    out = tmp_path / "never.cast"
    proc = cli("replay", *args, "--db", db, "--export-cast", str(out))
    assert proc.returncode == code, (proc.stdout, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and message in lines[0]
    assert not out.exists() and list(tmp_path.iterdir()) == []  # nothing half-written


def test_imported_then_scored_trajectory_shows_its_bars(tmp_path, cli):
    from agentrm.types import Score

    url = f"sqlite:///{tmp_path / 'imported.db'}"
    proc = cli("traces", "import", str(DATA / "imported.jsonl"), "--db", url)
    assert proc.returncode == 0, proc.stderr
    with open_store(url) as store:
        store.write_scores([Score("prm", "imp-1", 0.25, turn_index=1),
                            Score("judge", "imp-1", 0.75, turn_index=2)])
    by_id = cli("replay", "imp-1", "--db", url, "--no-interactive")
    by_file = cli("replay", str(DATA / "imported.jsonl"), "--db", url, "--no-interactive")
    for proc in (by_id, by_file):
        assert proc.returncode == 0, proc.stderr
        assert "0.250" in proc.stdout and "0.750" in proc.stdout and "scores" in proc.stdout


@pytest.mark.postgres
def test_replay_from_postgres(postgres_url, tmp_path, cli):
    import uuid

    traj = load_demo()
    traj.id = f"replay-pg-{uuid.uuid4().hex[:8]}"
    with open_store(postgres_url) as store:
        traj.run_id = store.begin_run({"purpose": "replay pg"})
        store.begin_trajectory(traj)
        for turn in traj.turns:
            store.append_turn(traj.id, turn)
        store.end_trajectory(traj.id, traj.exit_status, traj.reward)
        store.write_advantages([a.__class__(a.estimator, traj.id, a.turn_index, a.value)
                                for a in demo_scores(traj.id)[1]])
    cast = tmp_path / "pg.cast"
    proc = cli("replay", traj.id, "--db", postgres_url, "--export-cast", str(cast))
    assert proc.returncode == 0, proc.stderr
    proc = cli("replay", traj.id, "--db", postgres_url, "--json")
    view = json.loads(proc.stdout)
    assert [t["scores"]["advantage"] for t in view["turns"]] == [0.4, -1.2, -2.0, 0.8]
    assert cast.read_text().count('"m"') == 4
