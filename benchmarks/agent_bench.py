"""Agent acceptance figures: an int8 InceptionV3 bundle at 2 threads on a 640x480 video.

The agent runs in a child process of its own (no TensorFlow loaded, so its RSS is the
device's) against a local Mosquitto; in the same process, after the run, a bare ``invoke()``
loop on the same interpreter gives the reference median.
Run: python -m benchmarks.agent_bench
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from benchmarks.report import write_report

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("SHELFSCAN_SHARED", REPO.parent / "shared"))
FREIBURG = SHARED / "datasets" / "freiburg_groceries"

PROBE = r"""
import json, statistics, sys, time
from edge.agent_setup import build_agent
from edge.config import load_config
agent = build_agent(load_config(sys.argv[1]))
stamps = []
process = agent.process
def timed(image, ts):
    process(image, ts)
    stamps.append(time.perf_counter())
agent.process = timed
agent.run()
clf = agent.pipeline.classifier
clf.run_model()
bare, paced = [], []
for _ in range(40):
    s = time.perf_counter(); clf.interpreter.invoke(); bare.append(time.perf_counter() - s)
gap = 1.0 / float(sys.argv[2])  # the same invoke at the run's frame rate: idle cores wake slowly
pause = max(0.0, gap - statistics.median(bare))
for _ in range(40 if gap > 0.002 else 0):
    time.sleep(pause)
    s = time.perf_counter(); clf.interpreter.invoke(); paced.append(time.perf_counter() - s)
