"""agentrm.files: whole-or-nothing writes with ordinary permissions."""

from __future__ import annotations

import os
import stat

import pytest

from agentrm.files import atomic_open, atomic_path, atomic_write


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_text_and_bytes_land_whole_with_umask_permissions(tmp_path):
    old = os.umask(0o022)
    try:
        atomic_write(tmp_path / "sub" / "a.txt", "héllo\n")
        atomic_write(tmp_path / "b.bin", b"\x00\xff")
        atomic_write(tmp_path / "c.key", "secret", mode=0o600)
        os.umask(0o077)
        atomic_write(tmp_path / "d.txt", "private by the user's choice")
    finally:
        os.umask(old)
    assert (tmp_path / "sub" / "a.txt").read_bytes() == "héllo\n".encode()
    assert (tmp_path / "b.bin").read_bytes() == b"\x00\xff"
    assert [_mode(tmp_path / n) for n in ("sub/a.txt", "b.bin", "c.key", "d.txt")] == [
        0o644, 0o644, 0o600, 0o600]


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temp(tmp_path):
    target = tmp_path / "out.jsonl"
    atomic_write(target, "old\n")
    with pytest.raises(RuntimeError), atomic_open(target) as out:
        out.write("half of the new\n")
        raise RuntimeError("writer failed")
    assert target.read_text() == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.jsonl"]


def test_streaming_writes_replace_the_file(tmp_path):
    target = tmp_path / "rows.jsonl"
    atomic_write(target, "old\n")
    with atomic_open(target) as out:
        for i in range(3):
            out.write(f"{i}\n")
        assert target.read_text() == "old\n"  # readers see the old file until the rename
    assert target.read_text() == "0\n1\n2\n"


def test_atomic_path_for_files_and_directories(tmp_path):
    old = os.umask(0o022)
    try:
        with atomic_path(tmp_path / "t.parquet") as tmp:
            assert tmp.parent == tmp_path and not (tmp_path / "t.parquet").exists()
            tmp.write_bytes(b"PAR1")
        out = tmp_path / "ds"
        for round_ in ("first", "second"):  # the second replaces a non-empty directory
            with atomic_path(out, directory=True) as tmp:
                (tmp / "data.txt").write_text(round_)
        with pytest.raises(ValueError), atomic_path(out, directory=True) as tmp:
            (tmp / "data.txt").write_text("third")
            raise ValueError("writer failed")
    finally:
        os.umask(old)
    assert (tmp_path / "t.parquet").read_bytes() == b"PAR1" and _mode(tmp_path / "t.parquet") == 0o644
    assert (out / "data.txt").read_text() == "second" and _mode(out) == 0o755
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds", "t.parquet"]


def test_replay_exports_are_readable_by_others(tmp_path):
    # reported: `agentrm replay --export-html` wrote its page 0600 (a bare mkstemp file)
    from agentrm.replay.asciicast import write_cast
    from agentrm.replay.html import write_html
    from agentrm.replay.view import build_view
    from agentrm.types import Trajectory, Turn

    turn = Turn(index=0, observation=[{"role": "user", "content": "hi"}],
                assistant={"role": "assistant", "content": "done"})
    view = build_view(Trajectory(id="t", task_id="task", group_id="g", turns=[turn]))
    old = os.umask(0o022)
    try:
        write_html(view, tmp_path / "a.html")
        write_cast(view, tmp_path / "a.cast")
    finally:
        os.umask(old)
    assert "done" in (tmp_path / "a.html").read_text()
    assert _mode(tmp_path / "a.html") == _mode(tmp_path / "a.cast") == 0o644


def test_parents_false_refuses_a_missing_folder(tmp_path):
    with pytest.raises(OSError), atomic_open(tmp_path / "missing" / "out.jsonl", parents=False):
        pass
    assert not (tmp_path / "missing").exists()
