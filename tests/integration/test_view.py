"""`agentrm view` over HTTP: every page on a real SQLite store (and PostgreSQL), numbers checked
against an independent computation from the data written, escaping of hostile data, read-only
behaviour, and the command itself serving on 127.0.0.1."""

from __future__ import annotations

import hashlib
import html
import re
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
from starlette.testclient import TestClient

from agentrm.errors import InputError
from agentrm.traces import open_store
from agentrm.traces.views import (
    count_trajectories,
    histogram,
    open_readonly,
    run_distributions,
    trajectory_page,
)
from agentrm.types import Advantage, ExitStatus, Score, ScoreLevel, ToolResult, Trajectory, Turn
from agentrm.view.app import create_app

HOSTILE = "<script>alert(1)</script> [red]markup[/red] & \"quotes\""
PATCH = "diff --git a/calc.py b/calc.py\n--- a/calc.py\n+++ b/calc.py\n@@ -1,2 +1,2 @@\n def add(a, b):\n-    return a - b\n+    return a + b\n"
GOLD = PATCH.replace("a + b", "b + a")
AGENT_RUN, GOLD_RUN = "agent run", "gold-run"
TRAJ = f"{AGENT_RUN}/odd id #1?&x"  # ids with spaces, slashes, ?, #, & must survive links


def _turns(n: int, hostile: bool = False) -> list[Turn]:
    out = []
    for k in range(n):
        call = {"id": f"c{k}", "type": "function",
                "function": {"name": "bash", "arguments": f'{{"command": "python -m pytest -k case{k}"}}'}}
        obs = [{"role": "user", "content": HOSTILE if hostile and k == 0 else f"observation {k}"}]
        out.append(Turn(k, obs, {"role": "assistant", "content": f"I will test step {k}", "tool_calls": [call]},
                        tool_results=[ToolResult(f"c{k}", f"output of case{k}\n", exit_code=k % 2,
                                                 duration_s=0.25)], duration_s=1.0 + k))
    return out


def build_store(url: str) -> dict:
    """Two runs on shared tasks; scores with reasons, GiGPO advantages with parts, a SWE-bench
    style patch with test results, and a gold prediction in its own run. Returns what a page
    must show, computed here independently of the viewer."""
    store = open_store(url)
    store.begin_run({}, AGENT_RUN)
    store.begin_run({}, GOLD_RUN, kind="swe-bench")
    rewards = {}
    for i in range(7):
        tid = TRAJ if i == 0 else f"{AGENT_RUN}/t{i}"
        status = ExitStatus.SUBMITTED if i % 3 else ExitStatus.TURN_LIMIT
        reward = None if i == 6 else float(i % 2)
        meta = {"swebench": {"instance_id": f"task-{i % 3}", "model_name_or_path": "agent"},
                "model_patch": PATCH} if i == 0 else {}
        store.begin_trajectory(Trajectory(tid, f"task-{i % 3}", f"task-{i % 3}", turns=_turns(3, i == 0),
                                          run_id=AGENT_RUN, metadata=meta, policy="scripted:x"))
        store.end_trajectory(tid, status, reward)
        rewards[tid] = (status.value, reward)
        store.write_scores([Score("prm", tid, None if k == 2 and i == 1 else 0.25 * (k + i % 2),
                                  turn_index=k, details={"reason": f"step {k} of {i} checks out"})
                            for k in range(3)])
        store.write_advantages([Advantage("gigpo", tid, k, 0.5 - 0.25 * k + 0.1 * i,
                                          details={"episode": 0.1 * i, "step": 0.5 - 0.25 * k,
                                                   "config": {"omega": 1.0}}) for k in range(3)])
    tests = {"status": "unresolved", "resolution": "PARTIAL", "patch_applied": True, "duration_s": 3.5,
             "tests_status": {"FAIL_TO_PASS": {"success": ["tests/test_calc.py::test_add"], "failure": []},
                              "PASS_TO_PASS": {"success": [], "failure": ["tests/test_calc.py::test_sub"]}}}
    store.write_scores([Score("tests", TRAJ, 0.0, level=ScoreLevel.TRAJECTORY, details=tests)])
    for j in range(2):  # the gold run: tasks 0 and 1 only, always resolved
        gid = f"{GOLD_RUN}/task-{j}"
        store.begin_trajectory(Trajectory(gid, f"task-{j}", f"task-{j}", run_id=GOLD_RUN, metadata={
            "swebench": {"model_name_or_path": "gold"}, "model_patch": GOLD if j == 0 else PATCH}))
        store.end_trajectory(gid, ExitStatus.IMPORTED, 1.0)
        rewards[gid] = ("imported", 1.0)
    store.close()
    return {"rewards": rewards}


