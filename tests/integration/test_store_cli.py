"""`agentrm traces …` end to end through the real entry point (agentrm.cli.main:main):
round trips, every bad-input case (one-line error naming file:line, exit code 2, nothing
written), listings and the doctor."""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import run_agentrm

DATA = Path(__file__).resolve().parents[1] / "data" / "traces"


def run_cli(capsys, monkeypatch, *args: str) -> tuple[int, str, str]:
    result = run_agentrm(capsys, monkeypatch, *args)
    return result.returncode, result.stdout, result.stderr


@pytest.fixture
def db(tmp_path, monkeypatch):
    monkeypatch.delenv("AGENTRM_DB", raising=False)
    return f"sqlite:///{tmp_path / 'cli.db'}"


def _counts(db: str) -> tuple[int, int, int]:
    path = db.split("sqlite:///", 1)[1]
    if not Path(path).exists():
        return 0, 0, 0
    conn = sqlite3.connect(path)
    try:
        return tuple(conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0]  # type: ignore[return-value]
                     for t in ("runs", "trajectories", "turns"))
    except sqlite3.OperationalError:  # tables not created
        return 0, 0, 0
    finally:
        conn.close()


def test_import_export_import_export_is_byte_identical(tmp_path, capsys, monkeypatch):
    db1, db2 = f"sqlite:///{tmp_path / 'a.db'}", f"sqlite:///{tmp_path / 'b.db'}"
    out1, out2 = tmp_path / "out1.jsonl", tmp_path / "out2.jsonl"
    assert run_cli(capsys, monkeypatch, "traces", "import", str(DATA / "good.jsonl"), "--db", db1)[0] == 0
    assert run_cli(capsys, monkeypatch, "traces", "export", "-o", str(out1), "--db", db1)[0] == 0
    assert run_cli(capsys, monkeypatch, "traces", "import", str(out1), "--db", db2)[0] == 0
    assert run_cli(capsys, monkeypatch, "traces", "export", "-o", str(out2), "--db", db2)[0] == 0
    assert out1.read_bytes() == out2.read_bytes()
    # the export keeps the conversation of the input exactly
    src = [json.loads(line) for line in (DATA / "good.jsonl").read_text("utf-8").splitlines()]
    exp = [json.loads(line) for line in out1.read_text("utf-8").splitlines()]
    assert [e["messages"] for e in exp] == [s["messages"] for s in src]
    assert [(e["id"], e["reward"], e["answer"], e["metadata"]) for e in exp] == [
        (s["id"], s["reward"], s["answer"], s["metadata"]) for s in src]


@pytest.mark.parametrize("name", ["sample.atif.json", "demo__repo-1.traj", "demo__repo-2.traj.json"])
def test_other_formats_round_trip_through_jsonl(name, tmp_path, capsys, monkeypatch, db):
    code, out, err = run_cli(capsys, monkeypatch, "traces", "import", str(DATA / name), "--db", db, "--json")
    assert code == 0, err
    assert json.loads(out)["imported"] == 1
    out1, out2 = tmp_path / "1.jsonl", tmp_path / "2.jsonl"
    run_cli(capsys, monkeypatch, "traces", "export", "-o", str(out1), "--db", db)
    db2 = f"sqlite:///{tmp_path / 'again.db'}"
    run_cli(capsys, monkeypatch, "traces", "import", str(out1), "--db", db2)
    run_cli(capsys, monkeypatch, "traces", "export", "-o", str(out2), "--db", db2)
    assert out1.read_bytes() == out2.read_bytes() and out1.stat().st_size > 0


GOOD = json.dumps({"id": "a", "task_id": "t", "group_id": "g", "messages": [
    {"role": "user", "content": "hi"}, {"role": "assistant", "content": "ok"}], "reward": 1, "answer": None,
    "metadata": {}})


def _rec(**changes) -> str:
    rec = json.loads(GOOD)
    rec["id"] = "b"
    rec.update(changes)
    return json.dumps(rec)


