"""Every usage or input error is one line on stderr and exit 2; recorded terminal escapes never
reach the user's terminal (traces show, sandbox run)."""

from __future__ import annotations

import json

import pytest

from agentrm.cli.sandbox import _Neutraliser


def one_line_error(result, code: int = 2) -> str:
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert result.returncode == code, (result.returncode, result.stderr[-2000:])
    assert len(lines) == 1 and lines[0].startswith("error:"), result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    return lines[0]


@pytest.mark.parametrize("args, says", [
    (["traces", "list", "--nonsense"], "No such option: --nonsense"),
    (["serve", "--scorer", "answer", "--port", "-1"], "--port"),
    (["serve", "--scorer", "answer", "--port", "70000"], "--port"),
    (["serve", "--scorer", "answer", "--port", "eighty"], "--port"),
    (["traces", "show"], "Missing argument"),
    (["no-such-command"], "No such command"),
])
def test_usage_errors_are_one_line_exit_2(cli, args, says):
    line = one_line_error(cli(*args))
    assert says in line and "--help" in line


def test_user_text_in_an_error_is_neither_markup_nor_emoji(cli, tmp_path):
    line = one_line_error(cli("train", "--policy", "openai:x:[b]y[/b]", "--db", f"sqlite:///{tmp_path}/n.db"))
    assert "--policy openai:x:[b]y[/b]: agentrm train samples with" in line


def test_non_utf8_trace_files_are_one_line(cli, tmp_path):
    db = f"sqlite:///{tmp_path}/s.db"
    jsonl = tmp_path / "bad.jsonl"
    jsonl.write_bytes(b'{"id": "a", "task_id": "t", "messages": [{"role": "user", "content": "\xff"}]}\n')
    assert "not UTF-8" in one_line_error(cli("traces", "import", str(jsonl), "--db", db))
    atif = tmp_path / "bad.json"
    atif.write_bytes(b'{"schema_version": "ATIF-v1.2", "steps": [{"message": "\xfe"}]}')
    assert "not UTF-8" in one_line_error(cli("traces", "import", str(atif), "--db", db))


def test_non_utf8_task_file_is_one_line(cli, tmp_path):
    tasks = tmp_path / "tasks.yaml"
    tasks.write_bytes(b"tasks:\n  - id: a\n    instruction: \"\xff\"\n    answer: 1\n")
    line = one_line_error(cli("run", "--tasks", str(tasks), "--policy", "scripted:none.jsonl",
                              "--db", f"sqlite:///{tmp_path}/s.db"))
    assert "UTF-8" in line


def test_a_file_that_is_not_a_database(cli, tmp_path):
    fake = tmp_path / "notes.db"
    fake.write_text("just some notes, not SQLite\n" * 100)
    line = one_line_error(cli("traces", "list", "--db", f"sqlite:///{fake}"))
    assert "not a database" in line
    assert fake.read_text().startswith("just some notes")  # left as it was


def test_a_read_only_database(cli, tmp_path):
    db = tmp_path / "s.db"
    good = tmp_path / "good.jsonl"
    call = {"id": "c", "type": "function", "function": {"name": "submit", "arguments": "{\"answer\": \"1\"}"}}
    good.write_text(json.dumps({"id": "a", "task_id": "t", "messages": [
        {"role": "user", "content": "q"}, {"role": "assistant", "content": "", "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "c", "content": "ok"}]}) + "\n")
    assert cli("traces", "import", str(good), "--db", f"sqlite:///{db}").returncode == 0
    # the file opened read-only (as a file without write permission is, for a non-root user)
    read_only = f"sqlite:///file:{db}?mode=ro&uri=true"
    assert cli("traces", "list", "--db", read_only).returncode == 0  # reading still works
    line = one_line_error(cli("traces", "import", str(good), "--db", read_only, "--run-id", "again"))
    assert "readonly" in line


def test_traces_show_neutralises_escapes_and_markup(cli, tmp_path):
    db = f"sqlite:///{tmp_path}/s.db"
    call = {"id": "c1", "type": "function", "function": {"name": "bash", "arguments": "{\"command\": \"x\"}"}}
    record = {"id": "t[bold]1", "task_id": "task[/]", "messages": [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "look \x1b[31mRED\x1b[0m [red]markup[/red]", "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "c1", "content": "\x1b]0;pwned\x07title\x1b[2J \x9b31m"}]}
    path = tmp_path / "esc.jsonl"
    path.write_text(json.dumps(record) + "\n")
    assert cli("traces", "import", str(path), "--db", db).returncode == 0
    shown = cli("traces", "show", "t[bold]1", "--db", db)
    assert shown.returncode == 0, shown.stderr
    assert "\x1b" not in shown.stdout and "\x07" not in shown.stdout and "\x9b" not in shown.stdout
    assert "t[bold]1" in shown.stdout and "task[/]" in shown.stdout  # shown literally
    assert "look RED" in shown.stdout
    listed = cli("traces", "list", "--db", db)  # ids are data in the list too, never markup
    assert listed.returncode == 0, listed.stderr
    assert "[b" in listed.stdout  # the tag is printed (maybe wrapped), not applied


def test_stream_neutraliser_across_chunk_boundaries():
    cleaner = _Neutraliser()
    chunks = [b"ok \x1b[3", b"1mred\x1b[0m \x1b]0;ti", b"tle\x07 line\r", b"\nnext \xe2\x82", b"\xac end\x1b"]
    out = b"".join(cleaner.feed(c) for c in chunks) + cleaner.feed(b"", final=True)
    assert out.decode() == "ok red  line\nnext € end"


@pytest.mark.docker
def test_sandbox_run_neutralises_escapes(cli, docker_client):
    command = r"printf 'a\033]0;pwned\007b \033[2Jc \033[31md\n'"
    shown = cli("sandbox", "run", "--", command)
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout == "ab c d\n"
    raw = cli("sandbox", "run", "--raw", "--", command)
    assert "\x1b]0;pwned\x07" in raw.stdout  # --raw passes bytes through


def test_no_arguments_shows_help_without_an_error_line(cli):
    shown = cli("traces")
    assert shown.returncode == 2
    assert "Usage" in shown.stdout + shown.stderr and "error:" not in shown.stderr
