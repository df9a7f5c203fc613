"""Every variant judged through the edge runtime, the way the device will run it.

Accuracy (top-1, top-5, agreement with the Keras model) on a labelled folder, file size, load
time and invoke latency at 1 and 2 threads, plus the accuracy gate.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edge.evaluate import evaluate_items
from edge.runtime import Classifier


def invoke_latency_ms(
    bundle: Path, threads: int, runs: int = 30, opener: Callable[..., Any] = Classifier.from_bundle
) -> float:
    """Median ``invoke()`` time of the bundle's model (a classifier, or whatever ``opener`` opens)."""
    model = opener(bundle, threads)
    model.preprocessor.from_bgr(np.full((model.bundle.spec.height, model.bundle.spec.width, 3), 128, np.uint8))
    model.run_model()
    for _ in range(3):
        model.interpreter.invoke()
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        model.interpreter.invoke()
        times.append(time.perf_counter() - t0)
    return round(1e3 * statistics.median(times), 3)


def runtime_row(
    bundle: Path, runs: int, opener: Callable[..., Any] = Classifier.from_bundle
) -> tuple[Any, dict[str, Any]]:
    """The bundle's model opened at 2 threads, and its row: size, load time, input type, XNNPACK coverage and
    invoke latency at 1 and 2 threads (every variant, classifier or detector, has these)."""
    t0 = time.perf_counter()
    model = opener(bundle, 2)
    load_ms = round(1e3 * (time.perf_counter() - t0), 1)
    return model, {
        "size_bytes": model.bundle.manifest.model.size_bytes,
        "load_ms": load_ms,
        "input": model.io.input.dtype,
        "xnnpack_ops": f"{model.delegate.delegated_ops}/{model.delegate.total_ops}",
        "invoke_ms_1t": invoke_latency_ms(bundle, 1, runs, opener),
        "invoke_ms_2t": invoke_latency_ms(bundle, 2, runs, opener),
    }


def evaluate_variant(
    bundle: Path, items: list[tuple[Path, str]] | None, keras_top1: dict[str, int], runs: int
) -> dict[str, Any]:
    clf, row = runtime_row(bundle, runs)
    if items is not None:
        ev, results = evaluate_items(clf, items, k=5)
        agree = [r.predictions[0].index == keras_top1[r.path] for r in results if not r.error and r.path in keras_top1]
        row |= {
            "top1": round(ev.top1, 4),
            "top5": round(ev.top5, 4),
            "images": ev.total,
            "agreement": round(float(np.mean(agree)), 4) if agree else None,
        }
    return row


def gate(
    rows: dict[str, dict[str, Any]], keras_value: float | None, max_drop_points: float, key: str = "top1"
) -> list[str]:
    """Variants whose ``key`` (top-1; a detector's AP50) falls more than ``max_drop_points`` below Keras's."""
    if keras_value is None:
        return []
    return [name for name, r in rows.items() if key in r and 100 * (keras_value - r[key]) > max_drop_points]


Column = tuple[str, str, Callable[[float], str]]  # header, row key, how a value is written


def percent(value: float) -> str:
    return f"{100 * value:.2f} %"


def fixed(spec: str) -> Callable[[float], str]:
    return lambda value: format(value, spec)


CLASSIFY_COLUMNS: tuple[Column, ...] = (
    ("top-1", "top1", percent),
    ("top-5", "top5", percent),
    ("agreement", "agreement", percent),
)


def markdown_table(
    rows: dict[str, dict[str, Any]], keras: dict[str, Any] | None, columns: Sequence[Column] = CLASSIFY_COLUMNS
) -> str:
    """The variants side by side: size, the task's figures (``columns``), load time and invoke latency."""
    heads = ["variant", "size (MB)", "×fp32", *(c[0] for c in columns), "load (ms)", "invoke 1t (ms)", "invoke 2t (ms)"]
    lines = ["| " + " | ".join(heads) + " |", "|" + "---|" * len(heads)]

    def figures(r: dict[str, Any]) -> list[str]:
        return [write(r[key]) if r.get(key) is not None else "—" for _, key, write in columns]

    if keras:
        lines.append("| keras | — | — | " + " | ".join(figures(keras)) + " | — | — | — |")
    base = rows.get("fp32", {}).get("size_bytes")
    for name, r in rows.items():
        ratio = f"{r['size_bytes'] / base:.3f}" if base else "—"
        cells = [name, f"{r['size_bytes'] / 1e6:.2f}", ratio, *figures(r)]
        cells += [str(r["load_ms"]), str(r["invoke_ms_1t"]), str(r["invoke_ms_2t"])]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
