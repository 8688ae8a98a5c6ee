"""Regenerate agentrm/evals/swebench/data/instances.jsonl from the bundled source trees.

Each instance is a real bug in a bundled repository: the gold patch is the fix (source files
only), the test patch adds the tests that expose it. FAIL_TO_PASS and PASS_TO_PASS are measured
here by running pytest on the host before and after the gold patch, so the lists cannot drift
from the code. Run: python tests/data/swebench/make_bundled.py
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path

from agentrm.evals.swebench.repos import BUNDLED_REPOS, DATA, deterministic_repo, git

CREATED_AT = "2024-01-01T00:00:00Z"

INSTANCES = [
    dict(id="agentrm__textkit-1", repo="textkit",
         statement="slugify leaves runs of separators and separators at the ends\n\n"
                   "`slugify(\"Hello,  World!\")` returns `\"hello---world-\"`. A slug should never "
                   "contain two separators in a row, nor start or end with one: the expected result "
                   "is `\"hello-world\"`. The same holds for a custom `sep`.",
         fix=[("textkit/slug.py", 'return re.sub(r"[^a-z0-9]", sep, text.lower())',
               'return re.sub(r"[^a-z0-9]+", sep, text.lower()).strip(sep)')],
         tests=[("tests/test_slug.py", '''

def test_runs_of_separators_collapse():
    assert slugify("Hello,  World!") == "hello-world"


def test_no_separator_at_the_ends():
    assert slugify("  --Hi there--  ", sep="_") == "hi_there"
''')]),
    dict(id="agentrm__textkit-2", repo="textkit",
         statement="wrap() produces lines one character longer than the width\n\n"
                   "`wrap(\"ab cd ef\", 4)` returns `[\"ab cd\", \"ef\"]`, but `\"ab cd\"` has 5 "
                   "characters. Lines must never be longer than `width` (unless a single word is).",
         fix=[("textkit/wrap.py", "if current and len(current) + len(word) > width:",
               "if current and len(current) + 1 + len(word) > width:")],
         tests=[("tests/test_wrap.py", '''

def test_lines_never_exceed_width():
    assert wrap("ab cd ef", 4) == ["ab", "cd", "ef"]


def test_exact_fit_stays_on_one_line():
    assert wrap("ab cd", 5) == ["ab cd"]
''')]),
    dict(id="agentrm__textkit-3", repo="textkit",
         statement="title_case lower-cases a small word at the start or end of a title\n\n"
                   "`title_case(\"the lord of the rings\")` gives `\"the Lord of the Rings\"`. The "
                   "first and the last word of a title are always capitalised, even when they are "
                   "small words like \"the\" or \"on\".",
         fix=[("textkit/case.py", "    for word in words:\n        if word.lower() in SMALL_WORDS:",
               "    for i, word in enumerate(words):\n"
               "        if word.lower() in SMALL_WORDS and 0 < i < len(words) - 1:")],
         tests=[("tests/test_case.py", '''

def test_first_word_is_capitalised():
    assert title_case("the lord of the rings") == "The Lord of the Rings"


def test_last_word_is_capitalised():
    assert title_case("something to hold on") == "Something to Hold On"
''')]),
    dict(id="agentrm__ministats-1", repo="ministats",
         statement="median() is wrong for an even number of values\n\n"
                   "`median([4, 1, 3, 2])` returns `3`; the median of an even-length sample is the "
                   "mean of the two middle values, `2.5`.",
         fix=[("ministats/stats.py", "    ordered = sorted(values)\n    return ordered[len(ordered) // 2]",
               "    ordered = sorted(values)\n    mid = len(ordered) // 2\n"
               "    if len(ordered) % 2:\n        return ordered[mid]\n"
               "    return (ordered[mid - 1] + ordered[mid]) / 2")],
         tests=[("tests/test_stats.py", '''

def test_median_even_length():
    assert median([4, 1, 3, 2]) == 2.5


def test_median_two_values():
    assert median([10, 20]) == 15
''')]),
    dict(id="agentrm__ministats-2", repo="ministats",
         statement="parse_duration ignores all but the last unit\n\n"
                   "`parse_duration(\"1h30m\")` returns `1800` instead of `5400`, and "
                   "`parse_duration(\"1m1s\")` returns `1` instead of `61`.",
         fix=[("ministats/units.py", "        total = int(number) * _SECONDS[unit]",
               "        total += int(number) * _SECONDS[unit]")],
         tests=[("tests/test_units.py", '''

def test_hours_and_minutes():
    assert parse_duration("1h30m") == 5400


def test_minutes_and_seconds():
    assert parse_duration("1m1s") == 61
''')]),
    dict(id="agentrm__ministats-3", repo="ministats",
         statement="histogram drops the largest value\n\n"
                   "`histogram([0, 1, 2, 3, 4], 2)` returns `[2, 2]`: the value 4 (the maximum) is "
                   "not counted. The docstring says the last bin is closed, so the result should be "
                   "`[2, 3]` and the counts should add up to the number of values.",
         fix=[("ministats/stats.py", "        index = int((value - lo) / width)\n",
               "        index = int((value - lo) / width)\n        if value == hi:\n"
               "            index = bins - 1\n")],
         tests=[("tests/test_stats.py", '''

def test_histogram_counts_the_maximum():
    assert histogram([0, 1, 2, 3, 4], 2) == [2, 3]


def test_histogram_counts_add_up():
    values = [5, 7, 7, 9, 12, 12]
    assert sum(histogram(values, 3)) == len(values)
''')]),
    dict(id="agentrm__inventory-1", repo="inventory",
         statement="Inventory.remove lets stock go negative\n\n"
                   "Removing more of an item than the inventory holds silently leaves a negative "
                   "count (`Inventory({\"apple\": 1}).remove(\"apple\", 3)` then `count` gives `-2`). "
                   "It should raise `OutOfStock` and leave the stock unchanged.",
         fix=[("inventory/core.py", "        have = self._stock.get(name, 0)\n",
               "        have = self._stock.get(name, 0)\n        if have < qty:\n"
               "            raise OutOfStock(f\"only {have} of {name!r} in stock, cannot remove {qty}\")\n")],
         tests=[("tests/test_core.py", '''

def test_remove_more_than_stock_raises():
    from inventory import OutOfStock

    inv = Inventory({"apple": 1})
    with pytest.raises(OutOfStock):
        inv.remove("apple", 3)
    assert inv.count("apple") == 1


def test_remove_unknown_item_raises():
    from inventory import OutOfStock

    with pytest.raises(OutOfStock):
        Inventory().remove("pear")
''')]),
    dict(id="agentrm__inventory-2", repo="inventory",
         statement="Inventory.merge loses items that only the other inventory has\n\n"
                   "`Inventory({\"apple\": 1}).merge(Inventory({\"pear\": 2}))` has no pears. The "
                   "merged inventory should hold every item of both.",
         fix=[("inventory/core.py", "            if name in result._stock:\n                result._stock[name] += qty",
               "            result._stock[name] = result._stock.get(name, 0) + qty")],
         tests=[("tests/test_core.py", '''

def test_merge_keeps_items_of_the_other():
    merged = Inventory({"apple": 1}).merge(Inventory({"pear": 2}))
    assert merged.items() == {"apple": 1, "pear": 2}


def test_merge_leaves_inputs_alone():
    a, b = Inventory({"apple": 1}), Inventory({"apple": 2, "pear": 1})
    a.merge(b)
    assert a.items() == {"apple": 1} and b.items() == {"apple": 2, "pear": 1}
''')]),
]


def edit(root: Path, rel: str, old: str | None, new: str) -> None:
    path = root / rel
    text = path.read_text()
    if old is None:
        path.write_text(text + new)
        return
    if text.count(old) != 1:
        sys.exit(f"{rel}: edit anchor not found exactly once: {old!r}")
    path.write_text(text.replace(old, new))


def pytest_statuses(repo: Path, files: list[str]) -> dict[str, str]:
    with tempfile.TemporaryDirectory() as tmp:
        junit = Path(tmp) / "junit.xml"
        subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                        "-o", "junit_family=xunit1", f"--junitxml={junit}", *files],
                       cwd=repo, capture_output=True, env={"PYTHONPATH": str(repo), "PATH": "/usr/bin:/bin"})
        out = {}
        for case in ET.parse(junit).getroot().iter("testcase"):
            test_id = f"{case.get('file')}::{case.get('name')}"
            failed = case.find("failure") is not None or case.find("error") is not None
            out[test_id] = "FAILED" if failed else "PASSED"
        return out


def make_instance(spec: dict, repo: Path, base_commit: str) -> dict:
    git("checkout", "-q", "-f", base_commit, cwd=repo)
    git("clean", "-qfdx", cwd=repo)
    for rel, addition in spec["tests"]:
        edit(repo, rel, None, addition)
    test_patch = git("diff", cwd=repo)
    test_files = [rel for rel, _ in spec["tests"]]
    before = pytest_statuses(repo, test_files)
    for rel, old, new in spec["fix"]:
        edit(repo, rel, old, new)
    after = pytest_statuses(repo, test_files)
    gold = git("diff", "--", *[rel for rel, _, _ in spec["fix"]], cwd=repo)
    git("checkout", "-q", "-f", base_commit, cwd=repo)
    f2p = sorted(t for t, s in after.items() if s == "PASSED" and before.get(t) != "PASSED")
    p2p = sorted(t for t, s in after.items() if s == "PASSED" and before.get(t) == "PASSED")
    broken = sorted(t for t, s in after.items() if s != "PASSED")
    if broken or not f2p or not p2p:
        sys.exit(f"{spec['id']}: bad instance (after-gold failures {broken}, F2P {f2p}, P2P {p2p})")
    return {
        "instance_id": spec["id"], "repo": f"agentrm/{spec['repo']}", "base_commit": base_commit,
        "patch": gold, "test_patch": test_patch, "problem_statement": spec["statement"] + "\n",
        "hints_text": "", "created_at": CREATED_AT, "version": "1.0",
        "FAIL_TO_PASS": json.dumps(f2p), "PASS_TO_PASS": json.dumps(p2p),
        "environment_setup_commit": base_commit,
    }


def main() -> None:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        commits = {}
        for name in sorted({s["repo"] for s in INSTANCES}):
            commits[name] = deterministic_repo(BUNDLED_REPOS / name, Path(tmp) / name)
        for spec in INSTANCES:
            rows.append(make_instance(spec, Path(tmp) / spec["repo"], commits[spec["repo"]]))
    out = DATA / "instances.jsonl"
    out.write_text("".join(json.dumps(row, sort_keys=True) + "\n" for row in rows))
    print(f"wrote {len(rows)} instances to {out}")


if __name__ == "__main__":
    main()
