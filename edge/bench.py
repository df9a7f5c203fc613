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

from edge.delegates import DelegateSpec
from edge.errors import ShelfscanError
from edge.messages import envelope
from edge.progress import Progress
from edge.runtime import Classifier


def summarize(samples_s: list[float]) -> dict[str, float]:
    """min, p50, p90, p99, max, mean, std in milliseconds (linear-interpolated percentiles)."""
    if not samples_s:
        raise ValueError("no samples")
    a = np.asarray(samples_s, np.float64) * 1e3
    p50, p90, p99 = np.percentile(a, [50, 90, 99])
    return {
        "min": round(float(a.min()), 4),
        "p50": round(float(p50), 4),
        "p90": round(float(p90), 4),
        "p99": round(float(p99), 4),
        "max": round(float(a.max()), 4),
        "mean": round(float(a.mean()), 4),
        "std": round(float(a.std()), 4),
        "n": int(a.size),
    }


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
    """Bundle directories named directly, or every bundle one level inside a directory, each once.

    A device's bundle folder holds ``current``, a symlink to one of the bundles beside it: a
    bundle reached twice (by its name and through a link) is benchmarked once, under its name.
    """
    out: list[Path] = []
    for raw in paths:
        p = Path(raw)
        if (p / "manifest.json").is_file():
            out.append(p)
        elif p.is_dir():
            found = sorted(d for d in p.iterdir() if (d / "manifest.json").is_file())
            out += sorted(found, key=lambda d: d.is_symlink())  # real directories first: they keep their name
        else:
            raise ShelfscanError(f"{p}: not a bundle or a directory of bundles")
    if not out:
        raise ShelfscanError(f"no bundles found in {', '.join(paths)}")
    seen: set[Path] = set()
    unique = []
    for d in out:
        if d.resolve() not in seen:
            seen.add(d.resolve())
            unique.append(d)
    return sorted(unique)


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


