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
BUNDLE = REPO / "runs" / "bench-inception_v3-int8"

PROBE = r"""
import json, resource, statistics, sys, time
from edge.agent import Agent
from edge.config import load_config
agent = Agent(load_config(sys.argv[1]))
t0 = time.perf_counter()
agent.run()
wall = time.perf_counter() - t0
clf = agent.clf
clf.interpreter.set_tensor(clf.io.input.index, clf.preprocessor.buffer)
bare = []
for _ in range(40):
    s = time.perf_counter(); clf.interpreter.invoke(); bare.append(time.perf_counter() - s)
frame = sorted(agent.latency["frame"])
print(json.dumps({
    "frames": agent.frames_done, "wall_s": wall, "dropped": agent.capture.dropped,
    "frame_ms_p50": 1e3 * statistics.median(frame), "frame_ms_p99": 1e3 * frame[int(0.99 * (len(frame) - 1))],
    "agent_invoke_ms_p50": 1e3 * statistics.median(agent.latency["invoke"]),
    "preprocess_ms_p50": 1e3 * statistics.median(agent.latency["preprocess"]),
    "bare_invoke_ms_p50": 1e3 * statistics.median(bare),
    "max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    "tensorflow_loaded": "tensorflow" in sys.modules,
}))
"""


def ensure_bundle(tmp: Path) -> Path:
    if (BUNDLE / "manifest.json").is_file():
        return BUNDLE
    from benchmarks.converter_bench import inception_run
    from converter.cli import main as convert

    run = inception_run(tmp)
    out = tmp / "bundles"
    rc = convert([str(run), "--out", str(out), "--variants", "int8", "--calibration", str(FREIBURG / "train"),
                  "--calibration-count", "100", "--bench-runs", "3"])  # fmt: skip
    if rc != 0:
        raise SystemExit("conversion failed")
    BUNDLE.parent.mkdir(parents=True, exist_ok=True)
    (out / "inception_v3-random-int8").rename(BUNDLE)
    return BUNDLE


def main() -> None:
    from tests.broker import Broker
    from tests.mqtt_helpers import agent_config, write_shelf_video

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    tmp = Path(tempfile.mkdtemp(prefix="shelfscan-agentbench-"))
    bundle = ensure_bundle(tmp)
    ref = SHARED / "models" / "tflite_reference" / "samples"
    video = tmp / "shelf.avi"
    write_shelf_video(video, [ref / "chelsea.png", ref / "coffee.png"], [0, 1] * 4, frames_per_run=25)
    broker = Broker(tmp / "broker").start()
    try:
        cfg = agent_config(tmp, broker.port, bundle, f'kind = "video"\npath = "{video}"\nfps = 1000',
                           model={"threads": 2}, inference={"max_fps": 1000})  # fmt: skip
        probe = tmp / "probe.py"
        probe.write_text(PROBE)
        proc = subprocess.run([sys.executable, str(probe), str(cfg)], capture_output=True, text=True, cwd=REPO,
                              env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=900)  # fmt: skip
    finally:
        broker.stop()
    if proc.returncode != 0:
        raise SystemExit(proc.stderr[-3000:])
    r = json.loads(proc.stdout.strip().splitlines()[-1])
    r["latency_ratio"] = round(r["frame_ms_p50"] / r["bare_invoke_ms_p50"], 3)
    r["throughput_fps"] = round(r["frames"] / r["wall_s"], 2)
    r["throughput_ratio"] = round(r["throughput_fps"] * r["bare_invoke_ms_p50"] / 1e3, 3)
    body = (
        f"Bundle `{bundle.relative_to(REPO)}` (InceptionV3, random weights, int8, uint8 I/O, 299 px), 2 threads, "
        f"video 640x480 MJPG, {r['frames']} frames classified, capture unpaced (newest frame wins).\n\n"
        "| figure | value | target |\n|---|---|---|\n"
        f"| frame → message handed to MQTT client, p50 | {r['frame_ms_p50']:.2f} ms | |\n"
        f"| same, p99 | {r['frame_ms_p99']:.2f} ms | |\n"
        f"| bare `invoke()` p50, same process | {r['bare_invoke_ms_p50']:.2f} ms | |\n"
        f"| ratio | **{r['latency_ratio']}** | ≤ 1.10 |\n"
        f"| video throughput | {r['throughput_fps']} frames/s | |\n"
        f"| throughput × invoke median | **{r['throughput_ratio']}** | ≥ 0.9 |\n"
        f"| agent peak RSS | **{r['max_rss_mb']:.0f} MB** | ≤ 200 MB |\n"
        f"| TensorFlow loaded in the agent | {r['tensorflow_loaded']} | False |\n"
    )
    print(write_report("agent", "Agent figures", r, body).read_text())


if __name__ == "__main__":
    main()
