"""Figures and the self-contained ``report.html`` of a training run."""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path
from typing import Any

import numpy as np


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def class_distribution_png(counts: dict[str, dict[str, int]], path: Path) -> None:
    plt = _plt()
    classes = list(next(iter(counts.values())))
    fig, ax = plt.subplots(figsize=(max(6, 0.35 * len(classes)), 4))
    bottom = np.zeros(len(classes))
    for split, per_class in counts.items():
        values = np.array([per_class[c] for c in classes])
        ax.bar(classes, values, bottom=bottom, label=split)
        bottom += values
    ax.set_ylabel("images")
    ax.set_title("images per class")
    ax.tick_params(axis="x", rotation=70)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def confusion_png(cm: list[list[int]], classes: list[str], path: Path) -> None:
    plt = _plt()
    arr = np.asarray(cm)
    size = max(5, 0.3 * len(classes) + 2)
    fig, ax = plt.subplots(figsize=(size, size))
    norm = arr / np.maximum(arr.sum(axis=1, keepdims=True), 1)
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(classes)), classes, rotation=90, fontsize=7)
    ax.set_yticks(range(len(classes)), classes, fontsize=7)
    ax.set_xlabel("predicted")
    ax.set_ylabel("truth")
    for i, j in zip(*np.nonzero(arr), strict=True):
        ax.text(
            j, i, str(arr[i, j]), ha="center", va="center", fontsize=6, color="black" if norm[i, j] < 0.6 else "white"
        )
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def curves_png(history: dict[str, list[float]], path: Path, metrics: tuple[str, str] = ("loss", "accuracy")) -> None:
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, metric in zip(axes, metrics, strict=True):
        for prefix, phase in (("", "head"), ("ft_", "fine-tune")):
            for split in ("", "val_"):
                key = f"{prefix}{split}{metric}"
                if key in history:
                    ax.plot(history[key], label=f"{phase} {split.rstrip('_') or 'train'}")
        ax.set_title(metric)
        ax.set_xlabel("epoch")
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _img(path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode()
    mime = "jpeg" if path.suffix.lower() in (".jpg", ".jpeg") else "png"
    return f'<img alt="{path.stem}" src="data:image/{mime};base64,{data}">'


def write_html(run_dir: Path, metrics: dict[str, Any], config: dict[str, Any], warnings: list[str]) -> Path:
    """One file with everything embedded, so it can be mailed or attached to a ticket."""
    e = html.escape
    banner = ""
    if config.get("weights") == "none":
        banner = '<p class="warn">RANDOM WEIGHTS (--weights none): these figures say nothing about a real model.</p>'
    rows = []
    for split in ("val", "test"):
        if split in metrics:
            m = metrics[split]
            rows.append(
                f"<tr><td>{split}</td><td>{m['images']}</td><td>{100 * m['top1']:.2f} %</td>"
                f"<td>{100 * m['top5']:.2f} %</td><td>{m['macro_f1']:.3f}</td></tr>"
            )
    per_class = "".join(
        f"<tr><td>{e(c)}</td><td>{v['precision']:.3f}</td><td>{v['recall']:.3f}</td><td>{v['f1']:.3f}</td>"
        f"<td>{v['support']}</td></tr>"
        for c, v in metrics["val"]["per_class"].items()
    )
    warn = "".join(f"<li>{e(w)}</li>" for w in warnings)
    content = f"""<h1>shelfscan training report</h1>{banner}
<p>backbone <b>{e(str(config.get("backbone")))}</b>, weights <b>{e(str(config.get("weights")))}</b>,
input {config.get("input_size")} px, run {e(run_dir.name)}</p>
<h2>Accuracy</h2><table><tr><th>split</th><th>images</th><th>top-1</th><th>top-5</th><th>macro F1</th></tr>
{"".join(rows)}</table>
{f"<h2>Warnings</h2><ul>{warn}</ul>" if warn else ""}
<h2>Training curves</h2>{_img(run_dir / "training_curves.png")}
<h2>Confusion matrix (val)</h2>{_img(run_dir / "confusion_matrix.png")}
<h2>Per class (val)</h2><table><tr><th>class</th><th>precision</th><th>recall</th><th>F1</th><th>images</th></tr>
{per_class}</table>
<h2>Class distribution</h2>{_img(run_dir / "class_distribution.png")}"""
    css = ".warn{background:#fdd;padding:1em;font-weight:bold}img{max-width:100%}"
    return _write_page(run_dir, "shelfscan training report", css, content, config)


def write_detector_html(run_dir: Path, metrics: dict[str, Any], config: dict[str, Any], figures: list[str]) -> Path:
    """The detector run's report: AP, count error, curves and example frames with boxes."""
    e = html.escape
    m = metrics["val"]
    examples = "".join(_img(run_dir / name) for name in figures)
    content = f"""<h1>shelfscan facing detector report</h1>
<p>backbone <b>mobilenet_v2</b>, weights <b>{e(str(config.get("weights")))}</b>, input
{config["height"]}x{config["width"]} px, run {e(run_dir.name)}</p>
<h2>Detection (val: shelves composed from val photos only)</h2>
<table><tr><th>images</th><th>facings</th><th>AP50</th><th>AP50:95</th><th>mean |count error| per image</th></tr>
<tr><td>{m["images"]}</td><td>{m["truth_boxes"]}</td><td>{m["ap50"]:.4f}</td><td>{m["ap50_95"]:.4f}</td>
<td>{m["count_mae"]:.3f}</td></tr></table>
<h2>Example frames</h2><p>truth thin green, detections red with scores</p>{examples}
<h2>Training curves</h2>{_img(run_dir / "training_curves.png")}"""
    return _write_page(run_dir, "shelfscan detector report", "img{max-width:49%;margin:2px}", content, config)


def _write_page(run_dir: Path, title: str, css: str, content: str, config: dict[str, Any]) -> Path:
    """Write ``run_dir/report.html``: the page around a report's own content (head, the table style, the run's
    configuration at the end), one for the classifier's and the detector's reports alike."""
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>{title}</title>
<style>body{{font-family:sans-serif;max-width:1100px;margin:2em auto}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:3px 8px;text-align:right}}td:first-child{{text-align:left}}
{css}</style></head><body>
{content}
<h2>Configuration</h2><pre>{html.escape(json.dumps(config, indent=2))}</pre>
</body></html>"""
    path = run_dir / "report.html"
    path.write_text(page, encoding="utf-8")
    return path