latency = agent.pipeline.clock.samples
frame = sorted(latency["frame"])
hwm = [l for l in open("/proc/self/status") if l.startswith("VmHWM")][0].split()[1]
print(json.dumps({
    "frames": agent.frames_done, "dropped": agent.capture.dropped,
    "busy_fps": (len(stamps) - 1) / (stamps[-1] - stamps[0]) if len(stamps) > 1 else 0.0,
    "frame_ms_p50": 1e3 * statistics.median(frame), "frame_ms_p99": 1e3 * frame[int(0.99 * (len(frame) - 1))],
    "agent_invoke_ms_p50": 1e3 * statistics.median(latency["invoke"]),
    "preprocess_ms_p50": 1e3 * statistics.median(latency["preprocess"]),
    "bare_invoke_ms_p50": 1e3 * statistics.median(bare),
    "paced_bare_invoke_ms_p50": 1e3 * statistics.median(paced) if paced else None,
    "peak_rss_mb": int(hwm) / 1024,
    "tensorflow_loaded": "tensorflow" in sys.modules,
}))
"""


SWEEP = REPO / "runs" / "bench-bundles"


def ensure_bundles(tmp: Path) -> Path:
    """InceptionV3 (random weights) fp32/dynamic/int8 and the Freiburg MobileNetV2 int8, kept in runs/."""
    from benchmarks.converter_bench import inception_run
    from converter.cli import main as convert

    if not (SWEEP / "inception_v3-random-int8" / "manifest.json").is_file():
        rc = convert(
            [
                str(inception_run(tmp)),
                "--out",
                str(SWEEP),
                "--variants",
                "fp32,dynamic,int8",
                "--calibration",
                str(FREIBURG / "train"),
                "--calibration-count",
                "100",
                "--bench-runs",
                "3",
            ]
        )
        if rc != 0:
            raise SystemExit("InceptionV3 conversion failed")
    mnv2 = REPO / "runs" / "freiburg-mnv2"
    if not (SWEEP / "freiburg-mnv2-int8" / "manifest.json").is_file() and (mnv2 / "model.keras").is_file():
        convert([str(mnv2), "--out", str(SWEEP), "--variants", "int8", "--bench-runs", "3"])
    return SWEEP / "inception_v3-random-int8"


def sweep_table() -> tuple[str, dict]:
    """``shelfscan-agent bench`` over every bundle in runs/bench-bundles at 1 and 2 threads."""
    out = REPO / "runs" / "bench-sweep.json"
    cmd = [
        sys.executable,
        "-m",
        "edge.cli",
        "bench",
        str(SWEEP),
        "--threads",
        "1,2",
        "--runs",
        "30",
        "--warmup",
        "3",
        "--compare-raw",
        "--out",
        str(out),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=1800)
    if proc.returncode != 0:
        raise SystemExit(proc.stderr[-3000:])
    return proc.stdout, json.loads(out.read_text())


def main() -> None:
    from tests.broker import Broker
    from tests.mqtt_helpers import agent_config, write_shelf_video

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    tmp = Path(tempfile.mkdtemp(prefix="shelfscan-agentbench-"))
    bundle = ensure_bundles(tmp)
    ref = SHARED / "models" / "tflite_reference" / "samples"
    video = tmp / "shelf.avi"
    write_shelf_video(video, [ref / "chelsea.png", ref / "coffee.png"], [0, 1] * 4, frames_per_run=25)
    broker = Broker(tmp / "broker").start()
    probe = tmp / "probe.py"
    probe.write_text(PROBE)

    def run_probe(name: str, fps: float) -> dict:
        cfg = agent_config(
            tmp / name,
            broker.port,
            bundle,
            f'kind = "video"\npath = "{video}"\nfps = {fps}',
            model={"threads": 2},
            inference={"max_fps": 1000},
        )
        proc = subprocess.run(
            [sys.executable, str(probe), str(cfg), str(fps)],
            capture_output=True,
            text=True,
            cwd=REPO,
            env={**os.environ, "PYTHONPATH": str(REPO)},
            timeout=900,
        )
        if proc.returncode != 0:
            raise SystemExit(proc.stderr[-3000:])
        return json.loads(proc.stdout.strip().splitlines()[-1])

    try:
        (tmp / "latency").mkdir()
        (tmp / "throughput").mkdir()
        lat = run_probe("latency", 8)  # a camera slower than the model: every frame waits for nothing
        thr = run_probe("throughput", 1000)  # recorded video as fast as it goes (backpressure, no drops)
    finally:
        broker.stop()
    r = {"latency_run": lat, "throughput_run": thr}
    # Frames ready back to back (the unpaced run): decoded frame -> message vs bare invoke().
    r["latency_ratio"] = round(thr["frame_ms_p50"] / thr["bare_invoke_ms_p50"], 3)
    # Camera slower than the model: the cores idle between frames and the first invoke after
    # idling is slower on this VM for everyone; compared with both references.
    r["paced_latency_ratio_vs_bare"] = round(lat["frame_ms_p50"] / lat["bare_invoke_ms_p50"], 3)
    r["paced_latency_ratio_vs_paced_bare"] = round(lat["frame_ms_p50"] / lat["paced_bare_invoke_ms_p50"], 3)
    r["throughput_ratio"] = round(thr["busy_fps"] * thr["bare_invoke_ms_p50"] / 1e3, 3)
    body = (
        f"Bundle `{bundle.relative_to(REPO)}` (InceptionV3, random weights, int8, uint8 I/O, 299 px), 2 threads, "
        f"video 640x480 MJPG ({lat['frames']} frames). Latency run: video paced at 8 fps (below the model's rate). "
        f"Throughput run: unpaced, read with backpressure ({thr['frames']} frames, {thr['dropped']} dropped). "
        "Bare `invoke()` medians are measured in the same process right after each run.\n\n"
        "| figure | value | target |\n|---|---|---|\n"
        f"| frame → message handed to MQTT client, p50 (frames back to back) | {thr['frame_ms_p50']:.2f} ms | |\n"
        f"| same, p99 | {thr['frame_ms_p99']:.2f} ms | |\n"
        f"| preprocess p50 (640x480 → 299, antialiased) | {thr['preprocess_ms_p50']:.2f} ms | |\n"
        f"| bare `invoke()` p50, back to back, same process | {thr['bare_invoke_ms_p50']:.2f} ms | |\n"
        f"| latency ratio | **{r['latency_ratio']}** | ≤ 1.10 |\n"
        f"| paced at 8 fps: frame → message p50 | {lat['frame_ms_p50']:.2f} ms | |\n"
        f"| paced: bare `invoke()` p50 back to back / one every 125 ms | {lat['bare_invoke_ms_p50']:.2f} / "
        f"{lat['paced_bare_invoke_ms_p50']:.2f} ms | |\n"
        f"| paced latency ratio vs back-to-back / vs paced bare invoke | {r['paced_latency_ratio_vs_bare']} / "
        f"**{r['paced_latency_ratio_vs_paced_bare']}** | |\n"
        f"| video throughput (busy) | {thr['busy_fps']:.2f} frames/s | |\n"
        f"| throughput × bare invoke median | **{r['throughput_ratio']}** | ≥ 0.9 |\n"
        f"| agent peak RSS (VmHWM) | **{max(lat['peak_rss_mb'], thr['peak_rss_mb']):.0f} MB** | ≤ 200 MB |\n"
        f"| TensorFlow loaded in the agent | {lat['tensorflow_loaded'] or thr['tensorflow_loaded']} | False |\n"
    )
    table, sweep = sweep_table()
    r["bench_sweep"] = sweep
    rows = [
        "| bundle | threads | invoke p50 (ms) | raw invoke p50 (ms) | invoke / raw | total p50 | total p99 | fps |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in sweep["results"]:
        s = row["stages"]
        rows.append(
            f"| {Path(row['bundle']).name} | {row['threads']} | {s['invoke']['p50']:.2f} | "
            f"{row['raw_invoke_ms']['p50']:.2f} | **{row['invoke_vs_raw']:.3f}** | {s['total']['p50']:.2f} | "
            f"{s['total']['p99']:.2f} | {row['fps']:.1f} |"
        )
    body += (
        "\n## `shelfscan-agent bench` sweep\n\n`python -m edge.cli bench runs/bench-bundles --threads 1,2 --runs 30 "
        "--warmup 3 --compare-raw`: the bench's invoke median against a bare `invoke()` loop on the same "
        "interpreter, same run (target: within 10 %).\n\n" + "\n".join(rows) + "\n\n```\n" + table.strip() + "\n```\n"
    )
    print(write_report("agent", "Agent figures", r, body).read_text())


if __name__ == "__main__":
    main()
