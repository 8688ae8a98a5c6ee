"""The HTML page's inline script, run by node against the page's own element tree.

There is no browser on the test machines, so a small DOM shim (tests/data/replay/dom_shim.js)
stands in for one; the page and its script are the real export.
"""

from __future__ import annotations

import html.parser
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_replay_view import DATA, load_demo  # noqa: E402

from agentrm.replay.html import render_html  # noqa: E402
from agentrm.replay.view import build_view  # noqa: E402

VOID = {"meta", "input", "br", "img", "link", "hr"}


def element_tree(page: str) -> tuple[dict, str]:
    """The <body> element as nested dicts, and the text of its last inline script."""

    class Build(html.parser.HTMLParser):
        def __init__(self):
            super().__init__(convert_charrefs=True)
            self.root = {"tag": "document", "attrs": {}, "children": []}
            self.stack = [self.root]
            self.scripts: list[str] = []

        def handle_starttag(self, tag, attrs):
            node = {"tag": tag, "attrs": {k: v or "" for k, v in attrs}, "children": [], "text": ""}
            self.stack[-1]["children"].append(node)
            if tag not in VOID:
                self.stack.append(node)

        def handle_endtag(self, tag):
            while len(self.stack) > 1:
                if self.stack.pop()["tag"] == tag:
                    break

        def handle_data(self, data):
            node = self.stack[-1]
            node["text"] = node.get("text", "") + data
            if node["tag"] == "script" and "type" not in node["attrs"]:
                self.scripts.append(data)

    b = Build()
    b.feed(page)
    html_node = next(c for c in b.root["children"] if c["tag"] == "html")
    body = next(c for c in html_node["children"] if c["tag"] == "body")
    return body, b.scripts[-1]


def test_page_script_steps_and_plays_with_recorded_timing(tmp_path):
    if not shutil.which("node"):
        pytest.skip("node is not installed")
    page = render_html(build_view(load_demo()))
    body, script = element_tree(page)
    spec = tmp_path / "page.json"
    spec.write_text(json.dumps({"tree": body, "script": script}))
    proc = subprocess.run(["node", str(DATA / "dom_shim.js"), str(spec)], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["initial"] == 0 and out["pos"] == "turn 1/4"
    assert out["steps"] == [1, 2, 1, 3, 3, 0]
    assert out["playingLabel"] == "pause" and out["finalLabel"] == "play"
    assert out["seen"] == [0, 1, 2, 3] and out["end"] == 3
    # Output was streamed chunk by chunk into the call's box, then the formatted view returned.
    assert out["streams"]["out-0-0"] == "a.py\nb.py\nREADME.md\n"
    assert out["leftoverStreams"] == 0 and out["hiddenAfter"] == 0
    # Recorded timeline 0 → 6.5 s at speed 4 (no pause over the 2 s idle cap): ~1.6 s.
    assert out["elapsedMs"] == pytest.approx(6.5 / 4 * 1000 + 50, abs=60)
