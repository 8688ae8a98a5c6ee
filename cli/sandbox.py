"""`agentrm sandbox run|build|images|prune|cleanup`: thin wrappers over agentrm.sandboxes."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from agentrm.cli.common import JsonOption, console, err_console, print_json, rich_table

app = typer.Typer(help="Docker sandboxes: run a command, build and list images, clean up.",
                  no_args_is_help=True)


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="sandbox")


@app.command(context_settings={"allow_interspersed_args": False})
def run(
    cmd: Annotated[list[str], typer.Argument(help="Command (after --); one word runs via bash -c.")],
    image: Annotated[str | None, typer.Option(help="Image (default: the base image).")] = None,
    timeout: Annotated[float, typer.Option(help="Seconds before the command is killed (exit 124).")] = 600.0,
    memory: Annotated[str, typer.Option(help="Memory limit, e.g. 512m, 2g.")] = "1g",
    cpus: Annotated[float, typer.Option(help="CPU limit.")] = 1.0,
    network: Annotated[bool, typer.Option("--network", help="Give the sandbox network access.")] = False,
    disk: Annotated[str, typer.Option(help="Size of the writable workspace (tmpfs).")] = "512m",
    user: Annotated[str, typer.Option(help="User inside the sandbox.")] = "agent",
    raw: Annotated[bool, typer.Option("--raw", help="Pass the output through byte for byte (terminal escapes included).")] = False,
) -> None:
    """Run one command in a fresh sandbox, stream its output, exit with its exit code.

    Terminal escapes and control bytes in the output are dropped (unless --raw): a command must
    not drive your terminal (retitle it, clear it, rewrite what it showed)."""
    from agentrm.sandboxes import DockerSandbox, SandboxConfig

    cfg = SandboxConfig(image=image, memory=memory, cpus=cpus, network=network, disk=disk,
                        user=user, wall_clock_s=timeout + 60, default_timeout=timeout)

    cleaners = {1: _Neutraliser(), 2: _Neutraliser()}

    def stream(fd: int, data: bytes) -> None:
        out = sys.stdout if fd == 1 else sys.stderr
        out.buffer.write(data if raw else cleaners[fd if fd in cleaners else 1].feed(data))
        out.flush()

    argv = ["bash", "-c", cmd[0]] if len(cmd) == 1 else list(cmd)
    with DockerSandbox(cfg) as box:
        result = box.exec(argv, timeout=timeout, on_output=stream)
    if not raw:
        for fd, cleaner in cleaners.items():
            (sys.stdout if fd == 1 else sys.stderr).buffer.write(cleaner.feed(b"", final=True))
    if result.truncated:
        err_console.print("[yellow]output was truncated in the recorded result[/]")
    if result.timed_out:
        err_console.print(f"[red]timed out after {timeout:g} s[/]")
    raise typer.Exit(result.exit_code if result.exit_code >= 0 else 1)


class _Neutraliser:
    """Output chunks → the same text without terminal escapes or control bytes. A chunk may end
    inside a UTF-8 character or an escape sequence; that tail waits for the next chunk."""

    def __init__(self) -> None:
        import codecs

        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._pending = ""

    def feed(self, data: bytes, final: bool = False) -> bytes:
        from agentrm.replay.view import clean_text

        text = self._pending + self._decoder.decode(data, final=final)
        cut = len(text) if final else _safe_cut(text)
        self._pending = text[cut:]
        return clean_text(text[:cut]).encode()


def _safe_cut(text: str) -> int:
    """Where the text can be cut without splitting an escape sequence or a CR LF pair."""
    esc = text.rfind("\x1b", max(0, len(text) - 256))
    if esc >= 0 and not any(c in text[esc + 1:] for c in "\x07\n") and not (
            len(text) > esc + 2 and text[esc + 1] == "[" and any(
                "@" <= c <= "~" for c in text[esc + 2:])):
        return esc
    return len(text) - 1 if text.endswith("\r") else len(text)


@app.command()
def build(
    dockerfile: Annotated[Path | None, typer.Argument(help="Dockerfile (FROM {base} = the base image); none: the base image.")] = None,
    context: Annotated[Path | None, typer.Option(help="Build context directory.")] = None,
    name: Annotated[str, typer.Option(help="Image repository name.")] = "agentrm/env",
    packages: Annotated[str | None, typer.Option(help="Extra Debian packages for the base, comma-separated.")] = None,
    pip: Annotated[str | None, typer.Option(help="Python requirements, comma-separated: wheels fetched on the host.")] = None,
    json_out: JsonOption = False,
) -> None:
    """Build (or reuse) an image; print its content-hashed tag."""
    from agentrm.errors import InputError
    from agentrm.sandboxes import base_image, build_image
    from agentrm.sandboxes.wheels import python_image

    extra = [p.strip() for p in (packages or "").split(",") if p.strip()]
    with err_console.status("building image (the first base build takes a minute or two)"):
        if dockerfile is not None:
            if not dockerfile.is_file():
                raise InputError("Dockerfile not found", path=str(dockerfile))
            tag = build_image(dockerfile.read_text(), context, name=name)
        elif pip:
            tag = python_image([r for r in pip.split(",") if r.strip()], name=name)
        else:
            tag = base_image(extra)
    print_json({"image": tag}) if json_out else console.print(tag)


@app.command()
def images(json_out: JsonOption = False) -> None:
    """List agentrm images with their sizes."""
    from agentrm.sandboxes.admin import list_images

    rows = list_images()
    if json_out:
        print_json(rows)
        return
    console.print(rich_table("agentrm images", ["tag", "kind", "size MB", "created"],
                             [[r["tag"], r["kind"], f"{r['size'] / 1e6:.0f}", r["created"]]
                              for r in rows]))


@app.command()
def prune(
    all_images: Annotated[bool, typer.Option("--all", help="Also base and environment images.")] = False,
    run_id: Annotated[str | None, typer.Option("--run-id", help="Only this run's snapshots.")] = None,
    json_out: JsonOption = False,
) -> None:
    """Remove snapshot images (with --all: every agentrm image) not used by a container."""
    from agentrm.sandboxes.admin import prune_images

    removed = prune_images(all_images, run_id=run_id)
    print_json({"removed": removed}) if json_out else console.print(f"removed {len(removed)} image(s)")


@app.command()
def cleanup(
    run_id: Annotated[str | None, typer.Option("--run-id", help="Only this run's sandboxes.")] = None,
    force: Annotated[bool, typer.Option(help="Also sandboxes of processes still running.")] = False,
    json_out: JsonOption = False,
) -> None:
    """Remove leftover sandbox containers (whose owning process has ended)."""
    from agentrm.sandboxes import cleanup as do_cleanup

    removed = do_cleanup(run_id=run_id, force=force)
    print_json({"removed": removed}) if json_out else console.print(f"removed {len(removed)} container(s)")