BAD_CASES = {
    "malformed-json": (GOOD + "\n{\"id\": \"b\", \n", 2, "Expecting"),
    "not-an-object": (GOOD + "\n[1, 2]\n", 2, "must be a JSON object"),
    "missing-task-id": (GOOD + "\n" + json.dumps({"id": "b", "messages": []}) + "\n", 2, "'task_id'"),
    "wrong-type-reward": (GOOD + "\n" + _rec(reward="high") + "\n", 2, "'reward'"),
    "bool-reward": (GOOD + "\n" + _rec(reward=True) + "\n", 2, "'reward'"),
    "nan-reward": (GOOD + "\n" + _rec(reward=1).replace('"reward": 1', '"reward": NaN') + "\n", 2, "NaN"),
    "wrong-type-id": (GOOD + "\n" + _rec(id=5) + "\n", 2, "'id' must be str"),
    "wrong-type-metadata": (GOOD + "\n" + _rec(metadata=[1]) + "\n", 2, "'metadata'"),
    "messages-not-list": (GOOD + "\n" + _rec(messages="hi") + "\n", 2, "'messages' must be a list"),
    "unknown-role": (GOOD + "\n" + _rec(messages=[{"role": "robot", "content": "x"}]) + "\n", 2, "unknown role 'robot'"),
    "tool-without-call": (GOOD + "\n" + _rec(messages=[
        {"role": "user", "content": "x"}, {"role": "assistant", "content": "y"},
        {"role": "tool", "tool_call_id": "c9", "content": "z"}]) + "\n", 2, "without a matching"),
    "tool-before-assistant": (_rec(messages=[{"role": "tool", "tool_call_id": "c1", "content": "z"}]) + "\n", 1,
                              "without a matching"),
    "tool-answered-twice": (GOOD + "\n" + _rec(messages=[
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "bash", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "a"},
        {"role": "tool", "tool_call_id": "c1", "content": "b"}]) + "\n", 2, "without a matching"),
    "bad-tool-calls": (GOOD + "\n" + _rec(messages=[{"role": "assistant", "content": "", "tool_calls": {"id": 1}}]) + "\n",
                       2, "tool_calls must be a list"),
    "bad-content-type": (GOOD + "\n" + _rec(messages=[{"role": "user", "content": 5}]) + "\n", 2, "content must be"),
    "unknown-exit-status": (GOOD + "\n" + _rec(exit_status="exploded") + "\n", 2, "exit_status"),
    "duplicate-id": (GOOD + "\n" + GOOD + "\n", 2, "duplicate trajectory id"),
    "huge-int-reward": (GOOD + "\n" + _rec(reward=1).replace('"reward": 1', '"reward": ' + "9" * 400) + "\n", 2,
                        "finite number"),
    "nul-in-id": (GOOD + "\n" + _rec(id="a\u0000b") + "\n", 2, "NUL"),
    "deep-nesting": (GOOD + "\n" + '{"id": "b", "task_id": "t", "messages": [], "metadata": '
                     + "[" * 100000 + "]" * 100000 + "}\n", 2, "nested too deeply"),
    "empty-file": ("", 1, "empty file"),
    "blank-lines-only": ("\n   \n\n", 1, "empty file"),
}


@pytest.mark.parametrize("case", sorted(BAD_CASES))
def test_bad_jsonl_fails_cleanly_and_writes_nothing(case, tmp_path, capsys, monkeypatch, db):
    text, line, needle = BAD_CASES[case]
    path = tmp_path / f"{case}.jsonl"
    path.write_text(text, encoding="utf-8")
    code, out, err = run_cli(capsys, monkeypatch, "traces", "import", str(path), "--db", db)
    assert code == 2, err
    message = err.strip()
    assert "\n" not in message and "Traceback" not in message
    assert f"{path}:{line}:" in message and needle in message, message
    assert _counts(db) == (0, 0, 0)  # nothing half-written, not even the run row


def test_byte_order_mark_is_accepted(tmp_path, capsys, monkeypatch, db):
    path = tmp_path / "bom.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + GOOD.encode() + b"\r\n")
    code, _, err = run_cli(capsys, monkeypatch, "traces", "import", str(path), "--db", db)
    assert code == 0, err
    assert _counts(db)[1:] == (1, 1)


def test_non_utf8_bytes_name_the_line(tmp_path, capsys, monkeypatch, db):
    path = tmp_path / "latin1.jsonl"
    path.write_bytes(GOOD.encode() + b"\n" + GOOD.replace('"hi"', '"caf\xe9"').replace('"a"', '"b"').encode("latin-1") + b"\n")
    code, _, err = run_cli(capsys, monkeypatch, "traces", "import", str(path), "--db", db)
    assert code == 2 and f"{path}:2: not UTF-8" in err and _counts(db) == (0, 0, 0)


