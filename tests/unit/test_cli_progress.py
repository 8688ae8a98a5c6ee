"""Progress where a bar cannot redraw (a log, a pipe): plain lines from a timer, user text kept
verbatim (no rich markup), and a last line at the end."""

from __future__ import annotations

import threading

from agentrm.cli import common


def test_log_progress_prints_lines_on_a_timer_and_at_the_end(capsys):
    bar = common.LogProgress(every=0.05)
    ticked = threading.Event()
    original = bar._print

    def counting_print():
        original()
        ticked.set()

    bar._print = counting_print
    with bar:
        task = bar.add_task("grade runs[v2].jsonl", total=4)
        bar.update(task, advance=1)
        assert ticked.wait(30)  # a line arrives without any further update
        bar.update(task, completed=4, description="done [bold]x[/]")
    err = capsys.readouterr().err.splitlines()
    assert any(line.startswith("grade runs[v2].jsonl: 1/4") for line in err)
    assert err[-1].startswith("done [bold]x[/]: 4/4")


def test_progress_is_plain_when_stderr_is_not_a_terminal():
    assert isinstance(common.progress(), common.LogProgress)  # pytest captures stderr


def test_a_removed_task_is_not_printed_and_new_keys_do_not_reuse_old_ones(capsys):
    bar = common.LogProgress(every=3600)
    first = bar.add_task("rollout", total=16)
    kept = bar.add_task("kept", total=2)
    bar.remove_task(first)
    update = bar.add_task("update")  # a stage without a total: no "0/16" left from the rollout
    assert len({first, kept, update}) == 3
    bar._print()
    err = capsys.readouterr().err.splitlines()
    assert [line.split(" (")[0] for line in err] == ["kept: 0/2", "update: 0"]
