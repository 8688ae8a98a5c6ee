"""The curve of a training run: training reward and success rate per iteration, and the
held-out success rate before training and after the evaluated iterations (PNG, or an HTML page
with the PNG inline). Read from the store, so it works for a run still going or cut off."""

from __future__ import annotations

import base64
import html
from pathlib import Path
from typing import Any

from agentrm.errors import InputError, NotFoundError


def training_curve(store: Any, train_id: str, out: str | Path | None = None
                   ) -> tuple[list[dict[str, Any]], list[dict[str, Any]], Path]:
    from agentrm.training.loop import evaluations, iterations

    try:
        run = store.get_run(train_id)
    except NotFoundError:
        raise NotFoundError(f"no training run {train_id!r} in the store (`agentrm traces runs` lists "
                            "runs of kind train)") from None
    if run.get("kind") != "train":
        raise InputError(f"run {train_id!r} is a {run.get('kind')} run, not a training run")
    its, evals = iterations(store, train_id), evaluations(store, train_id)
    if not its and not evals:
        raise InputError(f"training run {train_id!r} has no finished iteration yet")
    config = run.get("config") or {}
    path = Path(out) if out else Path(config.get("out") or Path("runs") / "train" / train_id) / "curve.png"
    if path.suffix.lower() not in (".png", ".html"):
        raise InputError(f"--out {path}: write a .png or an .html file")
    png = _plot(train_id, its, evals)
    from agentrm.files import atomic_write

    if path.suffix.lower() == ".png":
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, png)
    else:
        atomic_write(path, _page(train_id, config, its, evals, png))
    return its, evals, path


def _plot(train_id: str, its: list[dict[str, Any]], evals: list[dict[str, Any]]) -> bytes:
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    x = [it["iteration"] + 1 for it in its]
    left.plot(x, [_num(it.get("train_reward_mean")) for it in its], "o-", label="training reward")
    left.plot(x, [_num(it.get("success_rate")) for it in its], "s--", label="training success")
    left.set_xlabel("iteration")
    left.set_title("training rollouts")
    left.legend()
    if evals:
        ex = [e["after_iterations"] for e in evals]
        right.plot(ex, [_num(e.get("success_rate")) for e in evals], "o-", label="success rate")
        right.plot(ex, [_num(e.get("reward_mean")) for e in evals], "s--", label="mean reward")
        right.legend()
    right.set_xlabel("iterations trained")
    right.set_title("held-out tasks" if evals else "held-out tasks: none given (--eval-tasks)")
    fig.suptitle(train_id)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    return buf.getvalue()


def _page(train_id: str, config: dict[str, Any], its: list[dict[str, Any]],
          evals: list[dict[str, Any]], png: bytes) -> str:
    rows = "".join(
        f"<tr><td>{it['iteration']}</td><td>{_cell(it.get('train_reward_mean'))}</td>"
        f"<td>{_cell(it.get('success_rate'))}</td><td>{_cell(it['update'].get('loss'))}</td>"
        f"<td>{_cell(it['update'].get('ppo_kl'))}</td><td>{_cell(it['update'].get('pg_clipfrac'))}</td></tr>"
        for it in its)
    settings = html.escape(", ".join(f"{k}={config[k]}" for k in ("policy", "tasks", "group_size",
                                                                     "reward", "estimator") if k in config))
    return (f"<!doctype html><meta charset=utf-8><title>{html.escape(train_id)}</title>"
            f"<h1>{html.escape(train_id)}</h1><p>{settings}</p>"
            f"<img alt='training curve' src='data:image/png;base64,{base64.b64encode(png).decode()}'>"
            "<table><tr><th>iteration</th><th>reward</th><th>success</th><th>loss</th><th>KL</th>"
            f"<th>clip fraction</th></tr>{rows}</table>"
            f"<p>{len(evals)} held-out evaluations</p>")


def _num(value: Any) -> float:
    return float("nan") if value is None else float(value)


def _cell(value: Any) -> str:
    return "-" if value is None else html.escape(f"{value:.4g}" if isinstance(value, float) else str(value))