def bench_one(
    bundle: Path,
    threads: int,
    feed: FrameFeed,
    runs: int,
    warmup: int,
    compare_raw: bool,
    device_id: str = "bench",
    detector: Path | None = None,
    delegate: DelegateSpec | None = None,
) -> dict[str, Any]:
    """One configuration through the agent's own frame pipeline (``edge.pipelines``), stage by stage.

    With ``detector`` the pipeline is detect_classify: ``bundle`` is the classifier that names
    each facing the detector finds. With ``delegate`` both models run on that external delegate.
    """
    from edge.agent_setup import build_pipeline
    from edge.config import CountingConfig, InferenceConfig

    t0 = time.perf_counter()
    models: dict[str, Any] = {"classifier": Classifier.from_bundle(bundle, threads, delegate=delegate)}
    if detector is not None:
        from edge.detector import Detector

        models["detector"] = Detector.from_bundle(detector, threads, delegate=delegate)
    load_s = time.perf_counter() - t0
    inference = InferenceConfig(pipeline="detect_classify" if detector else "classify")
    pipeline = build_pipeline(models, inference, CountingConfig())
    pipeline.start_scan()
    clf = models["classifier"]
    decode, publish, total = [], [], []
    first_s = 0.0
    for i in range(warmup + runs):
        if i == warmup:
            pipeline.clock.clear()
        a = time.perf_counter()
        frame = cv2.imdecode(np.frombuffer(feed.get(i), np.uint8), cv2.IMREAD_COLOR)
        assert frame is not None  # the feed holds images it encoded itself
        b = time.perf_counter()
        reports = pipeline.process(frame, time.time())
        c = time.perf_counter()
        top = getattr(pipeline, "top_k", None)
        if top is not None:
            envelope(
                "classification",
                device_id,
                i,
                clf.bundle.model_id,
                top_k=[{"label": p.label, "score": round(p.score, 4)} for p in top(3)],
            )
        for r in reports:
            envelope(r.kind, device_id, i, clf.bundle.model_id, **r.body)
        if reports or top is None:
            envelope("counts", device_id, i, clf.bundle.model_id, **pipeline.counts())
        d = time.perf_counter()
        if i == 0:
            first_s = d - a
        if i >= warmup:
            decode.append(b - a)
            publish.append(d - c)
            total.append(d - a)
    stage_samples = {s: list(v) for s, v in pipeline.clock.samples.items() if s != "frame" and v}
    if detector is None:  # the names the classify rows have always had
        stage_samples["postprocess"] = stage_samples.pop("post")
    stages = {
        "decode": summarize(decode),
        **{s: summarize(v) for s, v in stage_samples.items()},
        "publish": summarize(publish),
        "total": summarize(total),
    }
    det = models.get("detector")
    row: dict[str, Any] = {
        "bundle": str(bundle),
        "name": clf.bundle.manifest.name,
        "variant": clf.bundle.manifest.variant,
        "version": clf.bundle.manifest.version,
        "threads": threads,
        "pipeline": str(pipeline.mode),
        "runtime": {"package": clf.backend.name, "version": clf.backend.version},
        "delegate": {
            "xnnpack_applied": clf.delegate.applied,
            "delegated_ops": clf.delegate.delegated_ops,
            "total_ops": clf.delegate.total_ops,
            "delegate_nodes": clf.delegate.delegate_nodes,
            "external": delegate.describe() if delegate else None,
        },
        "resize": clf.preprocessor.resize_kernel,
        "cold_start_ms": {"load": round(1e3 * load_s, 3), "first_inference": round(1e3 * first_s, 3)},
        "stages": stages,
        "rss_mb": round(_rss_mb(), 1),
    }
    if det is not None:
        from edge.facing_pipeline import DetectClassifyPipeline

        assert isinstance(pipeline, DetectClassifyPipeline)  # build_pipeline's choice when a detector is given
        row["detector"] = {"bundle": str(detector), **det.bundle.model_id, "variant": det.bundle.manifest.variant}
        row["facings_per_frame"] = round(float(np.mean(list(pipeline.facings_per_frame)[-runs:])), 2)
    row["fps"] = round(1e3 / row["stages"]["total"]["mean"], 2)
    if compare_raw:
        raw = []
        for _ in range(max(runs, 10)):
            s = time.perf_counter()
            clf.interpreter.invoke()
            raw.append(time.perf_counter() - s)
        row["raw_invoke_ms"] = summarize(raw)
        if "invoke" in stages:
            row["invoke_vs_raw"] = round(row["stages"]["invoke"]["p50"] / row["raw_invoke_ms"]["p50"], 4)
        row["overhead_vs_raw"] = round(row["stages"]["total"]["p50"] / row["raw_invoke_ms"]["p50"], 4)
    return row


def run_bench(
    bundles: list[Path],
    threads: list[int],
    runs: int,
    warmup: int,
    video: str | None,
    eval_dir: str | None,
    compare_raw: bool,
    tolerance: float,
    on_row: Callable[[dict[str, Any]], None] | None = None,
    detector: Path | None = None,
    delegate: DelegateSpec | None = None,
) -> dict[str, Any]:
    from edge.sysinfo import machine_info

    feed = FrameFeed(video, limit=max(runs + warmup, 1))
    accuracy: dict[str, float] = {}
    if eval_dir:
        from edge.evaluate import evaluate_tree

        for b in bundles:
            ev, _ = evaluate_tree(Classifier.from_bundle(b, max(threads), delegate=delegate), Path(eval_dir))
            accuracy[str(b)] = round(ev.top1, 4)
    rows = []
    with Progress(len(bundles) * len(threads), "bench", unit="config") as bar:
        for b in bundles:
            for t in threads:
                row = bench_one(b, t, feed, runs, warmup, compare_raw, detector=detector, delegate=delegate)
                row["top1"] = accuracy.get(str(b))
                rows.append(row)
                if on_row:
                    on_row(row)
                bar.update()
    best = recommend(rows, tolerance)
    return {
        "machine": machine_info(),
        "source": video or "synthetic 640x480 JPEG",
        "runs": runs,
        "warmup": warmup,
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "results": rows,
        "tolerance_points": tolerance,
        "recommendation": None
        if best is None
        else {
            "bundle": best["bundle"],
            "variant": best["variant"],
            "threads": best["threads"],
            "p50_ms": best["stages"]["total"]["p50"],
            "top1": best.get("top1"),
        },
    }


