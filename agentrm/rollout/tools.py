"""The agent's tools: OpenAI function schemas and their execution in a sandbox.

A malformed call (bad JSON, unknown tool, missing or mistyped argument) is never an exception:
`execute_tool_call` turns it into an error observation the agent can read, and `call_error`
tells the loop to mark the turn invalid (GiGPO's invalid-action penalty). Only a sandbox that is
itself gone raises (SandboxGone), which ends the trajectory as `sandbox_error`.
"""

from __future__ import annotations

import posixpath
import shlex
import time
from typing import Any

from agentrm.errors import SandboxGone
from agentrm.protocols import Sandbox
from agentrm.types import ToolCall, ToolResult

SUBMIT = "submit"
MAX_OBSERVATION_CHARS = 12_000
DEFAULT_COMMAND_TIMEOUT = 60.0


def _fn(name: str, description: str, properties: dict[str, Any], required: list[str]) -> dict:
    return {
        "type": "function",
        "function": {
            "name": name,
            "description": description,
            "parameters": {"type": "object", "properties": properties, "required": required},
        },
    }


_STR = {"type": "string"}
TOOL_SCHEMAS: list[dict[str, Any]] = [
    _fn("bash", "Run a command in a persistent bash shell (cd and variables persist).",
        {"command": {**_STR, "description": "the shell command"}}, ["command"]),
    _fn("view_file", "Show a text file with line numbers.",
        {"path": _STR,
         "start_line": {"type": "integer", "description": "first line (1-based), optional"},
         "end_line": {"type": "integer", "description": "last line (inclusive), optional"}},
        ["path"]),
    _fn("edit_file", "Replace one exact occurrence of old_str by new_str in a file.",
        {"path": _STR, "old_str": {**_STR, "description": "text to replace; must occur exactly once"},
         "new_str": _STR}, ["path", "old_str", "new_str"]),
    _fn(SUBMIT, "Finish the task. Give `answer` for a question; omit it to submit the repository's "
        "changes (git diff) as a patch.", {"answer": _STR}, []),
]
_SCHEMA_BY_NAME = {s["function"]["name"]: s["function"]["parameters"] for s in TOOL_SCHEMAS}
_JSON_TYPES = {"string": str, "integer": int, "number": (int, float), "boolean": bool}


def call_error(call: ToolCall) -> str | None:
    """Why `call` is an invalid action, or None when it can run."""
    if call.error:
        return call.error
    if call.name not in _SCHEMA_BY_NAME:
        return f"unknown tool {call.name!r}; available: {', '.join(_SCHEMA_BY_NAME)}"
    if call.arguments is None:
        return "arguments did not parse"
    params = _SCHEMA_BY_NAME[call.name]
    missing = [p for p in params["required"] if p not in call.arguments]
    if missing:
        return f"{call.name}: missing argument(s) {', '.join(missing)}"
    for key, value in call.arguments.items():
        spec = params["properties"].get(key)
        if spec is None:
            return f"{call.name}: unexpected argument {key!r}"
        expected = _JSON_TYPES[spec["type"]]
        if not isinstance(value, expected) or (spec["type"] == "integer" and isinstance(value, bool)):
            return f"{call.name}: argument {key!r} must be a {spec['type']}"
    return None


def clip(text: str, limit: int = MAX_OBSERVATION_CHARS) -> tuple[str, bool]:
    """Keep head and tail of long output: the end of a log usually holds the error."""
    if len(text) <= limit:
        return text, False
    half = limit // 2
    dropped = len(text) - 2 * half
    return f"{text[:half]}\n... [{dropped} characters elided] ...\n{text[-half:]}", True


def execute_tool_call(sandbox: Sandbox, call: ToolCall, *, timeout: float | None = None,
                      workdir: str = "/workspace", repo_dir: str | None = None) -> ToolResult:
    """Run one tool call; invalid calls and tool-level failures come back as observations.

    `workdir` resolves relative paths; `repo_dir` is where `submit` takes the git diff from.
    """
    started = time.monotonic()
    error = call_error(call)
    if error is not None:
        result = ToolResult(call.id, f"Error: {error}", exit_code=None)
    else:
        handler = _HANDLERS[call.name]
        where = repo_dir or workdir if call.name == SUBMIT else workdir
        result = handler(sandbox, call, timeout or DEFAULT_COMMAND_TIMEOUT, where)
    if result.duration_s is None:
        result.duration_s = time.monotonic() - started
    return result


def _args(call: ToolCall) -> dict[str, Any]:
    """A valid call's arguments (handlers only run once `call_error` found none missing)."""
    return call.arguments or {}


