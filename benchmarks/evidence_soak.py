"""Evidence ring soak: the agent keeps evidence images within its caps for minutes of constant demand.

The agent (its own process, classify pipeline on the reference MobileNetV2, a looping video,
real Mosquitto) gets ``cmd/snapshot`` every ``--interval`` seconds for ``--minutes``; each
snapshot writes a downscaled frame into ``state_dir/evidence``. Every second the folder's bytes
and files are summed from the disk (not from the agent's own accounting) and checked against
``evidence.max_bytes`` / ``evidence.max_files``; the agent's ``evidence`` messages and stats
are collected. Run: python -m benchmarks.evidence_soak [--minutes 10]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.report import write_report

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("SHELFSCAN_SHARED", REPO.parent / "shared"))
REFERENCE = SHARED / "models" / "tflite_reference"
MAX_BYTES = 2_000_000
MAX_FILES = 200


def folder_size(folder: Path) -> tuple[int, int]:
    files = [p for p in folder.glob("*.jpg")] if folder.is_dir() else []
    total = 0
    for p in files:
        with contextlib.suppress(FileNotFoundError):  # pruned between the listing and the stat
            total += p.stat().st_size
    return total, len(files)


def main() -> None:
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    from edge.bundle import write_bundle
    from edge.labels import read_labels
    from edge.preprocess import PreprocessSpec
    from tests.broker import Broker
    from tests.mqtt_helpers import Subscriber, agent_config, write_shelf_video

    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--interval", type=float, default=0.1, help="seconds between cmd/snapshot commands")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="shelfscan-soak-"))
    bundle = tmp / "bundle"
    write_bundle(
        bundle,
        REFERENCE / "tf2_mobilenet_v2_1.0_224_ptq.tflite",
        read_labels(REFERENCE / "imagenet_labels.txt"),
        PreprocessSpec(height=224, width=224, mean=(127.0,) * 3, std=(127.5,) * 3),
        name="imagenet-ref",
        version="1",
        backbone="mobilenet_v2",
        variant="int8",
    )
    video = tmp / "shelf.avi"
    write_shelf_video(
        video,
        [REFERENCE / "samples" / "chelsea.png", REFERENCE / "samples" / "coffee.png"],
        [0, 1, 0, 1],
        frames_per_run=20,
    )
    broker = Broker(tmp / "broker").start()
    try:
        cfg = agent_config(
            tmp,
            broker.port,
            bundle,
            f'kind = "video"\npath = "{video}"\nloop = true\nfps = 10',
            evidence={"max_bytes": MAX_BYTES, "max_files": MAX_FILES, "min_free_bytes": 0},
            inference={"max_fps": 10},
        )
        sub = Subscriber(broker.port, "test/robot-1/#", client_id="soak-sub", persistent=False)
        log = (tmp / "agent.log").open("wb")  # the agent writes it until the end of the soak
        agent = subprocess.Popen(
            [sys.executable, "-m", "edge.cli", "run", "--config", str(cfg)],
            cwd=REPO,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        cmd = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="soak-cmd")
        cmd.connect("127.0.0.1", broker.port)
        cmd.loop_start()
        if not sub.wait_for(lambda s: len(s.of("sighting")) >= 1, 60):
            raise SystemExit(f"agent did not start: {(tmp / 'agent.log').read_text()[-2000:]}")
        folder = tmp / "state" / "evidence"
        samples: list[tuple[float, int, int]] = []
        start = time.monotonic()
        next_cmd = next_sample = start
        sent = 0
        while time.monotonic() - start < args.minutes * 60:
            now = time.monotonic()
            if now >= next_cmd:
                cmd.publish("test/robot-1/cmd/snapshot", json.dumps({"request_id": str(sent)}), qos=1)
                sent += 1
                next_cmd += args.interval
            if now >= next_sample:
                samples.append((round(now - start, 1), *folder_size(folder)))
                next_sample += 1.0
            time.sleep(min(next_cmd, next_sample) - time.monotonic() if min(next_cmd, next_sample) > now else 0)
        time.sleep(2)
        stats = sub.of("stats")[-1].get("evidence", {})
        agent_alive = agent.poll() is None
        agent.terminate()
        agent.wait(30)
        cmd.loop_stop()
        messages = sub.of("evidence")
        sub.close()
    finally:
        broker.stop()
    peak_bytes = max(b for _, b, _ in samples)
    peak_files = max(n for _, _, n in samples)
    written = sum(sum(f["bytes"] for f in m["files"]) for m in messages)
    over = sum(b > MAX_BYTES for _, b, _ in samples)
    res: dict[str, Any] = {
        "minutes": args.minutes,
        "interval_s": args.interval,
        "snapshots_sent": sent,
        "evidence_messages": len(messages),
        "bytes_written": written,
        "max_bytes": MAX_BYTES,
        "max_files": MAX_FILES,
        "peak_bytes": peak_bytes,
        "peak_files": peak_files,
        "samples": len(samples),
        "over_cap_samples": over,
        "agent_stats": stats,
        "agent_alive_at_end": agent_alive,
        "final": samples[-1],
    }
    body = (
        f"The agent (classify pipeline, reference MobileNetV2, looping video at 10 fps, real Mosquitto) got "
        f"`cmd/snapshot` every {args.interval:g} s for {args.minutes:g} min; `evidence.max_bytes` {MAX_BYTES:,}, "
        f"`max_files` {MAX_FILES}. The folder was measured on disk every second.\n\n"
        "| figure | value |\n|---|---|\n"
        f"| snapshots asked / evidence messages | {sent} / {len(messages)} |\n"
        f"| evidence bytes written over the soak | {written / 1e6:.1f} MB ({written / MAX_BYTES:.0f}x the cap) |\n"
        f"| peak folder size on disk | **{peak_bytes:,} bytes** (cap {MAX_BYTES:,}) |\n"
        f"| peak files | {peak_files} (cap {MAX_FILES}) |\n"
        f"| samples over the byte cap | **{res['over_cap_samples']} of {len(samples)}** |\n"
        f"| agent running at the end | {agent_alive} |\n"
        f"| agent's own evidence stats | {json.dumps(stats)} |\n"
    )
    print(write_report("evidence_soak", "Evidence ring soak", res, body).read_text())
    if res["over_cap_samples"] or not agent_alive:
        raise SystemExit("evidence soak: the ring went over its cap or the agent died")


if __name__ == "__main__":
    main()
