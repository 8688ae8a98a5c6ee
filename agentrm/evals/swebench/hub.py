"""SWE-bench datasets by hub name, through `datasets`: from its cache when the cache holds the
dataset (the hub is not contacted then), else from the hub; one line when neither works."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from agentrm.errors import InputError

_offline_lock = threading.Lock()


@contextmanager
def _hub_offline() -> Iterator[None]:
    """`datasets` and `huggingface_hub` read their offline flag at call time: set it while a
    cached dataset loads, so a dataset in the cache never waits on an unreachable hub."""
    import datasets.config as dconf
    import huggingface_hub.constants as hconst

    with _offline_lock:
        saved = dconf.HF_HUB_OFFLINE, hconst.HF_HUB_OFFLINE
        dconf.HF_HUB_OFFLINE = hconst.HF_HUB_OFFLINE = True
        try:
            yield
        finally:
            dconf.HF_HUB_OFFLINE, hconst.HF_HUB_OFFLINE = saved


def hub_cache_dir(name: str) -> Path:
    """Where `datasets` caches the hub dataset `name` (HF_DATASETS_CACHE honoured)."""
    import datasets.config as dconf
    from datasets.naming import camelcase_to_snakecase

    owner, _, dataset = name.rpartition("/")
    return Path(dconf.HF_DATASETS_CACHE) / "___".join(
        [p for p in (owner, camelcase_to_snakecase(dataset)) if p])


def looks_like_hub_name(source: str) -> bool:
    return (source.count("/") == 1 and not source.startswith((".", "/", "~"))
            and Path(source).suffix.lower() not in (".json", ".jsonl", ".parquet"))


def rows_from_hub(name: str, split: str) -> list[tuple[Any, str]]:
    from datasets import load_dataset

    cache = hub_cache_dir(name)
    cached = any(p.is_dir() for p in cache.glob("*/*/*"))
    try:
        if cached:
            with _hub_offline():
                data = load_dataset(name, split=split)
        else:
            _hub_reachable()  # offline: say so now, not after the client's retries
            data = load_dataset(name, split=split)
    except ValueError as exc:  # an unknown split, mostly
        raise InputError(f"dataset {name}: {_first_line(exc)} (--split)") from None
    except Exception as exc:  # noqa: BLE001 - unreachable hub, missing cache, bad repo
        raise InputError(f"dataset {name} is neither reachable on the hub nor in the datasets "
                         f"cache ({cache}): {_first_line(exc)}") from None
    return [(row, f"{name}[{split}]:row {i + 1}") for i, row in enumerate(data)]


def _hub_reachable(timeout: float = 5.0) -> None:
    import socket
    from urllib.parse import urlparse

    import datasets.config as dconf

    if dconf.HF_HUB_OFFLINE:
        raise ConnectionError("offline mode (HF_HUB_OFFLINE) and not in the cache")
    url = urlparse(dconf.HF_ENDPOINT)
    try:
        socket.create_connection((url.hostname, url.port or 443), timeout=timeout).close()
    except OSError as exc:
        raise ConnectionError(f"{url.hostname} unreachable ({exc})") from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:200]


