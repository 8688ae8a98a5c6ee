"""A witness inside the grader's pytest process: which plugins were registered at run time by
code from the repository (not by pytest itself, an installed plugin, or a conftest.py).

The patch-text scan (tests_script.suspicious_reasons) misses code built from strings at run time;
this plugin sees the registration itself. It shares the process with the code under test, so a
patch written against it can silence it — a silenced witness is reported too. Findings are
`suspicious` reasons, never a verdict: the package under test may legitimately be a pytest plugin.
"""

from __future__ import annotations

import json
import shlex
from typing import Any

MODULE = "agentrm_grading_guard"
BEGIN = ">>>>> Grading Guard (base64)"
UNAVAILABLE = ">>>>> Grading Guard Unavailable"  # it did not load on the pristine tree
END = ">>>>> Grading Guard End"

SOURCE = '''"""agentrm's grading witness (see agentrm.verifiers.tests_guard)."""
import json
import os
import sys

_ROOT = os.path.realpath(os.getcwd()) + os.sep
_OUT = os.environ.pop("AGENTRM_GUARD_OUT", "")
_INTERNAL = (os.sep + "_pytest" + os.sep, os.sep + "pluggy" + os.sep, os.sep + "pytest" + os.sep,
             os.path.realpath(__file__))
_seen = []


def _registrant():
    frame = sys._getframe(2)
    while frame is not None:
        path = frame.f_code.co_filename
        if not path.startswith("<") and not any(part in path for part in _INTERNAL):
            return os.path.realpath(path)
        frame = frame.f_back
    return None


def pytest_plugin_registered(plugin, manager):
    path = _registrant()
    if path and path.startswith(_ROOT) and os.path.basename(path) != "conftest.py":
        _seen.append(path[len(_ROOT):])


def pytest_unconfigure(config):
    if _OUT:
        with open(_OUT, "w") as fh:
            json.dump({"registered_from": sorted(set(_seen))}, fh)
'''


def applies(spec: Any) -> bool:
    """Where the test command starts pytest itself (`pytest …`, `python -m pytest …`, or either
    behind an activation wrapper), not through tox/nox, which rebuild the environment. Whether
    it loads is probed before the patch (tests_script._probes)."""
    words = shlex.split(spec.test_cmd or "")
    if not words or words[0] in ("tox", "nox"):
        return False
    return any(w in ("pytest", "py.test") for w in words) or any(
        words[i:i + 2] == ["-m", "pytest"] for i in range(len(words) - 1))


def reasons(guard_text: str | None, junit_present: bool) -> list[str]:
    """`suspicious` reasons from the witness's report (None: it wrote none)."""
    if guard_text is None:
        return ["guard_silenced: the grading witness wrote no report"] if junit_present else []
    try:
        paths = json.loads(guard_text)["registered_from"]
    except (ValueError, KeyError, TypeError):
        return ["guard_silenced: the grading witness's report is unreadable"]
    return [f"runtime_plugin_registration: {p}" for p in paths if isinstance(p, str)]
