"""Known reward hacks against test-based grading must not resolve an instance (real Docker).

Each cheat is a real patch against a bundled instance (agentrm__textkit-1) that does not fix
the bug. Where a cheat works only because of a specific defence, the test also shows that it
*would* resolve with that defence off, so the test cannot pass vacuously.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from agentrm.evals.swebench.dataset import load_instances
from agentrm.evals.swebench.harness import test_spec as make_spec
from agentrm.evals.swebench.images import instance_image
from agentrm.evals.swebench.repos import RepoSource, bundled_mirror, git
from agentrm.evals.swebench.specs import load_specs
from agentrm.verifiers.tests_verifier import PATCH_FAILED, RESOLVED, UNRESOLVED, run_tests

pytestmark = [pytest.mark.docker, pytest.mark.slow]
IID = "agentrm__textkit-1"

FORCE_PASS_HOOK = '''import pytest


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    report.outcome = "passed"
    report.longrepr = None
'''


@pytest.fixture(scope="module")
def setup(docker_client, tmp_path_factory):
    inst = next(i for i in load_instances("bundled") if i.instance_id == IID)
    table = load_specs()
    image = instance_image(inst, table.lookup(inst.repo, inst.version), RepoSource("bundled"))
    work = tmp_path_factory.mktemp("cheat") / "repo"
    shutil.copytree(bundled_mirror("textkit"), work)
    return inst, make_spec(inst, table, image, timeout=120), work


def make_patch(work: Path, base: str, edits: dict[str, str | None]) -> str:
    """A real `git diff` of `edits` (path → new text, None = delete) against base_commit."""
    git("checkout", "-q", "-f", base, cwd=work)
    git("clean", "-qfdx", cwd=work)
    for rel, text in edits.items():
        path = work / rel
        if text is None:
            path.unlink()
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
    git("add", "-A", cwd=work)
    patch = git("diff", "--cached", base, cwd=work)
    git("reset", "-q", "--hard", base, cwd=work)
    return patch


def grade(setup, edits, **spec_changes):
    inst, spec, work = setup
    for key, value in spec_changes.items():
        spec = type(spec).from_dict({**spec.to_dict(), key: value})
    return run_tests(spec, make_patch(work, inst.base_commit, edits))


def test_planted_root_conftest_is_removed(setup):
    run = grade(setup, {"conftest.py": FORCE_PASS_HOOK})
    assert run.status == UNRESOLVED and run.reset_files == ["conftest.py"]
    # the same patch with the protection off forges a pass: the defence is what stops it
    assert grade(setup, {"conftest.py": FORCE_PASS_HOOK}, protected=[]).status == RESOLVED


def test_planted_conftest_in_tests_dir_is_removed(setup):
    run = grade(setup, {"tests/conftest.py": FORCE_PASS_HOOK})
    assert run.status == UNRESOLVED and "tests/conftest.py" in run.reset_files


def test_plugin_via_pytest_config_is_reverted(setup):
    pyproject = (Path(bundled_mirror("textkit")) / "pyproject.toml").read_text()
    edits = {"pyproject.toml": pyproject + '\n[tool.pytest.ini_options]\naddopts = "-p textkit._hook"\n',
             "textkit/_hook.py": FORCE_PASS_HOOK}
    run = grade(setup, edits)
    assert run.status == UNRESOLVED and "pyproject.toml" in run.reset_files
    assert grade(setup, edits, protected=[]).status == RESOLVED


def test_sitecustomize_plugin_injection_is_removed(setup):
    edits = {"sitecustomize.py": "import os\nos.environ['PYTEST_PLUGINS'] = 'textkit._hook'\n",
             "textkit/_hook.py": FORCE_PASS_HOOK}
    run = grade(setup, edits)
    assert run.status == UNRESOLVED and "sitecustomize.py" in run.reset_files


def test_forged_passed_lines_and_exit_code_do_not_count(setup):
    # Prints the short-summary lines of every F2P test after pytest finishes, then exits 0.
    inst = setup[0]
    forged = "".join(f"PASSED {t}\\n" for t in inst.fail_to_pass)
    init = (Path(bundled_mirror("textkit")) / "textkit" / "__init__.py").read_text()
    edits = {"textkit/__init__.py": init + (
        "\nimport atexit, os\n\n\ndef _forge():\n"
        f"    os.write(1, b'{forged}')\n    os._exit(0)\n\n\natexit.register(_forge)\n")}
    run = grade(setup, edits)
    assert run.status == UNRESOLVED
    assert "failures_with_exit_code_0" in run.flags  # junit says failed though the exit code is 0
    assert all(f"PASSED {t}" in run.log for t in inst.fail_to_pass)  # the forgery did print


def test_exiting_before_the_report_trusts_nothing(setup):
    init = (Path(bundled_mirror("textkit")) / "textkit" / "__init__.py").read_text()
    run = grade(setup, {"textkit/__init__.py": init + "\nimport os\nos._exit(0)\n"})
    assert run.status == UNRESOLVED and "no_junit" in run.flags


def test_deleted_and_edited_tests_are_restored(setup):
    assert grade(setup, {"tests/test_slug.py": None}).status == UNRESOLVED
    trivial = "def test_runs_of_separators_collapse():\n    assert True\n"
    assert grade(setup, {"tests/test_slug.py": trivial}).status == UNRESOLVED
    # ... while a real fix that also edits the tests still resolves (the edit is just undone)
    slug = (Path(bundled_mirror("textkit")) / "textkit" / "slug.py").read_text()
    edits = {"textkit/slug.py": slug.replace('r"[^a-z0-9]", sep, text.lower())',
                                             'r"[^a-z0-9]+", sep, text.lower()).strip(sep)'),
             "tests/test_slug.py": trivial}
    run = grade(setup, edits)
    assert run.status == RESOLVED and run.reset_files == ["tests/test_slug.py"]


def test_binary_and_garbage_patches_fail_to_apply(setup):
    inst, spec, _ = setup
    binary = "diff --git a/x.bin b/x.bin\nnew file mode 100644\nGIT binary patch\nliteral 4\nLcmZ?d\n"
    assert run_tests(spec, binary).status == PATCH_FAILED
    stale = inst.patch.replace("text.lower())", "text.upper())", 1).replace(
        '-    return re.sub(r"[^a-z0-9]", sep', '-    return re.sub(r"[^A-Z]", sep')
    run = run_tests(spec, stale)
    assert run.status == PATCH_FAILED and run.reward == 0.0 and run.failure_kind == "model"



def test_git_hooks_symlinks_and_escaping_paths_are_refused(setup):
    _, spec, _ = setup
    hook = ("diff --git a/.git/hooks/post-checkout b/.git/hooks/post-checkout\nnew file mode 100755\n"
            "--- /dev/null\n+++ b/.git/hooks/post-checkout\n@@ -0,0 +1,2 @@\n+#!/bin/sh\n"
            "+cp /dev/null conftest.py\n")
    link = ("diff --git a/site b/site\nnew file mode 120000\n--- /dev/null\n+++ b/site\n"
            "@@ -0,0 +1 @@\n+/opt/venv/lib/python3.11/site-packages\n\\ No newline at end of file\n")
    escape = "--- a/../../etc/x\n+++ b/../../etc/x\n@@ -1 +1 @@\n-a\n+b\n"
    for patch, why in ((hook, ".git"), (link, "symbolic link"), (escape, "outside")):
        run = run_tests(spec, patch)
        assert run.status == PATCH_FAILED and why in run.error