@pytest.fixture
def site(tmp_path):
    url = f"sqlite:///{tmp_path / 'view.db'}"
    truth = build_store(url)
    store = open_readonly(url)
    with TestClient(create_app(store), base_url="http://127.0.0.1") as client:
        yield client, truth, tmp_path / "view.db"
    store.close()


def text_of(page: str) -> str:
    """The visible text of a page, tags dropped and entities decoded (what a reader sees)."""
    return html.unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", page)))


def test_runs_page_summarises_each_run(site):
    client, truth, _ = site
    page = client.get("/")
    assert page.status_code == 200
    rows = re.findall(r"<tr>(.*?)</tr>", page.text, re.S)
    agent = text_of(next(r for r in rows if "agent run" in r))
    mine = [v for k, v in truth["rewards"].items() if k.startswith(AGENT_RUN)]
    known = [r for _, r in mine if r is not None]
    assert f" {len(mine)} " in agent
    assert f"{sum(known) / len(known):.3g}" in agent  # mean of known rewards (NULL ignored)
    assert f"{100 * sum(r >= 1 for r in known) / len(known):.1f}%" in agent
    for status in ("submitted", "turn_limit"):
        assert f"{status} {sum(s == status for s, _ in mine)}" in agent


def test_run_page_coverage_and_histograms(site):
    client, truth, _ = site
    page = client.get(f"/runs/{quote(AGENT_RUN)}")
    assert page.status_code == 200
    cov = text_of(re.search(r'id="coverage".*?</table>', page.text, re.S).group(0))
    # prm: 7 trajectories scored, 21 rows, one abstention
    assert re.search(r"prm turn 7 100\.0% 21 1 ", cov), cov
    assert re.search(r"tests trajectory 1 14\.3% 1 0 ", cov), cov
    figures = re.findall(r"<figure.*?</figure>", page.text, re.S)
    titles = [text_of(f).split(" n=")[0].strip() for f in figures]
    assert titles == ["outcome reward", "prm (turn scores)", "tests (trajectory scores)", "gigpo advantages"]
    for fig, n in zip(figures, [6, 20, 1, 21], strict=True):
        assert f"n={n}" in text_of(fig)
        counts = [int(c) for c in re.findall(r"<title>[^<]*: (\d+)</title>", fig)]
        assert sum(counts) == n


def test_histogram_counts_match_an_independent_binning(tmp_path):
    url = f"sqlite:///{tmp_path / 'h.db'}"
    build_store(url)
    store = open_readonly(url)
    from agentrm.traces.schema import advantages

    values = [a.value for a in store.get_advantages()]
    got = histogram(store, advantages.c.value, [], bins=5)
    lo, hi = min(values), max(values)
    want = [0] * 5
    for v in values:
        want[min(int((v - lo) / ((hi - lo) / 5)), 4)] += 1
    assert (got["lo"], got["hi"], got["n"], got["counts"]) == (lo, hi, len(values), want)
    store.close()


def _ids(page: str) -> list[str]:
    return [html.unescape(m) for m in re.findall(r'<td class="id"><a href="/t/[^"]*">([^<]*)</a>', page)]


def test_list_filters_and_pages(site):
    client, truth, _ = site
    every = client.get("/trajectories?limit=200").text
    assert _ids(every) == list(truth["rewards"])
    assert "9 match" in text_of(every)
    subs = client.get("/trajectories", params={"run": AGENT_RUN, "status": "submitted"}).text
    assert _ids(subs) == [k for k, (s, _) in truth["rewards"].items()
                          if k.startswith(AGENT_RUN) and s == "submitted"]
    # min score over the outcome reward; with a scorer, over the min of its turn scores
    good = client.get("/trajectories", params={"min": "1"}).text
    assert _ids(good) == [k for k, (_, r) in truth["rewards"].items() if r is not None and r >= 1]
    prm = client.get("/trajectories", params={"scorer": "prm", "min": "0.25"}).text
    assert _ids(prm) == [TRAJ if i == 0 else f"{AGENT_RUN}/t{i}" for i in range(7) if i % 2]
    assert "match" not in text_of(prm).split("Filter")[0]  # no (costly) count with score filters
    # paging: keyset cursor, every row exactly once, in store order
    seen, url = [], "/trajectories?limit=2"
    while url:
        page = client.get(url).text
        seen += _ids(page)
        nxt = re.search(r'id="next-page" href="([^"]+)"', page)
        url = html.unescape(nxt.group(1)) if nxt else None
    assert seen == list(truth["rewards"])
    assert "No trajectory matches" in client.get("/trajectories", params={"task": "nope"}).text


