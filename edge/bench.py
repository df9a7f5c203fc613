"""``shelfscan-agent bench``: per-stage latency of the agent's own path, on the device.

TFLite's ``benchmark_model`` reports no percentiles and times only the bare model; what an
operator needs is the whole frame path (decode, preprocess, invoke, postprocess, publish) for
every variant at every thread count, with cold start apart, accuracy beside speed, and the
conditions (CPU, governor, temperature, throttling) that make the numbers comparable.
"""

from __future__ import annotations

import json
import math
import resource
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from edge.errors import ShelfscanError
from edge.messages import envelope
from edge.progress import Progress
from edge.runtime import Classifier
from edge.sightings import Smoother

STAGES = ("decode", "preprocess", "invoke", "postprocess", "publish", "total")


def summarize(samples_s: list[float]) -> dict[str, float]:
    """min, p50, p90, p99, max, mean, std in milliseconds (linear-interpolated percentiles)."""
    if not samples_s:
        raise ValueError("no samples")
    a = np.asarray(samples_s, np.float64) * 1e3
    p50, p90, p99 = np.percentile(a, [50, 90, 99])
    return {"min": round(float(a.min()), 4), "p50": round(float(p50), 4), "p90": round(float(p90), 4),
            "p99": round(float(p99), 4), "max": round(float(a.max()), 4), "mean": round(float(a.mean()), 4),
            "std": round(float(a.std()), 4), "n": int(a.size)}  # fmt: skip


def recommend(rows: list[dict[str, Any]], tolerance_points: float) -> dict[str, Any] | None:
    """The fastest (p50 total) row whose top-1 is within ``tolerance_points`` of the best top-1.

    Rows without accuracy figures compete on speed alone only when no row has them.
    """
    if not rows:
        return None
    scored = [r for r in rows if r.get("top1") is not None]
    if scored:
        best = max(r["top1"] for r in scored)
        pool = [r for r in scored if 100 * (best - r["top1"]) <= tolerance_points + 1e-9]
    else:
        pool = rows
    return min(pool, key=lambda r: r["stages"]["total"]["p50"])


def bundles_in(paths: list[str]) -> list[Path]:
    """Bundle directories named directly, or every bundle one level inside a directory."""
    out: list[Path] = []
    for raw in paths:
        p = Path(raw)
        if (p / "manifest.json").is_file():
            out.append(p)
        elif p.is_dir():
            out += sorted(d for d in p.iterdir() if (d / "manifest.json").is_file())
        else:
            raise ShelfscanError(f"{p}: not a bundle or a directory of bundles")
    if not out:
        raise ShelfscanError(f"no bundles found in {', '.join(paths)}")
    return out


