"""The HTML replay page in a real headless Chromium: only the controls stay on screen while
scrolling (the facts and the task scroll away, so the sticky bar is a thin strip, not half the
window), the first/last buttons carry text that every font has, and stepping works."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit"))
from test_replay_view import demo_scores, load_demo  # noqa: E402

from agentrm.replay.html import write_html  # noqa: E402
from agentrm.replay.view import build_view  # noqa: E402

pytestmark = pytest.mark.browser


def test_sticky_bar_is_thin_and_buttons_have_text(browser, tmp_path):
    traj = load_demo()
    page_path = tmp_path / "replay.html"
    write_html(build_view(traj, *demo_scores(traj.id)), page_path)
    page = browser.new_page(viewport={"width": 1280, "height": 720})
    try:
        page.goto(page_path.as_uri())
        assert page.inner_text("#first") == "« first" and page.inner_text("#last") == "last »"
        page.check("#all")  # every turn shown: a page long enough to scroll
        page.mouse.wheel(0, 5000)
        page.wait_for_function("window.scrollY > 500")
        header = page.eval_on_selector("header", "e => e.getBoundingClientRect().toJSON()")
        summary = page.eval_on_selector("section.summary", "e => e.getBoundingClientRect().toJSON()")
        assert header["top"] == 0 and header["height"] < 0.12 * 720, header  # stays, and is thin
        assert summary["bottom"] <= 0  # the facts scrolled away
        page.uncheck("#all")
        page.click("#last")
        assert page.inner_text("#pos") == "turn 4/4"
        page.click("#first")
        assert page.inner_text("#pos") == "turn 1/4"
    finally:
        page.close()
