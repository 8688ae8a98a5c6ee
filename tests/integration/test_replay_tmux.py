"""The interactive player and the exported cast, driven in a real terminal (tmux)."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit"))
from conftest import missing  # noqa: E402
from test_replay_view import DATA, make_demo_store  # noqa: E402


class Pane:
    """One detached tmux session of fixed size running a command."""

    def __init__(self, command: str, width: int = 110, height: int = 32):
        if not shutil.which("tmux"):
            missing("tmux", "not installed")
        self.name = f"replay-{uuid.uuid4().hex[:8]}"
        self.tmux = ["tmux", "-L", self.name, "-f", "/dev/null"]  # own server: sizes are ours
        subprocess.run([*self.tmux, "new-session", "-d", "-s", self.name, "-x", str(width),
                        "-y", str(height), "bash", "-c", f"{command}; echo EXIT=$?; sleep 60"],
                       check=True)

    def keys(self, *keys: str) -> None:
        subprocess.run([*self.tmux, "send-keys", "-t", self.name, *keys], check=True)

    def screen(self, escapes: bool = False) -> str:
        flags = ["-p", "-e"] if escapes else ["-p"]
        return subprocess.run([*self.tmux, "capture-pane", *flags, "-t", self.name], check=True,
                              capture_output=True, text=True).stdout

    def wait_for(self, text: str, timeout: float = 20.0) -> str:
        deadline = time.monotonic() + timeout
        while True:
            screen = self.screen()
            if text in screen:
                return screen
            if time.monotonic() > deadline:
                raise AssertionError(f"{text!r} never appeared; screen:\n{screen}")
            time.sleep(0.1)

    def close(self) -> None:
        subprocess.run([*self.tmux, "kill-server"], capture_output=True)


@pytest.fixture(scope="module")
def db(tmp_path_factory) -> str:
    return make_demo_store(f"sqlite:///{tmp_path_factory.mktemp('tmux') / 'store.db'}")


@pytest.fixture
def pane_factory():
    panes = []

    def make(command: str, **kw) -> Pane:
        panes.append(Pane(command, **kw))
        return panes[-1]

    yield make
    for pane in panes:
        pane.close()


def replay_cmd(*args: str) -> str:
    return " ".join(shlex.quote(a) for a in [sys.executable, "-m", "agentrm.cli.main", "replay",
                                               *args])


def status_line(screen: str) -> str:
    return screen.splitlines()[0]


def test_step_forward_back_and_quit(pane_factory, db):
    pane = pane_factory(replay_cmd("traj-demo", "--db", db))
    screen = pane.wait_for("turn 1/4 ·")
    assert "ls /workspace" in screen and "README.md" in screen and "prm" in screen
    assert "advantage" in screen and "+0.400" in screen and "q quit" in screen
    assert re.search(r"advantage .*\x1b\[32m█", pane.screen(escapes=True))  # green: positive
    pane.keys("n")
    screen = pane.wait_for("turn 2/4 ·")
    assert "seq 200" in screen and "-1.200" in screen and "ls /workspace" not in screen
    assert re.search(r"advantage .*\x1b\[31m█", pane.screen(escapes=True))  # red: negative
    pane.keys("Right")
    screen = pane.wait_for("turn 3/4 ·")
    assert "INVALID ACTION" in screen and "bad JSON" in screen
    pane.keys("Left")
    pane.wait_for("turn 2/4 ·")
    pane.keys("p")
    pane.wait_for("turn 1/4 ·")
    pane.keys("p")  # already at the first turn: stays there
    time.sleep(0.3)
    assert "turn 1/4 ·" in status_line(pane.screen())
    pane.keys("G")
    screen = pane.wait_for("turn 4/4 ·")
    assert "There are 2 python files." in screen
    pane.keys("q")
    screen = pane.wait_for("EXIT=0")
    assert "turn 4/4 ·" not in screen  # the alternate screen is gone, the shell is back


def test_scroll_and_unfold_long_output(pane_factory, db):
    pane = pane_factory(replay_cmd("traj-demo", "--db", db), height=24)
    pane.wait_for("turn 1/4 ·")
    pane.keys("n")
    screen = pane.wait_for("turn 2/4 ·")
    assert "line 199" not in screen  # below the fold of a 24-line screen
    pane.keys("o")  # unfold, then page down to the end of the output
    for _ in range(12):
        pane.keys("PageDown")
    screen = pane.wait_for("line 199")
    assert "turn 2/4 ·" in status_line(screen) and "lines folded" not in screen
    pane.keys("q")
    pane.wait_for("EXIT=0")


def test_play_with_recorded_timing_reaches_the_end(pane_factory, db):
    # Recorded: 6.5 s in total. At 4x the whole replay takes well under 3 s.
    pane = pane_factory(replay_cmd("traj-demo", "--db", db, "--speed", "4", "--play"))
    screen = pane.wait_for("▶ playing")
    started = time.monotonic()
    screen = pane.wait_for("turn 4/4 ·", timeout=15)
    screen = pane.wait_for("⏸ paused", timeout=15)
    elapsed = time.monotonic() - started
    assert "turn 4/4 ·" in status_line(screen) and "There are 2 python files." in screen
    assert 0.5 < elapsed < 10, elapsed  # it took time (played), but was sped up
    pane.keys("q")
    pane.wait_for("EXIT=0")


def test_imported_file_is_interactive_too(pane_factory):
    pane = pane_factory(replay_cmd(str(DATA / "imported.jsonl")))
    screen = pane.wait_for("turn 1/3 ·")
    assert "add-small-numbers" in screen and "print(1+2+3)" in screen
    pane.keys("n", "n")
    screen = pane.wait_for("turn 3/3 ·")
    assert "submit" in screen
    pane.keys("q")
    pane.wait_for("EXIT=0")


def test_no_interactive_on_a_terminal_prints_everything(pane_factory, db):
    pane = pane_factory(replay_cmd("traj-demo", "--db", db, "--no-interactive", "--max-lines",
                                   "4") + " | tail -n 12", height=40)
    screen = pane.wait_for("EXIT=0")
    assert "There are 2 python files." in screen and "q quit" not in screen


def test_exported_cast_plays_in_asciinema(pane_factory, db, tmp_path):
    cast = tmp_path / "demo.cast"
    exported = subprocess.run([sys.executable, "-m", "agentrm.cli.main", "replay", "traj-demo",
                               "--db", db, "--export-cast", str(cast)], capture_output=True,
                              text=True, timeout=60)
    assert exported.returncode == 0, exported.stderr
    pane = pane_factory(f"asciinema play -s 8 {shlex.quote(str(cast))}", height=40)
    screen = pane.wait_for("EXIT=0", timeout=30)
    assert "There are 2 python files." in screen and "advantage" in screen
    cat = pane_factory(f"asciinema cat {shlex.quote(str(cast))} | grep -c 'line 1[0-9][0-9]'")
    screen = cat.wait_for("EXIT=0", timeout=30)
    assert "100" in screen.split("EXIT=0")[0]  # every line of the long output is recorded


def test_asciinema_pauses_on_the_turn_markers(pane_factory, db, tmp_path):
    cast = tmp_path / "markers.cast"
    subprocess.run([sys.executable, "-m", "agentrm.cli.main", "replay", "traj-demo", "--db", db,
                    "--export-cast", str(cast)], check=True, capture_output=True, timeout=60)
    pane = pane_factory(f"asciinema play -m {shlex.quote(str(cast))}", height=60)
    screen = pane.wait_for("agentrm replay")  # header printed, paused on the turn 1 marker
    time.sleep(1.0)
    assert "turn 1/4" not in pane.screen()
    pane.keys("]")  # play up to the next marker: turn 1 in full, paused before turn 2
    screen = pane.wait_for("README.md")
    assert "turn 1/4" in screen and "turn 2/4" not in screen
    pane.keys("]")
    screen = pane.wait_for("line 199")
    assert "turn 3/4" not in screen


def test_player_redraws_for_a_resized_terminal(pane_factory, db):
    pane = pane_factory(replay_cmd("traj-demo", "--db", db), width=110, height=30)
    screen = pane.wait_for("turn 1/4 ·")
    assert max(len(line) for line in screen.splitlines()) > 80
    subprocess.run([*pane.tmux, "resize-window", "-t", pane.name, "-x", "70", "-y", "20"],
                   check=True)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        screen = pane.screen()
        lines = screen.splitlines()
        if lines and lines[0].startswith(" turn 1/4") and "scores" in screen \
                and "q quit" in screen and len(lines) <= 20:
            break
        time.sleep(0.2)
    assert max(len(line) for line in lines) <= 70 and "q quit" in lines[-1], screen
    pane.keys("q")
    pane.wait_for("EXIT=0")