class FrameFeed:
    """Encoded frames to decode each iteration: a video's frames, or one synthetic 640x480 JPEG."""

    def __init__(self, video: str | None, limit: int) -> None:
        self.frames: list[bytes] = []
        if video:
            cap = cv2.VideoCapture(video)
            while len(self.frames) < limit:
                ok, frame = cap.read()
                if not ok:
                    break
                self.frames.append(cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes())
            cap.release()
            if not self.frames:
                raise ShelfscanError(f"{video}: no frames could be read")
        else:
            rng = np.random.default_rng(0)
            base = cv2.GaussianBlur(rng.integers(0, 256, (480, 640, 3), dtype=np.uint8), (0, 0), 3)
            self.frames.append(cv2.imencode(".jpg", base, [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes())

    def get(self, i: int) -> bytes:
        return self.frames[i % len(self.frames)]


def _rss_mb() -> float:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def bench_one(bundle: Path, threads: int, feed: FrameFeed, runs: int, warmup: int, compare_raw: bool,
              device_id: str = "bench") -> dict[str, Any]:  # fmt: skip
    t0 = time.perf_counter()
    clf = Classifier.from_bundle(bundle, threads)
    load_s = time.perf_counter() - t0
    smoother = Smoother(3)
    times: dict[str, list[float]] = {s: [] for s in STAGES}
    first_s = 0.0
    for i in range(warmup + runs):
        a = time.perf_counter()
        frame = cv2.imdecode(np.frombuffer(feed.get(i), np.uint8), cv2.IMREAD_COLOR)
        b = time.perf_counter()
        clf.preprocessor.from_bgr(frame)
        c = time.perf_counter()
        clf.run_model()
        d = time.perf_counter()
        top = clf.predictions(smoother.update(clf.output_scores()), 3)
        e = time.perf_counter()
        envelope("classification", device_id, i, clf.bundle.model_id,
                 top_k=[{"label": p.label, "score": round(p.score, 4)} for p in top])  # fmt: skip
        f = time.perf_counter()
        if i == 0:
            first_s = f - a
        if i >= warmup:
            for stage, value in zip(STAGES, (b - a, c - b, d - c, e - d, f - e, f - a), strict=True):
                times[stage].append(value)
    row: dict[str, Any] = {
        "bundle": str(bundle), "name": clf.bundle.manifest.name, "variant": clf.bundle.manifest.variant,
        "version": clf.bundle.manifest.version, "threads": threads,
        "runtime": {"package": clf.backend.name, "version": clf.backend.version},
        "delegate": {"xnnpack_applied": clf.delegate.applied, "delegated_ops": clf.delegate.delegated_ops,
                     "total_ops": clf.delegate.total_ops, "delegate_nodes": clf.delegate.delegate_nodes},
        "cold_start_ms": {"load": round(1e3 * load_s, 3), "first_inference": round(1e3 * first_s, 3)},
        "stages": {s: summarize(v) for s, v in times.items()},
        "rss_mb": round(_rss_mb(), 1),
    }  # fmt: skip
    row["fps"] = round(1e3 / row["stages"]["total"]["mean"], 2)
    if compare_raw:
        raw = []
        for _ in range(max(runs, 10)):
            s = time.perf_counter()
            clf.interpreter.invoke()
            raw.append(time.perf_counter() - s)
        row["raw_invoke_ms"] = summarize(raw)
        row["invoke_vs_raw"] = round(row["stages"]["invoke"]["p50"] / row["raw_invoke_ms"]["p50"], 4)
        row["overhead_vs_raw"] = round(row["stages"]["total"]["p50"] / row["raw_invoke_ms"]["p50"], 4)
    return row


def run_bench(bundles: list[Path], threads: list[int], runs: int, warmup: int, video: str | None,
              eval_dir: str | None, compare_raw: bool, tolerance: float,
              on_row: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:  # fmt: skip
    from edge.sysinfo import machine_info

    feed = FrameFeed(video, limit=max(runs + warmup, 1))
    accuracy: dict[str, float] = {}
    if eval_dir:
        from edge.evaluate import evaluate_tree

        for b in bundles:
            ev, _ = evaluate_tree(Classifier.from_bundle(b, max(threads)), Path(eval_dir))
            accuracy[str(b)] = round(ev.top1, 4)
    rows = []
    with Progress(len(bundles) * len(threads), "bench", unit="config") as bar:
        for b in bundles:
            for t in threads:
                row = bench_one(b, t, feed, runs, warmup, compare_raw)
                row["top1"] = accuracy.get(str(b))
                rows.append(row)
                if on_row:
                    on_row(row)
                bar.update()
    best = recommend(rows, tolerance)
    return {
        "machine": machine_info(),
        "source": video or "synthetic 640x480 JPEG", "runs": runs, "warmup": warmup,
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "results": rows, "tolerance_points": tolerance,
        "recommendation": None if best is None else
        {"bundle": best["bundle"], "variant": best["variant"], "threads": best["threads"],
         "p50_ms": best["stages"]["total"]["p50"], "top1": best.get("top1")},
    }  # fmt: skip


def format_table(report: dict[str, Any]) -> str:
    head = (f"{'variant':<24} {'thr':>3} {'load ms':>8} {'first ms':>8} {'decode':>7} {'prep':>7} {'invoke':>8} "
            f"{'post':>6} {'pub':>6} {'p50':>8} {'p99':>8} {'fps':>7} {'top-1':>7} {'xnn':>7}")  # fmt: skip
    lines = [head, "-" * len(head)]
    for r in report["results"]:
        s = r["stages"]
        top1 = f"{100 * r['top1']:.1f}%" if r.get("top1") is not None else "-"
        name = f"{r['name']}-{r['variant']}"[:24]
        cold = r["cold_start_ms"]
        lines.append(
            f"{name:<24} {r['threads']:>3} {cold['load']:>8.1f} {cold['first_inference']:>8.1f} "
            f"{s['decode']['p50']:>7.2f} {s['preprocess']['p50']:>7.2f} {s['invoke']['p50']:>8.2f} "
            f"{s['postprocess']['p50']:>6.2f} {s['publish']['p50']:>6.2f} {s['total']['p50']:>8.2f} "
            f"{s['total']['p99']:>8.2f} {r['fps']:>7.1f} {top1:>7} "
            f"{r['delegate']['delegated_ops']:>3}/{r['delegate']['total_ops']:<3}"
        )
        if "invoke_vs_raw" in r:
            lines.append(f"{'':<24} raw invoke p50 {r['raw_invoke_ms']['p50']:.2f} ms: invoke/raw "
                         f"{r['invoke_vs_raw']:.3f}, frame path/raw {r['overhead_vs_raw']:.3f}")  # fmt: skip
    m = report["machine"]
    lines.append(f"machine: {m.get('cpu')}, {m.get('cores_available')} cores, governor {m.get('governor', '?')}, "
                 f"{m.get('temperature_c', '?')} °C, throttled {m.get('throttled', '?')}; peak RSS "
                 f"{report['peak_rss_mb']} MB; ms are p50 unless noted")  # fmt: skip
    rec = report["recommendation"]
    if rec:
        acc = f", top-1 {100 * rec['top1']:.1f} %" if rec.get("top1") is not None else ""
        lines.append(f"recommendation: {Path(rec['bundle']).name} at {rec['threads']} threads ({rec['p50_ms']:.2f} "
                     f"ms p50{acc}; fastest within {report['tolerance_points']} top-1 points)")  # fmt: skip
    return "\n".join(lines)


def dumps(report: dict[str, Any]) -> str:
    return json.dumps(report, indent=2, default=lambda o: None if isinstance(o, float) and math.isnan(o) else str(o))