def test_bounded_queries_give_the_same_answers_in_pieces(site):
    client, truth, _ = site
    store = client.app.state.viewer.store
    # a score filter searches a window of trajectories per request; following the cursor
    # finds exactly what one unbounded search finds
    whole = trajectory_page(store, scorer="prm", min_score=0.25, window=10**6)["rows"]
    seen, after, requests = [], 0, 0
    while after is not None:
        got = trajectory_page(store, scorer="prm", min_score=0.25, after=after, limit=50, window=2)
        assert got["searched_to"] is None or len(got["rows"]) <= 2
        seen += got["rows"]
        after, requests = got["next"], requests + 1
    assert [r["id"] for r in seen] == [r["id"] for r in whole] and requests >= 4
    # counts stop at the cap; distributions of a large run come from an even sample
    assert count_trajectories(store) == 9 and count_trajectories(store, cap=3) == 4
    dist = run_distributions(store, AGENT_RUN, sample_size=3)
    assert dist["sampled"] == 3 and dist["total"] == 7
    prm = next(c for c in dist["coverage"] if c["scorer"] == "prm")
    assert prm["trajectories"] == 3 and prm["rows"] == 9
    assert dist["histograms"][0]["n"] == 6  # the outcome reward: the whole run (one unknown)
    assert run_distributions(store, AGENT_RUN)["sampled"] is None


def test_trajectory_page_shows_turns_scores_advantages_patch_tests_and_gold(site):
    client, _, _ = site
    page = client.get("/t/" + quote(TRAJ))
    assert page.status_code == 200, page.text
    text = text_of(page.text)
    assert TRAJ in text
    for k in range(3):
        turn = text_of(re.search(rf'id="turn-{k}".*?</section>', page.text, re.S).group(0))
        assert f"python -m pytest -k case{k}" in turn and f"output of case{k}" in turn
        assert f"exit {k % 2}" in turn
        assert f"step {k} of 0 checks out" in turn  # the score's reason
        assert f"gigpo {0.5 - 0.25 * k:.3g}" in turn and f"step={0.5 - 0.25 * k:.3g}" in turn
        assert "omega" not in turn  # conventions are not parts
    # the patch as a diff next to the test results and the gold patch
    assert '<div class="d-add">+    return a + b</div>' in page.text
    assert '<div class="d-del">-    return a - b</div>' in page.text
    assert '<div class="d-add">+    return b + a</div>' in page.text  # gold, from the gold run
    tests = text_of(re.search(r'id="tests".*?</table>', page.text, re.S).group(0))
    assert "FAIL_TO_PASS tests/test_calc.py::test_add passed" in tests
    assert "PASS_TO_PASS tests/test_calc.py::test_sub FAILED" in tests
    assert "unresolved" in tests and "patch applied" in tests


def test_an_evaluated_prediction_without_turns_shows_its_patch(site):
    client, _, _ = site
    page = client.get(f"/t/{GOLD_RUN}/task-0")
    assert page.status_code == 200
    assert '<div class="d-add">+    return b + a</div>' in page.text
    assert "No turns stored (an evaluated prediction" in text_of(page.text)


def test_hostile_data_is_escaped(site):
    client, _, _ = site
    page = client.get("/t/" + quote(TRAJ)).text
    assert "<script>alert(1)" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt; [red]markup[/red] &amp; &#34;quotes&#34;" in page
    # links to odd ids are percent-encoded and lead back to the same trajectory
    link = re.search(r'<a href="(/t/[^"]+)">' + re.escape(html.escape(TRAJ)), client.get("/trajectories").text)
    assert client.get(html.unescape(link.group(1))).status_code == 200


def test_neighbours_move_between_trajectories(site):
    client, _, _ = site
    page = client.get(f"/t/{quote(AGENT_RUN)}/t1").text
    prev = re.search(r'id="prev-traj" href="([^"]+)"', page).group(1)
    nxt = re.search(r'id="next-traj" href="([^"]+)"', page).group(1)
    assert TRAJ in text_of(client.get(html.unescape(prev)).text)
    assert f"{AGENT_RUN}/t2" in text_of(client.get(html.unescape(nxt)).text)


def test_compare_runs_on_shared_tasks(site):
    client, truth, _ = site
    page = client.get("/compare", params={"a": AGENT_RUN, "b": GOLD_RUN})
    assert page.status_code == 200
    by_task: dict[str, list[float]] = {}
    for i in range(7):
        tid = TRAJ if i == 0 else f"{AGENT_RUN}/t{i}"
        if truth["rewards"][tid][1] is not None:
            by_task.setdefault(f"task-{i % 3}", []).append(truth["rewards"][tid][1])
    shared = ["task-0", "task-1"]
    assert re.search(r'id="shared">2<', page.text)
    rows = [text_of(r) for r in re.findall(r"<tr>(.*?)</tr>", page.text.split('id="comparison"')[1], re.S)]
    for task, row in zip(shared, rows[1:], strict=True):
        mean_a = sum(by_task[task]) / len(by_task[task])
        assert row.split()[0] == task and f"{mean_a:.3g}" in row and f"{1 - mean_a:.3g}" in row
    assert client.get("/compare", params={"a": "nope", "b": GOLD_RUN}).status_code == 404


