"""Image housekeeping for `agentrm sandbox images|prune`."""

from __future__ import annotations

import logging

from docker.errors import APIError, NotFound

from agentrm.sandboxes.engine import LABEL, LABEL_KIND, LABEL_RUN, client

log = logging.getLogger("agentrm.sandboxes")


def list_images() -> list[dict]:
    """Every agentrm image: tag, kind (rootfs/base/env/snapshot), size in bytes, created."""
    rows = []
    for img in client().images.list(filters={"label": LABEL}):
        labels = img.labels or {}
        for tag in img.tags or [img.short_id]:
            rows.append({"tag": tag, "id": img.short_id, "kind": labels.get(LABEL_KIND, "?"),
                         "size": img.attrs.get("Size", 0), "created": img.attrs.get("Created", "")})
    return sorted(rows, key=lambda r: (r["kind"], r["tag"]))


def prune_images(all_images: bool = False, run_id: str | None = None) -> list[str]:
    """Remove snapshot images (all agentrm images with all_images; only `run_id`'s snapshots
    with run_id) that no container uses; images in use are skipped, not forced."""
    used = {c.image.id for c in client().containers.list(all=True) if c.image is not None}
    removed = []
    # newest first, so children go before the images they were built from
    images = sorted(client().images.list(filters={"label": LABEL}),
                    key=lambda i: i.attrs.get("Created", ""), reverse=True)
    for img in images:
        kind = (img.labels or {}).get(LABEL_KIND)
        if img.id in used or (kind != "snapshot" and not all_images):
            continue
        if run_id is not None and (img.labels or {}).get(LABEL_RUN) != run_id:
            continue
        for tag in img.tags or [img.id]:
            try:
                client().images.remove(tag, noprune=False)
                removed.append(tag)
            except (NotFound, APIError) as exc:
                log.info("kept %s: %s", tag, exc)
    return removed
