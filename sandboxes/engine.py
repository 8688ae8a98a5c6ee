"""The one place that talks to the Docker engine: a shared client with a clear error when absent."""

from __future__ import annotations

import logging
import threading

import docker
from docker.errors import APIError, DockerException, ImageNotFound

from agentrm.errors import PrerequisiteError

__all__ = ["APIError", "ImageNotFound", "client"]  # docker stays inside sandboxes/

log = logging.getLogger("agentrm.sandboxes")

LABEL = "agentrm"  # every container, volume and image we make carries this label
LABEL_RUN = "agentrm.run_id"
LABEL_PID = "agentrm.owner_pid"
LABEL_KIND = "agentrm.kind"

_lock = threading.Lock()
_client: docker.DockerClient | None = None


def client() -> docker.DockerClient:
    """A process-wide client (DOCKER_HOST or the default socket); PrerequisiteError if no engine."""
    global _client
    with _lock:
        if _client is None:
            try:
                # one connection per concurrent rollout: docker-py's default pool of 10 drops
                # (and logs) a connection per request beyond that
                c = docker.from_env(timeout=120, max_pool_size=64)
                c.ping()
            except DockerException as exc:
                raise PrerequisiteError(
                    f"no Docker engine reachable ({str(exc).splitlines()[0][:160]}); "
                    "start one (.ci/start-services docker) or set DOCKER_HOST"
                ) from exc
            _client = c
        return _client