def test_errors_are_pages_not_tracebacks(site):
    client, _, _ = site
    missing = client.get("/t/does-not-exist")
    assert missing.status_code == 404 and "unknown trajectory" in missing.text
    assert client.get("/runs/nope").status_code == 404
    bad = client.get("/trajectories", params={"min": "abc"})
    assert bad.status_code == 400 and "min must be a number" in text_of(bad.text)
    assert client.get("/trajectories", params={"status": "weird"}).status_code == 400
    assert "view.css" in client.get("/").text and client.get("/static/view.css").status_code == 200


def test_only_loopback_host_names_are_served(site):
    client, _, _ = site
    assert client.get("/", headers={"host": "localhost:7700"}).status_code == 200
    rebound = client.get("/t/" + quote(TRAJ), headers={"host": "attacker.example:7700"})
    assert rebound.status_code == 400 and "output of case" not in rebound.text


def test_viewer_is_read_only(site, tmp_path):
    client, _, db = site
    before = hashlib.sha256(db.read_bytes()).hexdigest()
    for url in ["/", f"/runs/{quote(AGENT_RUN)}", "/trajectories", "/t/" + quote(TRAJ),
                f"/compare?a={quote(AGENT_RUN)}&b={GOLD_RUN}"]:
        assert client.get(url).status_code == 200
    assert hashlib.sha256(db.read_bytes()).hexdigest() == before
    store = client.app.state.viewer.store
    with pytest.raises(Exception, match="readonly"):
        store.begin_run({}, "sneaky")
    with pytest.raises(InputError, match="no trace store"):
        open_readonly(f"sqlite:///{tmp_path / 'absent.db'}")
    assert not (tmp_path / "absent.db").exists()


def test_a_store_at_another_schema_revision_is_refused_not_migrated(tmp_path):
    import sqlite3

    from agentrm.errors import PrerequisiteError

    path = tmp_path / "old.db"
    build_store(f"sqlite:///{path}")
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE alembic_version SET version_num = '0000_older'")
    with pytest.raises(PrerequisiteError, match="0000_older.*agentrm traces runs --db"):
        open_readonly(f"sqlite:///{path}")
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT version_num FROM alembic_version").fetchone()[0] == "0000_older"


@pytest.mark.postgres
def test_postgres_store_gives_the_same_pages(fresh_postgres_url, tmp_path):
    lite = f"sqlite:///{tmp_path / 'same.db'}"
    build_store(lite), build_store(fresh_postgres_url)
    pages = ["/", f"/runs/{quote(AGENT_RUN)}", "/trajectories?limit=3", "/t/" + quote(TRAJ),
             f"/compare?a={quote(AGENT_RUN)}&b={GOLD_RUN}"]
    shown = []
    for url in (lite, fresh_postgres_url):
        store = open_readonly(url)
        with TestClient(create_app(store), base_url="http://127.0.0.1") as client:
            # times differ between the two stores; everything else must agree
            shown.append([re.sub(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d|\d+\.\d+ s|\d+ ms|sqlite:\S+|postgresql\S+", "",
                                 text_of(client.get(p).text)) for p in pages])
        store.close()
    for a, b in zip(*shown, strict=True):
        assert a == b


def test_agentrm_view_serves_on_loopback(tmp_path):
    url = f"sqlite:///{tmp_path / 'cmd.db'}"
    build_store(url)
    proc = subprocess.Popen([sys.executable, "-m", "agentrm.cli.main", "view", "--db", url, "--port", "0"],
                            stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, cwd=tmp_path)
    try:
        line = proc.stderr.readline()
        address = re.search(r"http://127\.0\.0\.1:(\d+)/", line)
        assert address, line
        deadline = time.monotonic() + 60
        while True:
            try:
                got = httpx.get(address.group(0) + "t/" + quote(TRAJ), timeout=30)
                break
            except httpx.ConnectError:
                assert time.monotonic() < deadline
                time.sleep(0.2)
        assert got.status_code == 200 and "output of case2" in got.text
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_agentrm_view_on_a_missing_store_is_one_line_and_creates_nothing(cli, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = cli("view")
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "no trace store" in result.stderr
    assert not Path(tmp_path / "agentrm.db").exists()
