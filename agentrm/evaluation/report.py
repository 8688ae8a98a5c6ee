"""Plots (matplotlib, Agg backend: no display needed) and a self-contained HTML report.

The HTML carries its images inline as base64 PNG, so the one file can be mailed or archived;
user-supplied names are HTML-escaped.
"""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path
from typing import Any


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    _pyplot().close(fig)
    return buf.getvalue()


def reliability_png(report: dict[str, Any]) -> bytes | None:
    """Reliability diagram: observed positive rate vs mean predicted probability per bin."""
    entries = [s for s in report["scorers"] if s.get("reliability")]
    if not entries:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.plot([0, 1], [0, 1], color="grey", linestyle="--", label="perfectly calibrated")
    for s in entries:
        bins = [b for b in s["reliability"] if b["count"]]
        ece = f"{s['ece']:.3f}" if s.get("ece") is not None else "n/a"
        ax.plot([b["confidence"] for b in bins], [b["accuracy"] for b in bins], marker="o",
                label=f"{s['name']} (ECE {ece})")
    bins = report["config"]["ece_bins"]
    ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="mean predicted probability",
           ylabel="observed success rate", title=f"Reliability ({bins} equal-width bins)")
    ax.legend(fontsize=8)
    return _png(fig)


def best_of_n_png(report: dict[str, Any]) -> bytes | None:
    """Best-of-N accuracy per scorer (and the hybrid, held out) against the oracle."""
    hybrid = report.get("hybrid") or {}
    curves = dict(hybrid.get("best_of_n") or {})
    if not curves:
        curves = {s["name"]: s["best_of_n"] for s in report["scorers"] if s.get("best_of_n")}
    if not curves:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    oracle = None
    for name, rows in curves.items():
        rows = [r for r in rows if r["accuracy"] is not None]
        if not rows:
            continue
        ax.plot([r["n"] for r in rows], [r["accuracy"] for r in rows], marker=".", label=name)
        oracle = oracle or rows
    if oracle:
        ax.plot([r["n"] for r in oracle], [r["oracle"] for r in oracle], color="black",
                linestyle=":", label="oracle (pass@N)")
    ax.set(xlabel="N (candidates per group)", ylabel="accuracy of the top-ranked candidate",
           title="Best-of-N", ylim=(0, 1.02))
    ax.legend(fontsize=8)
    return _png(fig)


def _fmt(v: Any) -> str:
    return "—" if v is None else f"{v:.3f}" if isinstance(v, float) else html.escape(str(v))


def _table(columns: list[str], rows: list[list[Any]]) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{_fmt(v)}</td>" for v in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _img(png: bytes | None, alt: str) -> str:
    if png is None:
        return f"<p><em>{html.escape(alt)}: nothing to plot</em></p>"
    data = base64.b64encode(png).decode()
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def summary_rows(report: dict[str, Any], n: int = 4) -> list[list[Any]]:
    """One row per scorer (+ hybrid): n, AUC, ECE, best-of-n, oracle@n, first-error F1."""
    rows = []
    for s in report["scorers"]:
        bon = next((r for r in s.get("best_of_n", []) if r["n"] == n), {})
        f1 = (s.get("first_error") or {}).get("f1")
        rows.append([s["name"], s["n"], s["auc"], s["ece"], bon.get("accuracy"), bon.get("oracle"), f1])
    hybrid = report.get("hybrid") or {}
    if hybrid.get("best_of_n"):
        bon = next((r for r in hybrid["best_of_n"]["hybrid"] if r["n"] == n), {})
        rows.append([f"hybrid ({hybrid.get('kind')}, held out)" if hybrid.get("kind") == "learned"
                     else f"hybrid ({hybrid.get('spec')})", hybrid["n"], hybrid.get("auc"), None,
                     bon.get("accuracy"), bon.get("oracle"), None])
    return rows


SUMMARY_COLUMNS = ["scorer", "n", "AUC", "ECE", "BoN@{n}", "oracle@{n}", "first-err F1"]


def write_html(report: dict[str, Any], path: Path, title: str = "Verifier quality") -> None:
    lab = report["labels"]
    cols = [c.format(n=4) for c in SUMMARY_COLUMNS]
    parts = [f"<h1>{html.escape(title)}</h1>",
             f"<p>{lab['trajectories']} labelled trajectories ({lab['positives']} verified successes) in "
             f"{lab['groups']} groups (by {html.escape(lab['group_by'])}); labels: "
             f"{html.escape(str(lab['source']))} ({html.escape(lab['kind'])}).</p>",
             _table(cols, summary_rows(report)),
             "<h2>Best-of-N</h2>", _img(best_of_n_png(report), "best-of-N"),
             f"<p>{html.escape(report['config']['best_of_n'])}.</p>",
             "<h2>Calibration</h2>", _img(reliability_png(report), "reliability diagram"),
             f"<p>ECE over {report['config']['ece_bins']} {html.escape(report['config']['ece_binning'])} "
             "bins; only scorers whose values are probabilities.</p>"]
    hybrid = report.get("hybrid") or {}
    if hybrid.get("best_of_n"):
        names = list(hybrid["best_of_n"])
        ns = [r["n"] for r in hybrid["best_of_n"][names[0]]]
        rows = [[n] + [next(r["accuracy"] for r in hybrid["best_of_n"][k] if r["n"] == n) for k in names]
                for n in ns]
        parts += ["<h2>Hybrid side by side</h2>", _table(["N"] + names, rows)]
    path.write_text("<!doctype html><html><head><meta charset='utf-8'><title>"
                    f"{html.escape(title)}</title><style>body{{font-family:sans-serif;max-width:60em;"
                    "margin:auto}}table{border-collapse:collapse}td,th{border:1px solid #ccc;"
                    "padding:2px 6px;text-align:right}</style></head><body>"
                    + "\n".join(parts) + "</body></html>")
