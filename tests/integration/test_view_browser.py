"""`agentrm view` in a real headless Chromium (Debian's package, driven by Playwright): pages load,
filters and paging work by clicking, the diff renders beside the gold patch, hostile data does
not run. Screenshots are taken of every page and checked by content (the DOM), not by pixels."""

from __future__ import annotations

from urllib.parse import parse_qs, quote, urlparse

import pytest
from test_view import AGENT_RUN, GOLD_RUN, TRAJ, build_store

from agentrm.traces.views import open_readonly
from agentrm.view.app import create_app

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """The viewer on a free 127.0.0.1 port in a thread of this process; its base URL."""
    path = tmp_path_factory.mktemp("view") / "browser.db"
    truth = build_store(f"sqlite:///{path}")
    store = open_readonly(f"sqlite:///{path}")
    from conftest import serve_asgi

    url, srv, thread = serve_asgi(create_app(store))
    yield url, truth
    srv.should_exit = True
    thread.join(timeout=30)
    store.close()


@pytest.fixture
def page(browser, server):
    context = browser.new_context(viewport={"width": 1300, "height": 900})
    pg = context.new_page()
    pg.set_default_timeout(60_000)  # a loaded CI machine
    dialogs: list[str] = []
    pg.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    pg.dialogs = dialogs
    yield pg
    context.close()


def shot(pg, tmp_path, name: str) -> None:
    """A full-page screenshot (kept with the test's files) that must show something."""
    data = pg.screenshot(path=str(tmp_path / f"{name}.png"), full_page=True)
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5_000


def test_runs_page_and_run_summary(page, server, tmp_path):
    base, truth = server
    page.goto(base + "/")
    assert page.title() == "runs · agentrm"
    assert page.locator("#runs tbody tr").count() == 2
    shot(page, tmp_path, "runs")
    page.get_by_role("link", name=AGENT_RUN, exact=True).click()
    page.wait_for_url(f"**/runs/{quote(AGENT_RUN)}")
    assert page.locator("h1").inner_text() == f"Run {AGENT_RUN}"
    assert page.locator("#histograms figure").count() == 4
    assert page.locator("#histograms svg rect").count() > 4
    assert page.locator("#coverage tbody tr").count() == 2
    shot(page, tmp_path, "run")


def test_filters_and_paging_by_clicking(page, server, tmp_path):
    base, truth = server
    page.goto(base + "/trajectories")
    assert page.locator("#total").inner_text() == f"{len(truth['rewards'])} match"
    page.locator("input[name=run]").fill(AGENT_RUN)
    page.locator("select[name=status]").select_option("submitted")
    page.get_by_role("button", name="Filter").click()
    page.wait_for_url("**status=submitted**")
    want = [k for k, (s, _) in truth["rewards"].items() if k.startswith(AGENT_RUN) and s == "submitted"]
    assert page.locator("#trajectories tbody tr td.id a[href^='/t/']").all_inner_texts() == want
    assert set(page.locator("#trajectories .st").all_inner_texts()) == {"submitted"}
    shot(page, tmp_path, "filtered")
    # a scorer and a minimum: the score column appears, every value passes the filter
    page.locator("input[name=scorer]").fill("prm")
    page.locator("input[name=min]").fill("0.25")
    page.get_by_role("button", name="Filter").click()
    page.wait_for_url("**scorer=prm**")
    values = [float(v) for v in page.locator("#trajectories tbody tr td:nth-child(7)").all_inner_texts()]
    assert values and all(v >= 0.25 for v in values)
    # paging: two per page, follow "next" to the end; every trajectory once, in order
    page.locator("select[name=limit]").select_option("25")
    page.get_by_role("button", name="Filter").click()
    page.wait_for_url("**limit=25**")
    page.goto(base + "/trajectories?limit=2")
    seen = []
    while True:
        seen += page.locator("#trajectories tbody tr td.id a[href^='/t/']").all_inner_texts()
        nxt = page.locator("#next-page")
        if nxt.count() == 0:
            break
        nxt.click()
        page.wait_for_load_state()
    assert seen == list(truth["rewards"])
    assert parse_qs(urlparse(page.url).query)["limit"] == ["2"]


def test_trajectory_page_renders_the_diff_beside_gold_and_tests(page, server, tmp_path):
    base, _ = server
    page.goto(base + "/trajectories")
    page.get_by_role("link", name=TRAJ, exact=True).click()
    page.wait_for_load_state()
    assert page.locator("#traj-id").inner_text() == TRAJ
    diffs = page.locator(".diff")
    assert diffs.count() == 2
    mine, gold = diffs.nth(0), diffs.nth(1)
    assert mine.locator(".d-add").inner_text() == "+    return a + b"
    assert mine.locator(".d-del").inner_text() == "-    return a - b"
    assert gold.locator(".d-add").inner_text() == "+    return b + a"
    assert mine.locator(".d-hunk").is_visible()
    # side by side on a wide window: same row, gold to the right
    a, b = mine.bounding_box(), gold.bounding_box()
    assert abs(a["y"] - b["y"]) < 2 and b["x"] > a["x"] + a["width"] - 1
    # added and removed lines are coloured differently from context
    colour = lambda loc: loc.evaluate("e => getComputedStyle(e).backgroundColor")  # noqa: E731
    assert len({colour(mine.locator(".d-add")), colour(mine.locator(".d-del")),
                colour(mine.locator(".d-ctx").first)}) == 3
    assert page.locator("#tests tr.fail").inner_text().split("\t")[-1].strip() == "FAILED"
    assert page.locator("section.turn").count() == 3
    assert "step 2 of 0 checks out" in page.locator("#turn-2 .turn-side").inner_text()
    # the hostile observation is shown as text and never runs
    assert "<script>alert(1)</script>" in page.locator("#turn-0").inner_text()
    assert page.dialogs == []
    shot(page, tmp_path, "trajectory")
    page.locator("#next-traj").click()
    page.wait_for_load_state()
    assert page.locator("#traj-id").inner_text() == f"{AGENT_RUN}/t1"


def test_compare_form(page, server, tmp_path):
    base, _ = server
    page.goto(base + f"/runs/{quote(AGENT_RUN)}")
    page.locator("select[name=b]").select_option(GOLD_RUN)
    page.get_by_role("button", name="Compare on shared tasks").click()
    page.wait_for_url("**/compare?**")
    assert page.locator("#shared").inner_text() == "2"
    assert page.locator("#comparison tbody tr td.id").all_inner_texts() == ["task-0", "task-1"]
    shot(page, tmp_path, "compare")
