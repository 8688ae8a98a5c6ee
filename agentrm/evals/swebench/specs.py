"""The environment spec table (repo → version → how to install and test), extendable in YAML.

SWE-bench v4 keyed install and test commands on (repo, version) in Python code; here the table
is data (specs.yaml beside this file) that `--specs FILE` merges over, so a user adds a
repository without editing agentrm. v5 rows that carry their own image and eval script need no
entry.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from agentrm.errors import InputError
from agentrm.hashing import stable_hash
from agentrm.verifiers.tests_script import DEFAULT_PROTECTED

BUILTIN = Path(__file__).resolve().parent / "specs.yaml"
FIELDS = ("apt_packages", "pip_packages", "pre_install", "install", "test_cmd", "log_parser",
          "protected", "timeout", "python", "workdir", "activate", "user")
LAYOUT_FIELDS = ("workdir", "activate", "user")  # where and how tests run in a pre-built image


@dataclass(frozen=True)
class EnvSpec:
    """How to build and test one (repo, version)."""

    apt_packages: tuple[str, ...] = ()
    pip_packages: tuple[str, ...] = ()
    pre_install: tuple[str, ...] = ()
    install: str = ""
    test_cmd: str = "python -m pytest -rA"
    log_parser: str = "pytest"
    protected: tuple[str, ...] = tuple(DEFAULT_PROTECTED)
    timeout: float = 1800.0
    python: str = ""  # "3.9": the interpreter the environment must have ("" = the base image's)
    workdir: str = ""  # layout of pre-built images ("" = the image kind's default)
    activate: tuple[str, ...] = ()
    user: str = ""

    def layout_fields(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in LAYOUT_FIELDS if getattr(self, k)}

    def env_part(self) -> dict[str, Any]:
        """The fields that shape the environment image (shared by every instance of a version)."""
        return {"apt": list(self.apt_packages), "pip": list(self.pip_packages),
                "pre": list(self.pre_install), "python": self.python}

    def hash(self) -> str:
        return stable_hash(asdict(self))


@dataclass
class SpecTable:
    defaults: dict[str, Any] = field(default_factory=dict)
    repos: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)

    def lookup(self, repo: str, version: str) -> EnvSpec:
        versions = self.repos.get(repo)
        if versions is None:
            raise KeyError(f"no environment spec for repository {repo} (add it with --specs FILE)")
        entry = versions.get(str(version), versions.get("*"))
        if entry is None:
            raise KeyError(f"no environment spec for {repo} version {version} "
                           f"(known: {', '.join(sorted(versions))}; add it with --specs FILE)")
        merged = {**self.defaults, **(entry or {})}
        return _spec(merged)

    def merged(self, other: SpecTable) -> SpecTable:
        repos = {r: dict(v) for r, v in self.repos.items()}
        for repo, versions in other.repos.items():
            for version, entry in versions.items():
                base = repos.setdefault(repo, {}).get(version, {})
                repos[repo][version] = {**base, **(entry or {})}
        return SpecTable({**self.defaults, **other.defaults}, repos)


def _spec(values: dict[str, Any]) -> EnvSpec:
    kwargs: dict[str, Any] = {}
    for key in FIELDS:
        if key not in values or values[key] is None:
            continue
        value = values[key]
        if key in ("apt_packages", "pip_packages", "pre_install", "protected", "activate"):
            kwargs[key] = tuple(str(v) for v in ([value] if isinstance(value, str) else value))
        elif key == "timeout":
            kwargs[key] = float(value)
        else:
            kwargs[key] = str(value)
    return EnvSpec(**kwargs)


def read_table(path: Path) -> SpecTable:
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise InputError(f"cannot read spec table: {str(exc).splitlines()[0]}", path=str(path)) from None
    if not isinstance(data, dict) or not isinstance(data.get("repos", {}), dict):
        raise InputError("spec table must be a mapping with 'defaults' and 'repos'", path=str(path))
    for repo, versions in (data.get("repos") or {}).items():
        if not isinstance(versions, dict):
            raise InputError(f"repos.{repo} must map versions to specs", path=str(path))
        for version, entry in versions.items():
            unknown = set(entry or {}) - set(FIELDS)
            if unknown:
                raise InputError(f"repos.{repo}.{version}: unknown field(s) {', '.join(sorted(unknown))} "
                                 f"(known: {', '.join(FIELDS)})", path=str(path))
    versions = {str(r): {str(v): e or {} for v, e in vs.items()}
                for r, vs in (data.get("repos") or {}).items()}
    return SpecTable(dict(data.get("defaults") or {}), versions)


def package_parser(name: str, instance_id: str = "", repo: str = "", version: str = "",
                   eval_type: str = "") -> str:
    """The parser spec of one of the swebench package's parsers for an instance. It always names
    the repository, so the verifier keeps to the package's text parser (tests keyed exactly as
    SWE-bench datasets key them) rather than agentrm's junit path for its own pytest specs."""
    from agentrm.verifiers.log_parsers import parser_spec

    name = name if name.startswith("parse_") else f"parse_log_{name}"
    return parser_spec(name, instance_id=instance_id, repo=repo or "unknown", version=version,
                       eval_type=eval_type)


def load_specs(extra: str | Path | None = None) -> SpecTable:
    table = read_table(BUILTIN)
    if extra:
        path = Path(extra).expanduser()
        if not path.is_file():
            raise InputError("spec file not found (--specs FILE)", path=str(path))
        table = table.merged(read_table(path))
    return table