def _bash(sandbox: Sandbox, call: ToolCall, timeout: float, workdir: str) -> ToolResult:
    r = sandbox.exec(_args(call)["command"], timeout=timeout)
    if r.exit_code in (-1, 137) and "the shell exited" in r.stderr + r.stdout:
        # The agent may have exited its shell, or the container is being removed under us
        # (the engine can still report it running for a moment): a probe tells which, and
        # raises SandboxGone in the second case.
        sandbox.exec("true", timeout=10)
    text = r.stdout + (("\n" if r.stdout and not r.stdout.endswith("\n") else "") + r.stderr
                       if r.stderr else "")
    notes = []
    if r.timed_out:
        notes.append(f"[command timed out after {timeout:g}s]")
    if r.truncated:
        notes.append("[output truncated by the sandbox]")
    if r.exit_code != 0:
        notes.append(f"[exit code {r.exit_code}]")
    text, clipped = clip(text)
    content = "\n".join(x for x in [text.rstrip("\n"), *notes] if x) or "[no output]"
    return ToolResult(call.id, content, exit_code=r.exit_code, timed_out=r.timed_out,
                      truncated=r.truncated or clipped, duration_s=r.duration_s,
                      output_events=r.output_events)


def _resolve(path: str, workdir: str) -> str:
    return posixpath.normpath(path if path.startswith("/") else posixpath.join(workdir, path))


def _read_text(sandbox: Sandbox, path: str) -> str | ToolResult:
    """The file's text, or an error result (not found, a directory, binary)."""
    try:
        data = sandbox.read_file(path)
    except SandboxGone:
        raise
    except Exception as exc:  # noqa: BLE001 - any read failure is the agent's to see
        return ToolResult("", f"Error: cannot read {path}: {type(exc).__name__}: {exc}".rstrip(": "),
                          exit_code=1)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return ToolResult("", f"Error: {path} is not a UTF-8 text file", exit_code=1)


def _view_file(sandbox: Sandbox, call: ToolCall, timeout: float, workdir: str) -> ToolResult:
    path = _resolve(_args(call)["path"], workdir)
    text = _read_text(sandbox, path)
    if isinstance(text, ToolResult):
        text.call_id = call.id
        return text
    lines = text.splitlines()
    start = max(1, _args(call).get("start_line") or 1)
    end = min(len(lines), _args(call).get("end_line") or len(lines))
    if lines and start > len(lines):
        return ToolResult(call.id, f"Error: {path} has only {len(lines)} lines", exit_code=1)
    width = len(str(end))
    body = "\n".join(f"{i:>{width}}  {lines[i - 1]}" for i in range(start, end + 1))
    body, clipped = clip(body or "[empty file]")
    return ToolResult(call.id, body, exit_code=0, truncated=clipped)


def _edit_file(sandbox: Sandbox, call: ToolCall, timeout: float, workdir: str) -> ToolResult:
    path = _resolve(_args(call)["path"], workdir)
    old, new = _args(call)["old_str"], _args(call)["new_str"]
    if not old:
        return ToolResult(call.id, "Error: old_str is empty; give the exact text to replace",
                          exit_code=1)
    text = _read_text(sandbox, path)
    if isinstance(text, ToolResult):
        text.call_id = call.id
        return text
    count = text.count(old)
    if count == 0:
        return ToolResult(call.id, f"Error: old_str not found in {path}; nothing changed. "
                          "Copy the text exactly (view_file shows it).", exit_code=1)
    if count > 1:
        return ToolResult(call.id, f"Error: old_str occurs {count} times in {path}; nothing "
                          "changed. Include more surrounding lines to make it unique.", exit_code=1)
    sandbox.write_file(path, text.replace(old, new, 1))
    line = text[: text.index(old)].count("\n") + 1
    return ToolResult(call.id, f"Edited {path}: replaced 1 occurrence at line {line}.", exit_code=0)


def _submit(sandbox: Sandbox, call: ToolCall, timeout: float, workdir: str) -> ToolResult:
    answer = _args(call).get("answer")
    if answer is not None:
        return ToolResult(call.id, str(answer), exit_code=0)
    # No answer: the submission is the repository's changes, as a patch.
    # A subshell, so the agent's persistent shell keeps its working directory.
    r = sandbox.exec(f"(cd {shlex.quote(workdir)} && git add -A >/dev/null 2>&1 && "
                     "git diff --cached HEAD)", timeout=timeout)
    return ToolResult(call.id, r.stdout if r.exit_code == 0 else "", exit_code=r.exit_code,
                      duration_s=r.duration_s)


_HANDLERS = {"bash": _bash, "view_file": _view_file, "edit_file": _edit_file, SUBMIT: _submit}