@pytest.mark.parametrize("name,content,needle", [
    ("bad.atif.json", '{"schema_version": "ATIF-v1.4", "steps": [{"step_id": 2, "source": "user", "message": "x"}]}',
     "step_id must be 1"),
    ("broken.atif.json", '{"schema_version": "ATIF-v1.4",\n "steps": [\n oops]}', ":3: malformed JSON"),
    ("empty.traj", "", ":1: empty file"),
    ("weird.json", '{"something": 1}', "cannot tell the format"),
])
def test_bad_other_formats(name, content, needle, tmp_path, capsys, monkeypatch, db):
    path = tmp_path / name
    path.write_text(content)
    code, _, err = run_cli(capsys, monkeypatch, "traces", "import", str(path), "--db", db)
    assert code == 2 and needle in err and "\n" not in err.strip(), err
    assert _counts(db) == (0, 0, 0)


def test_missing_file_and_bad_status(tmp_path, capsys, monkeypatch, db):
    code, _, err = run_cli(capsys, monkeypatch, "traces", "import", str(tmp_path / "nope.jsonl"), "--db", db)
    assert code == 2 and "no such file" in err
    code, _, err = run_cli(capsys, monkeypatch, "traces", "list", "--status", "bogus", "--db", db)
    assert code == 2 and "--status 'bogus'" in err


def test_list_show_and_json(capsys, monkeypatch, db):
    run_cli(capsys, monkeypatch, "traces", "import", str(DATA / "good.jsonl"), "--db", db, "--run-id", "r1")
    code, out, _ = run_cli(capsys, monkeypatch, "traces", "list", "--db", db, "--json", "--min-score", "0.5")
    assert code == 0 and [r["id"] for r in json.loads(out)] == ["t-001-a"]
    code, out, _ = run_cli(capsys, monkeypatch, "traces", "list", "--db", db, "--run", "r1", "--group", "count-lines/g0")
    assert code == 0 and "t-001-a" in out and "t-001-b" in out and "t-002-a" not in out
    code, out, _ = run_cli(capsys, monkeypatch, "traces", "show", "t-001-b", "--db", db, "--json")
    shown = json.loads(out)
    assert code == 0 and [t["valid"] for t in shown["turns"]] == [True, False, True]
    code, out, _ = run_cli(capsys, monkeypatch, "traces", "show", "t-001-b", "--db", db)
    assert code == 0 and "3 turns" in out
    code, _, err = run_cli(capsys, monkeypatch, "traces", "show", "nope", "--db", db)
    assert code == 4 and "unknown trajectory 'nope'" in err
    code, out, _ = run_cli(capsys, monkeypatch, "traces", "runs", "--db", db, "--json")
    assert code == 0 and json.loads(out)[0]["config"]["source"].endswith("good.jsonl")


def test_real_subprocess_exit_code(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text(GOOD + "\n{oops\n")
    exe = shutil.which("agentrm")
    cmd = [exe] if exe else [sys.executable, "-m", "agentrm.cli.main"]
    proc = subprocess.run([*cmd, "traces", "import", str(path), "--db", f"sqlite:///{tmp_path / 'x.db'}"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and f"{path}:2:" in proc.stderr


def test_doctor_json_reports_every_component(capsys, monkeypatch, db):
    code, out, _ = run_cli(capsys, monkeypatch, "doctor", "--db", db, "--json", "--skip-vllm")
    rows = {r["name"]: r for r in json.loads(out)}
    assert set(rows) == {"docker", "database", "torch", "model"}
    assert rows["database"]["ok"] and "cli.db" in rows["database"]["detail"]
    assert code == (0 if all(r["ok"] for r in rows.values() if r["required"]) else 3)
    code, out, _ = run_cli(capsys, monkeypatch, "doctor", "--db", "postgresql+psycopg://x:y@127.0.0.1:1/none",
                           "--json", "--skip-vllm")
    rows = {r["name"]: r for r in json.loads(out)}
    assert code == 3 and not rows["database"]["ok"] and rows["database"]["fix"]


def test_unusable_databases_and_outputs_fail_in_one_line(tmp_path, capsys, monkeypatch, db):
    code, _, err = run_cli(capsys, monkeypatch, "traces", "list", "--db",
                           f"sqlite:///{tmp_path / 'no' / 'such' / 'dir.db'}")
    assert code == 2 and "no trace store at" in err and "\n" not in err.strip()  # read-only: never created
    code, _, err = run_cli(capsys, monkeypatch, "traces", "list", "--db",
                           "postgresql+psycopg://x:y@127.0.0.1:1/none")
    assert code == 3 and "cannot reach database" in err and "\n" not in err.strip()
    run_cli(capsys, monkeypatch, "traces", "import", str(DATA / "good.jsonl"), "--db", db)
    code, _, err = run_cli(capsys, monkeypatch, "traces", "export", "-o",
                           str(tmp_path / "missing" / "out.jsonl"), "--db", db)
    assert code == 2 and "cannot write" in err
