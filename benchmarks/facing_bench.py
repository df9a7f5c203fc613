"""Facing-count acceptance figures (issue: facing counts in the agent), the detect_classify pipeline.

1. A dense shelf-pass video from the Freiburg **val** photos (trainer/shelf_video.py: two rows,
   runs of 1-5 touching identical facings, ~5 % empty slots, pan with zoom, bob, blur, noise,
   flicker, a 3 s stop; 640x480 at 10 fps).
2. The agent (``shelfscan-agent run``, its own process, no TensorFlow) on it in detect_classify with
   the int8 facing detector and the int8 MobileNetV2 classifier, through a real Mosquitto; its
   final counts, facings, gaps and shelf map against the video's truth: per-label count errors,
   gaps found and false, facings counted twice (each counted facing mapped back onto the shelf
   through the camera path of the frame it counted in), and its peak RSS.
3. ``shelfscan-agent bench`` on the same video: the frame budget per stage at 1 and 2 threads.
Run: python -m benchmarks.facing_bench (after benchmarks.detector_bench, which leaves the detector)
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.report import write_report

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("SHELFSCAN_SHARED", REPO.parent / "shared"))
FREIBURG = SHARED / "datasets" / "freiburg_groceries"
WEIGHTS = SHARED / "models" / "mobilenet_v2_1.0_224_imagenet" / "mobilenet_v2_1.0_224_imagenet_notop.weights.h5"
DETECTOR = REPO / "runs" / "facing-bundles" / "freiburg-facings-int8"
CLASSIFIER = REPO / "runs" / "bundles" / "freiburg-mnv2-cam-int8"


def ensure_classifier() -> Path:
    """The Freiburg MobileNetV2 head (shared ImageNet weights) with shelf-camera views, int8, kept in runs/."""
    if (CLASSIFIER / "manifest.json").is_file():
        return CLASSIFIER
    run = REPO / "runs" / "freiburg-mnv2-cam"
    train = ["trainer.cli", str(FREIBURG), "--out", str(run), "--backbone", "mobilenet_v2", "--weights", str(WEIGHTS),
             "--augment-views", "4", "--augment-camera"]  # fmt: skip
    convert = ["converter.cli", str(run), "--out", str(CLASSIFIER.parent), "--variants", "int8", "--name",
               "freiburg-mnv2-cam", "--eval", str(FREIBURG / "val")]  # fmt: skip
    for cmd in (train, convert):
        subprocess.run([sys.executable, "-m", *cmd], cwd=REPO, check=True)
    return CLASSIFIER


def match_facings(truth: dict[str, Any], facings: list[dict[str, Any]]) -> dict[str, Any]:
    """Each counted facing mapped onto the shelf (camera path of its frame) and matched to a true facing.

    Two counted facings on one true facing is a double count; a counted facing on none is a
    false one; a true facing with none is missed.
    """
    from edge.detections import box_iou
    from trainer.shelf_video import to_canvas

    true = [(f, r["row"]) for r in truth["rows"] for f in r["facings"]]
    true_boxes = np.array([f["box"] for f, _ in true], np.float32).reshape(-1, 4)
    placed = np.array([to_canvas(truth, f["frame_index"], f["box"]) for f in facings], np.float32).reshape(-1, 4)
    iou = box_iou(placed, true_boxes) if len(placed) and len(true_boxes) else np.zeros((len(placed), len(true)))
    hits: dict[int, list[int]] = {}
    false = 0
    for i in range(len(placed)):
        j = int(iou[i].argmax()) if iou.shape[1] else -1
        if j >= 0 and iou[i, j] >= 0.3:
            hits.setdefault(j, []).append(i)
        else:
            false += 1
    labelled = [(facings[hs[0]]["label"], true[j][0]["label"]) for j, hs in hits.items()]
    return {"true": len(true), "matched": len(hits), "missed": len(true) - len(hits), "false": false,
            "counted_twice": sum(len(hs) - 1 for hs in hits.values()),
            "label_correct": sum(a == b for a, b in labelled),
            "unknown": sum(a == "unknown" for a, _ in labelled)}  # fmt: skip


def run_agent(video: Path, tmp: Path, threads: int = 2) -> dict[str, Any]:
    """The agent on the video, unpaced (recorded video: backpressure, no drops), against Mosquitto."""
    from tests.broker import Broker
    from tests.mqtt_helpers import Subscriber, agent_config

    broker = Broker(tmp / "broker").start()
    try:
        sub = Subscriber(broker.port, "test/robot-1/#", persistent=False)
        cfg = agent_config(tmp, broker.port, CLASSIFIER, f'kind = "video"\npath = "{video}"\nfps = 1000',
                           model={"threads": threads, "detector": str(DETECTOR)},
                           inference={"pipeline": "detect_classify", "max_fps": 1000})  # fmt: skip
        start = time.perf_counter()
        with open(tmp / "agent.log", "wb") as log:
            proc = subprocess.Popen([sys.executable, "-m", "edge.cli", "run", "--config", str(cfg)], cwd=REPO,
                                    stdout=log, stderr=subprocess.STDOUT)  # fmt: skip
            peak_kb = 0
            while proc.poll() is None:
                try:
                    status = Path(f"/proc/{proc.pid}/status").read_text().splitlines()
                    peak_kb = max(peak_kb, int(next(x for x in status if x.startswith("VmHWM")).split()[1]))
                except (OSError, StopIteration):
                    pass
                time.sleep(0.2)
        wall = time.perf_counter() - start
        if proc.returncode != 0:
            raise SystemExit(f"agent exited {proc.returncode}: {(tmp / 'agent.log').read_text()[-2000:]}")
        sub.wait_for(lambda s: any(d.get("final") for d in s.of("counts")) and s.of("shelfmap"), 20)
        final = [d for d in sub.of("counts") if d.get("final")][-1]
        stats = sub.of("stats")
        result = {"final": final, "facings": sub.of("facing"), "gaps": sub.of("gap"), "shelfmap": sub.of("shelfmap"),
                  "wall_s": round(wall, 1), "peak_rss_mb": round(peak_kb / 1024, 1),
                  "stats": stats[-1] if stats else None}  # fmt: skip
        sub.close()
        return result
    finally:
        broker.stop()


def main() -> None:
    from trainer.shelf_composer import PhotoLibrary
    from trainer.shelf_video import PassSpec, compare_counts, render_pass

    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--seconds", type=float, default=60.0, help="length of the shelf pass")
    ap.add_argument("--seed", type=int, default=15)
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if not (DETECTOR / "manifest.json").is_file():
        raise SystemExit(f"{DETECTOR}: run python -m benchmarks.detector_bench first")
    ensure_classifier()
    tmp = Path(tempfile.mkdtemp(prefix="shelfscan-facings-"))
    video = REPO / "runs" / "shelfpass-val" / "pass.mp4"
    spec = PassSpec(seconds=args.seconds, seed=args.seed)
    truth = render_pass(PhotoLibrary.from_tree(FREIBURG / "val"), video, spec)
    agent = run_agent(video, tmp)
    messages = {k: agent[k] for k in ("final", "facings", "gaps", "shelfmap")}
    (video.parent / "agent-messages.json").write_text(json.dumps(messages, indent=1) + "\n")
    final = agent["final"]
    video_facts = {k: truth[k] for k in ("frames", "fps", "width", "height", "spec")}
    video_facts |= {"facings": sum(truth["totals"]["facings"].values()), "gaps": truth["totals"]["gaps"]}
    res: dict[str, Any] = {"video": video_facts}
    res["counts"] = compare_counts(truth, final["counts"], final.get("gaps", 0))
    res["facings"] = match_facings(truth, agent["facings"])
    from demo.score import match_gaps  # the demo's scoring: one gap matcher

    res["gaps"] = match_gaps(truth, agent["gaps"], agent["facings"])
    res["agent"] = {"wall_s": agent["wall_s"], "frames": truth["frames"],
                    "fps": round(truth["frames"] / agent["wall_s"], 2), "peak_rss_mb": agent["peak_rss_mb"],
                    "stats": agent["stats"]}  # fmt: skip
    out = tmp / "bench.json"
    subprocess.run([sys.executable, "-m", "edge.cli", "bench", str(CLASSIFIER), "--detector", str(DETECTOR),
                    "--source", str(video), "--threads", "1,2", "--runs", "150", "--warmup", "10", "--out", str(out)],
                   cwd=REPO, check=True)  # fmt: skip
    bench = json.loads(out.read_text())
    res["bench"] = bench["results"]
    c, f, g, a = res["counts"], res["facings"], res["gaps"], res["agent"]
    stage_names = [s for s in bench["results"][0]["stages"]]
    rows = [
        "| threads | " + " | ".join(stage_names) + " | fps | facings/frame |",
        "|---" * (len(stage_names) + 3) + "|",
    ]
    for r in bench["results"]:
        rows.append(f"| {r['threads']} | " + " | ".join(f"{r['stages'][s]['p50']:.2f}" for s in stage_names)
                    + f" | {r['fps']:.1f} | {r['facings_per_frame']} |")  # fmt: skip
    per_label = ", ".join(f"{k} {v['counted']}/{v['truth']}" for k, v in c["per_label"].items() if v["error"])
    body = (
        f"Shelf pass from the Freiburg **val** photos (seed {args.seed}): {truth['frames']} frames "
        f"{truth['width']}x{truth['height']} at {truth['fps']:g} fps, {res['video']['facings']} facings in two rows, "
        f"{res['video']['gaps']} gaps, a 3 s stop. Detector `{DETECTOR.relative_to(REPO)}`, classifier "
        f"`{CLASSIFIER.relative_to(REPO)}` (both int8), 2 threads, agent in its own process against Mosquitto, "
        "the video read as fast as the agent goes (no frame dropped).\n\n"
        "| figure | value | target |\n|---|---|---|\n"
        f"| per-label absolute count errors, summed / true facings | {c['abs_error']} / {c['facings']['truth']} = "
        f"**{100 * c['error_share']:.1f} %** | ≤ 5 % |\n"
        f"| facings counted (any label) / true | {f['matched'] + f['false']} / {f['true']} (missed {f['missed']}, "
        f"false {f['false']}) | |\n"
        f"| facings counted twice | **{f['counted_twice']}** | 0 |\n"
        f"| label right / unknown, of the matched facings | {f['label_correct']} / {f['unknown']} of "
        f"{f['matched']} | |\n"
        f"| gaps found | {g['found']} / {g['truth']} = **{100 * g['found_share']:.0f} %** | ≥ 90 % |\n"
        f"| false gaps | **{g['false']}** | ≤ 1 |\n"
        f"| agent throughput, end to end | **{a['fps']} frames/s** | ≥ 10 |\n"
        f"| agent peak RSS (VmHWM) | **{a['peak_rss_mb']:.0f} MB** | ≤ 250 MB |\n\n"
        f"Labels counted wrong: {per_label or 'none'}.\n\n"
        "## Frame budget: `shelfscan-agent bench --detector` on the same video\n\n"
        f"p50 per stage in ms (150 frames after 10 warm-up):\n\n" + "\n".join(rows) + "\n"
    )
    print(write_report("facings", "Facing counts (detect_classify) figures", res, body).read_text())


if __name__ == "__main__":
    main()