def format_table(report: dict[str, Any]) -> str:
    """One table per pipeline: its own stage columns (p50 ms), then the frame total, fps and accuracy."""
    lines: list[str] = []
    for mode in dict.fromkeys(r.get("pipeline", "classify") for r in report["results"]):
        rows = [r for r in report["results"] if r.get("pipeline", "classify") == mode]
        stages = [s for s in rows[0]["stages"] if s != "total"]
        names = {"preprocess": "prep", "postprocess": "post", "publish": "pub"}
        head = (
            f"{'variant':<24} {'thr':>3} {'load ms':>8} {'first ms':>8} "
            + " ".join(f"{names.get(s, s):>8}" for s in stages)
            + f" {'p50':>8} {'p99':>8} {'fps':>7} {'top-1':>7}  resize  delegate (ops)"
        )
        if mode != "classify":
            lines.append(
                f"pipeline {mode}: detector {Path(rows[0]['detector']['bundle']).name}, "
                f"{rows[0].get('facings_per_frame', '?')} facings per frame"
            )
        lines += [head, "-" * len(head)]
        for r in rows:
            s = r["stages"]
            top1 = f"{100 * r['top1']:.1f}%" if r.get("top1") is not None else "-"
            name = f"{r['name']}-{r['variant']}"[:24]
            cold = r["cold_start_ms"]
            lines.append(
                f"{name:<24} {r['threads']:>3} {cold['load']:>8.1f} {cold['first_inference']:>8.1f} "
                + " ".join(f"{s[st]['p50']:>8.2f}" for st in stages)
                + f" {s['total']['p50']:>8.2f} {s['total']['p99']:>8.2f} {r['fps']:>7.1f} {top1:>7}  "
                + f"{r.get('resize', '?')}  {delegate_label(r['delegate'])}"
            )
            if "invoke_vs_raw" in r:
                lines.append(
                    f"{'':<24} raw invoke p50 {r['raw_invoke_ms']['p50']:.2f} ms: invoke/raw "
                    f"{r['invoke_vs_raw']:.3f}, frame path/raw {r['overhead_vs_raw']:.3f}"
                )
    m = report["machine"]
    lines.append(
        f"machine: {m.get('cpu')}, {m.get('cores_available')} cores, governor {m.get('governor', '?')}, "
        f"{m.get('temperature_c', '?')} °C, throttled {m.get('throttled', '?')}; peak RSS "
        f"{report['peak_rss_mb']} MB; ms are p50 unless noted"
    )
    rec = report["recommendation"]
    if rec:
        acc = f", top-1 {100 * rec['top1']:.1f} %" if rec.get("top1") is not None else ""
        lines.append(
            f"recommendation: {Path(rec['bundle']).name} at {rec['threads']} threads ({rec['p50_ms']:.2f} "
            f"ms p50{acc}; fastest within {report['tolerance_points']} top-1 points)"
        )
    return "\n".join(lines)


def delegate_label(delegate: dict[str, Any]) -> str:
    """What ran the model, for the table: the external delegate's library or XNNPACK, and the ops it took."""
    external = delegate.get("external")
    cpu = "xnnpack" if delegate["xnnpack_applied"] else "none"
    name = Path(external["library"]).name if external else cpu
    return f"{name} ({delegate['delegated_ops']}/{delegate['total_ops']})"


def dumps(report: dict[str, Any]) -> str:
    return json.dumps(report, indent=2, default=lambda o: None if isinstance(o, float) and math.isnan(o) else str(o))
