"""The in-container evaluation script of the test verifier, and the patch checks it relies on.

Kept apart from tests_verifier.py so the script can be read on its own: it is what a grading
container runs, and what the run directory keeps as eval.sh.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterable, Sequence
from typing import Any

from agentrm.verifiers import tests_guard

START = ">>>>> Start Test Output"
END = ">>>>> End Test Output"
EXIT_TIMEOUT = 124  # GNU timeout's exit status

DEFAULT_PROTECTED = [
    # Files whose change would let the code under test grade itself (EVAL_HARNESS_LESSONS §3.3):
    # pytest hooks and configuration, interpreter start-up hooks, and the tests themselves.
    # A touched one is reset to base_commit (or removed if the patch created it).
    "**/conftest.py", "pytest.ini", "tox.ini", "setup.cfg", "pyproject.toml",
    "**/sitecustomize.py", "**/usercustomize.py", "**/*.pth",
    "tests/**", "test/**", "testing/**", "**/test_*.py", "**/*_test.py",
]

RUNNER_MISSING = ">>>>> Runner Missing"
JUNIT_BEGIN = ">>>>> JUnit XML (base64)"
JUNIT_END = ">>>>> JUnit End"

# One script, fed to `bash -s` in a single exec: inputs travel as heredocs, results come back on
# stdout. Everything lives in main(), so bash has read the whole script (and its stdin is drained)
# before any code under test runs; the junit block is printed by bash after the tests exit.
_SCRIPT = """main() {{
exec 2>&1
set -u
git() {{ command git -c core.hooksPath=/dev/null "$@"; }}  # no repository hook ever runs
cd {workdir} || {{ echo ">>>>> Reset Failed: no {workdir}"; return 90; }}
export TZ=UTC PYTHONHASHSEED=0 PYTHONDONTWRITEBYTECODE=1 PYTHONNOUSERSITE=1
unset PYTEST_ADDOPTS PYTEST_PLUGINS PYTHONPATH PYTHONSTARTUP PYTHONHOME
D={tmp}
mkdir -p "$D" && chmod 700 "$D" || {{ echo ">>>>> Reset Failed: no $D"; return 90; }}
cat > "$D/model.patch" <<'{eof}'
{model_patch}{eof}
cat > "$D/test.patch" <<'{eof}'
{test_patch}{eof}
cat > "$D/v5_eval.sh" <<'{eof}'
{v5_script}{eof}
BASE=$(git rev-parse --verify -q {base}) || {{ echo ">>>>> Reset Failed: unknown base commit"; return 90; }}
git reset -q --hard "$BASE" && git clean -qfd || {{ echo ">>>>> Reset Failed"; return 90; }}
{guard_setup}{probe}restore() {{ if git cat-file -e "$BASE:$1" 2>/dev/null; then git checkout -q "$BASE" -- "$1"; else rm -rf -- "$1"; fi; }}
if [ -s "$D/model.patch" ]; then
  ok=""
  for m in "git apply --verbose" "git apply --verbose --reject" \\
           "patch --batch --fuzz=5 -p1 --no-backup-if-mismatch -i"; do
    echo ">>>>> Trying: $m"
    if $m "$D/model.patch"; then ok="$m"; break; fi
    git reset -q --hard "$BASE"; git clean -qfd
  done
  [ -n "$ok" ] || {{ echo ">>>>> Patch Apply Failed"; return 91; }}
  echo ">>>>> Applied Patch ($ok)"
fi
for f in {reset}; do restore "$f" && echo ">>>>> Reset protected file $f"; done
for f in {test_files}; do restore "$f"; done
if [ -s "$D/test.patch" ]; then
  git apply --verbose "$D/test.patch" || {{ echo ">>>>> Test Patch Apply Failed"; return 92; }}
fi
echo "{start}"
{guard_env}timeout -k 5 {timeout} {command}{guard_arg} </dev/null
rc=$?
echo "{end}"
echo "{junit_begin} {nonce}"
[ -f {junit} ] && base64 -w0 {junit}
echo
echo "{junit_end} {nonce}"
{guard_print}return $rc
}}
main
exit $?
"""


def _words(items: Iterable[str]) -> str:
    return " ".join(shlex.quote(i) for i in items) or ""


def uses_junit(spec: Any) -> bool:
    return not spec.eval_script and "pytest" in (spec.test_cmd or "") and \
        spec.log_parser.removeprefix("parse_log_") in ("pytest", "pytest_v2")


def uses_guard(spec: Any) -> bool:
    return uses_junit(spec) and tests_guard.applies(spec)


def _probes(spec: Any) -> str:
    """Run on the pristine tree before the patch. The runner probe is the only evidence of a
    broken environment the grader trusts: once patched code has run, anything it prints or any
    way it exits (a fake "No module named pytest", exit 127, a hang) is the model's. The witness
    is turned on only where it loads (a wrapper may drop PYTHONPATH). One runner start in the
    common case: the runner with the witness loaded starting proves both; only when it does not
    is the bare runner probed, to tell a missing witness from a missing runner."""
    if not uses_junit(spec):
        return ""  # a v5 script or another runner: no probe, so no infrastructure verdict
    quiet = "</dev/null >/dev/null 2>&1"
    runner = (f"timeout -k 5 300 {spec.test_cmd} --version {quiet} || "
              f"{{ echo \"{RUNNER_MISSING}\"; return 93; }}")
    if not uses_guard(spec):
        return runner + "\n"
    return (f'G="-p {tests_guard.MODULE}"; PYTHONPATH="$D" timeout -k 5 300 {spec.test_cmd} '
            f'-p {tests_guard.MODULE} --version {quiet} || '
            f'{{ G=""; echo "{tests_guard.UNAVAILABLE}"; {runner}; }}\n')


def test_command(spec: Any, junit: str) -> str:
    """The test command: pytest gets junit output, no cache, and the test files appended (the
    grading witness, where it loads, after them: see _probes)."""
    files = spec.test_files if spec.test_files is not None else sorted(touched_paths(spec.test_patch))
    cmd = spec.test_cmd
    if uses_junit(spec):
        cmd += f" -p no:cacheprovider -o junit_family=xunit1 --junitxml={shlex.quote(junit)}"
    return f"{cmd} {_words(files)}".strip()


def _guard_parts(spec: Any, eof: str, nonce: str) -> dict[str, str]:
    if not uses_guard(spec):
        return {"guard_setup": "", "guard_env": "", "guard_print": "", "guard_arg": ""}
    module = f'"$D/{tests_guard.MODULE}.py"'
    return {"guard_setup": f"cat > {module} <<'{eof}'\n{tests_guard.SOURCE}{eof}\n",
            "guard_env": 'PYTHONPATH="$D" AGENTRM_GUARD_OUT="$D/guard.json" ',
            "guard_arg": " ${G:-}",
            "guard_print": (f'echo "{tests_guard.BEGIN} {nonce}"\n[ -f "$D/guard.json" ] && '
                            f'base64 -w0 "$D/guard.json"\necho\necho "{tests_guard.END} {nonce}"\n')}


def _text(value: str | None) -> str:
    if not value:
        return ""
    return value if value.endswith("\n") else value + "\n"


def eval_script(spec: Any, tmp: str, junit: str, reset: Sequence[str], model_patch: str = "",
                nonce: str = "NONCE") -> str:
    """The whole evaluation as one bash script (patches embedded; see _SCRIPT)."""
    if spec.eval_script:
        command = f"bash {shlex.quote(tmp)}/v5_eval.sh"
        test_files: list[str] = []
    else:
        command = test_command(spec, junit)
        test_files = sorted(touched_paths(spec.test_patch))
    return _SCRIPT.format(
        workdir=shlex.quote(spec.workdir), tmp=shlex.quote(tmp), eof=f"AGENTRM_EOF_{nonce}",
        model_patch=_text(model_patch), test_patch="" if spec.eval_script else _text(spec.test_patch),
        v5_script=_text(spec.eval_script), base=shlex.quote(f"{spec.base_commit}^{{commit}}"),
        reset=_words(reset), test_files=_words(test_files), start=START, end=END,
        timeout=f"{float(spec.timeout):g}", command=command, junit=shlex.quote(junit),
        junit_begin=JUNIT_BEGIN, junit_end=JUNIT_END, nonce=nonce, probe=_probes(spec),
        **_guard_parts(spec, f"AGENTRM_EOF_{nonce}", nonce))


_DIFF_GIT = re.compile(r"^diff --git (\"?a/.+?\"?) (\"?b/.+?\"?)$")
_FILE_LINE = re.compile(r"^(?:---|\+\+\+) (\"?[^\t]+?\"?)(?:\t.*)?$")
_RENAME = re.compile(r"^(?:rename|copy) (?:from|to) (.+)$")


def _clean(path: str, strip: bool = True) -> str | None:
    path = path.strip()
    if path.startswith('"') and path.endswith('"'):
        path = path[1:-1].encode("latin-1", "backslashreplace").decode("unicode_escape")
    if path == "/dev/null":
        return None
    if strip and (path.startswith("a/") or path.startswith("b/")):
        path = path[2:]
    return path.lstrip("/") or None


def touched_paths(patch: str) -> set[str]:
    """Every repository path a unified diff creates, edits, deletes, renames or copies."""
    paths: set[str] = set()
    for line in (patch or "").splitlines():
        for regex, strip in ((_DIFF_GIT, True), (_FILE_LINE, True), (_RENAME, False)):
            match = regex.match(line)
            if match:
                paths.update(p for p in (_clean(g, strip) for g in match.groups()) if p)
                break
    return paths


def _glob_regex(pattern: str) -> re.Pattern[str]:
    out = ""
    i = 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif pattern[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif pattern[i] == "?":
            out, i = out + "[^/]", i + 1
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return re.compile(out + r"\Z")


def protected_paths(paths: Iterable[str], patterns: Sequence[str]) -> list[str]:
    regexes = [_glob_regex(p) for p in patterns]
    return sorted(p for p in paths if any(r.match(p) for r in regexes))


def patch_problem(patch: str) -> str | None:
    """Why a patch cannot be applied as text, or None. Binary hunks need the repository's blobs
    and are refused (SWE-bench patches are text)."""
    if "\x00" in patch:
        return "patch contains NUL bytes (binary content)"
    if "GIT binary patch" in patch or re.search(r"^Binary files .* differ$", patch, re.M):
        return "binary patch (GIT binary patch / Binary files differ) is not supported"
    paths = touched_paths(patch)
    if not paths:
        return "not a unified diff (no file headers)"
    for path in sorted(paths):
        parts = path.split("/")
        if parts[0] == ".git" or ".." in parts:
            return f"patch touches {path!r} (inside .git or outside the repository)"
    if re.search(r"^(?:new file mode|new mode|old mode) 120000$", patch, re.M):
        return "patch creates a symbolic link (not supported: links can point outside the tree)"
    return None


# Patch lines that reach into the test runner instead of the code under test. The grader's test
# process runs the patched code, so in-process tampering (a plugin registered at run time, a junit
# file rewritten at exit) cannot be fully stopped; it is flagged so a reward can penalise it.
# Tags are stable names; each reason reads "tag: path".
_RUNNER_REACH = [  # names may be aliased (`import os as _os`), so match attributes, not modules
    ("atexit", re.compile(r"\batexit\b")),
    ("os_exit", re.compile(r"\._exit\s*\(|\bkill\(\s*[\w.]*getpid\(|\braise_signal\b")),
    ("sys_argv", re.compile(r"\b(?:orig_)?argv\b")),
    ("junit", re.compile(r"junit|xunit", re.I)),
    ("gc_walk", re.compile(r"\bget_(?:objects|referrers|referents)\b")),
    ("runner_import", re.compile(r"\b_pytest\b|\bpluggy\b|^\s*(?:import|from)\s+(?:pytest|unittest)\b")),
    ("plugin_registration", re.compile(
        r"pluginmanager|hookimpl|hookwrapper|pytest_plugins|PYTEST_PLUGINS|\bpytest_[a-z_]+\s*\("
        r"|\bregister\(.*plugin", re.I)),
    ("runner_env", re.compile(r"PYTEST_(?:ADDOPTS|CURRENT_TEST|VERSION|XDIST)")),
    ("stream_redirect", re.compile(
        r"\.(?:__)?std(?:out|err)(?:__)?\s*=(?!=)|\bdup2\(|redirect_std(?:out|err)")),
    ("frame_inspection", re.compile(r"\b_getframe\b|\.f_back\b|\.f_locals\b|\bsettrace\b"
                                    r"|\bsetprofile\b|\binspect\.stack\(")),
    ("sys_modules", re.compile(r"\bmodules\[[^\]]+\]\s*=(?!=)|\bmodules\.(?:update|pop)\(")),
    # hides any of the above from a pattern: code built from strings at run time
    ("dynamic_code", re.compile(r"(?<![\w.])(?:exec|eval|compile)\s*\(|__import__\s*\(|b64decode|"
                                r"\bcodecs\.decode\(|\bmarshal\.loads\(")),
]
_RUNNER_FILES = re.compile(r"(?:^|/)(?:conftest\.py|sitecustomize\.py|usercustomize\.py|pytest\.ini"
                           r"|[^/]+\.pth)$")
_CONFIG_FILES = re.compile(r"(?:^|/)(?:tox\.ini|setup\.cfg|pyproject\.toml)$")


def added_lines(patch: str) -> dict[str, list[str]]:
    """Path → the lines a unified diff adds to it."""
    out: dict[str, list[str]] = {}
    current: str | None = None
    for line in (patch or "").splitlines():
        if line.startswith("+++ "):
            match = _FILE_LINE.match(line)
            current = _clean(match.group(1)) if match else None
            if current:
                out.setdefault(current, [])
        elif line.startswith("+") and current:
            out[current].append(line[1:])
        elif line.startswith("diff --git "):
            current = None
    return out


def suspicious_reasons(patch: str, reset: Sequence[str] = ()) -> list[str]:
    """Why a patch looks like it reaches into the test runner ("tag: path"), or []. Files reset
    before grading are not scanned (their code never runs) but runner hooks among them are named."""
    reasons: list[str] = []
    for path in sorted(touched_paths(patch)):
        if _RUNNER_FILES.search(path):
            reasons.append(f"runner_config: {path}" + (" (reset)" if path in reset else ""))
    for path, lines in sorted(added_lines(patch).items()):
        text = "\n".join(lines)
        if _CONFIG_FILES.search(path) and re.search(r"pytest|addopts|-p\s", text):
            reasons.append(f"runner_config: {path}" + (" (reset)" if path in reset else ""))
        if path in reset:
            continue
        for tag, regex in _RUNNER_REACH:
            if any(regex.search(line) for line in lines):
                reasons.append(f"{tag}: {path}")
    return list(dict.fromkeys(reasons))
