"""``make demo`` / ``python -m demo``: data -> classifier and facing detector -> int8 bundles -> dense
shelf-pass video -> broker -> agent (detect_classify) -> live facings and gaps -> counts against the truth.
Offline, on a fresh machine.

Each stage runs the real command a user would (``shelfscan-train``, ``shelfscan-convert``,
``shelfscan-agent run``, ``shelfscan-agent shelfmap``) as a subprocess, so the demo is also an
end-to-end test of the CLIs. The shelf the agent scans and the shelves the detector learns from
come from the one shelf composer (``trainer/shelf_composer.py``, ``trainer/shelf_video.py``), the
detector's from the train photos and the video's from held-out ones.
Exit status: 0 when the counts and gaps meet the bar (``demo.score``), 1 when they do not, 2 when
a stage failed.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from demo import broker as embedded
from demo.data import from_folder, held_out, product_tree
from demo.live import LiveView
from demo.models import train_classifier, train_detector
from demo.products import BACKGROUND, generate
from demo.score import check_evidence, score, table
from demo.stages import StageError, run_cli, stage
from edge.watch import parse_broker_url

DEVICE, PREFIX = "demo-shelf-robot", "shelfscan-demo"
# Everything --quick shortens, and the default. The detector's sizes keep its training to one to three
# minutes on 2 cores (shelfscan-train's own defaults, 4000 shelves and 40 epochs, take ~15 minutes);
# on so few shelves it needs small batches: more steps per epoch (demo.models.DETECTOR_BATCH). Its boxes keep
# tightening to epoch 20 (600 shelves: val AP50:95 0.73 after 12 epochs, 0.79 after 20; boxes on the
# pass 7 % too wide after 12, 4 % after 20), and a box too wide narrows the gap beside it.
DEFAULTS: dict[str, Any] = {
    "per_class": 100,
    "calibration_count": 100,
    "train_shelves": 600,
    "val_shelves": 60,
    "detector_epochs": 20,
    "eval_shelves": 60,
    "seconds": 60.0,
}
QUICK: dict[str, Any] = {
    "per_class": 80,
    "calibration_count": 50,
    "train_shelves": 300,
    "val_shelves": 30,
    "detector_epochs": 12,
    "eval_shelves": 20,
    "seconds": 25.0,
    "input_size": 160,
}


def build_parser() -> argparse.ArgumentParser:
    env = os.environ.get
    p = argparse.ArgumentParser(prog="python -m demo", description=__doc__.split("\n\n")[0])
    p.add_argument("--work", default=env("WORK", "runs/demo"), help="working directory (WORK)")
    p.add_argument(
        "--data", default=env("DATA") or None, help="real folder-per-class dataset (DATA); default: generated"
    )
    p.add_argument("--limit", type=int, default=int(env("LIMIT", "80")), help="DATA: training images per class (LIMIT)")
    p.add_argument(
        "--weights",
        default=env("WEIGHTS") or None,
        help="classifier backbone: imagenet | none | .h5 (WEIGHTS); default: imagenet when cached or "
        "reachable, else the shared MobileNetV2 file (mobilenet_v2 only), else none",
    )
    p.add_argument(
        "--detector-weights",
        default=env("DETECTOR_WEIGHTS") or None,
        help="detector MobileNetV2: imagenet | none | .h5 (DETECTOR_WEIGHTS); default: imagenet when "
        "cached or reachable, else the MobileNetV2 file in $SHELFSCAN_SHARED or ../shared",
    )
    p.add_argument("--backbone", default=env("BACKBONE", "inception_v3"), help="classifier backbone (BACKBONE)")
    p.add_argument(
        "--input-size", type=int, default=int(env("INPUT_SIZE", "0")) or None, help="classifier input size (INPUT_SIZE)"
    )
    p.add_argument("--mqtt-url", default=env("MQTT_URL") or None, help="use this broker (MQTT_URL) instead of amqtt")
    p.add_argument("--per-class", type=int, help="generated training images per class (default 100; quick 80)")
    p.add_argument("--calibration-count", type=int, help="int8 calibration images or shelves (default 100; quick 50)")
    p.add_argument("--train-shelves", type=int, help="detector training shelves (default 600; quick 300)")
    p.add_argument("--val-shelves", type=int, help="detector validation shelves (default 60; quick 30)")
    p.add_argument("--detector-epochs", type=int, help="detector epochs (default 20; quick 12)")
    p.add_argument(
        "--eval-shelves",
        type=int,
        help="shelves composed from val photos to rate the int8 detector (default 60; quick 20)",
    )
    p.add_argument("--seconds", type=float, help="length of the shelf pass at 10 fps (default 60; quick 25)")
    p.add_argument(
        "--quick",
        action="store_true",
        help="fewer images and shelves, a 160 px classifier, a 25 s pass (the CI version)",
    )
    p.add_argument("--seed", type=int, default=0)
    return p


def agent_config(
    path: Path, bundle: Path, detector: Path, video: Path, state: Path, host: str, port: int, fps: float
) -> None:
    path.write_text(f"""# written by the demo (python -m demo); see docs/configuration.md
[device]
id = "{DEVICE}"
prefix = "{PREFIX}"
state_dir = "{state}"

[model]
bundle = "{bundle}"
detector = "{detector}"

[source]
kind = "video"
path = "{video}"
fps = {fps}   # the robot's camera: frames as they were filmed

[inference]
pipeline = "detect_classify"   # detect every facing, classify each crop, track, count each facing once
max_fps = {fps}
ignore_labels = ["{BACKGROUND}"]   # a box on empty shelf reads as background: no vote

[mqtt]
host = "{host}"
port = {port}
protocol = "3.1.1"   # amqtt, the embedded broker, speaks MQTT 3.1.1

[publish]
stats_interval_s = 2.0
""")


def make_data(args: argparse.Namespace, work: Path) -> Path:
    """Stage 1: the class tree (with ``background``) and its product-only twin ``facings/``."""
    if args.data:
        data = from_folder(Path(args.data), work / "data", args.limit, args.per_class, 160, args.seed)
    else:
        data = work / "data"
        test = 6 if args.quick else 10  # photos the pass is made of, per class
        generate(
            data, {"train": args.per_class, "val": max(args.per_class // 4, 6), "test": test}, size=160, seed=args.seed
        )
    product_tree(data, work / "facings")
    return data


def render(args: argparse.Namespace, data: Path, work: Path) -> tuple[Path, dict[str, Any]]:
    """Stage 6: the dense shelf pass from the held-out photos (trainer.shelf_video.render_pass)."""
    from trainer.photo_library import PhotoLibrary
    from trainer.shelf_video import PassSpec, render_pass

    photos = held_out(data)
    library = PhotoLibrary(
        [(label, p) for label, paths in sorted(photos.items()) for p in paths], f"{data.name} (held out)"
    )
    spec = replace(PassSpec(), seconds=args.seconds, seed=args.seed)
    video = work / "video" / "shelf.mp4"
    truth = render_pass(library, video, spec)
    n = sum(truth["totals"]["facings"].values())
    print(
        f"{video}: {truth['frames']} frames {truth['width']}x{truth['height']} at {truth['fps']:g} fps, "
        f"{truth['totals']['rows']} rows, {n} facings ({len(truth['totals']['facings'])} products in runs of "
        f"{spec.run_length[0]}-{spec.run_length[1]}), {truth['totals']['gaps']} empty slots, a "
        f"{spec.stop_seconds:g} s stop; truth in {video.with_suffix('.json')}",
        flush=True,
    )
    return video, truth


def run_agent(
    args: argparse.Namespace,
    work: Path,
    bundles: tuple[Path, Path],
    video: Path,
    truth: dict[str, Any],
    url: Any,
    summary: dict[str, Any],
) -> bool:
    """Stage 8: the agent on the video, the live view, then the fleet, the counts table and the shelf map."""
    t = stage(8, f"agent (detect_classify) on the shelf pass, live facings and gaps from {PREFIX}/{DEVICE}/#")
    cfg = work / "agent.toml"
    agent_config(cfg, *bundles, video, work / "state", url.host, url.port, truth["fps"])
    view = LiveView(url, PREFIX, DEVICE)
    agent = None
    try:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        with open(work / "agent.log", "wb") as log_fh:
            agent = subprocess.Popen(
                [sys.executable, "-m", "edge.cli", "-v", "run", "--config", str(cfg)],
                stdout=log_fh,
                stderr=subprocess.STDOUT,
                env=env,
            )
            try:
                rc = agent.wait(timeout=120 + 2 * truth["frames"])  # 0.5 fps would be very slow hardware
            except subprocess.TimeoutExpired:
                rc = -1  # stuck: reported below with the log tail, killed in finally
        final = view.wait_final(10.0)
        summary["times_s"]["agent"] = round(time.monotonic() - t)
        if rc != 0 or final is None:
            tail = (work / "agent.log").read_text(errors="replace")[-2000:]
            raise StageError(f"the agent exited with status {rc}; no final counts. Log tail:\n{tail}")
        print("\nfleet (what `shelfscan-agent watch --broker URL --prefix shelfscan-demo` shows):")
        print(view.fleet.table())
        (work / "scan.json").write_text(json.dumps({"facings": view.facings, "gaps": view.gaps}, indent=1) + "\n")
        evidence = check_evidence(view.facings, view.evidence, work / "state" / "evidence")
        result = score(truth, final["counts"], view.facings, view.gaps, evidence)
        print(f"\nfacings per label and gaps, scan {final['scan_id']} vs the truth of the shelf pass:\n{table(result)}")
        summary |= {
            "scan_id": final["scan_id"],
            "counted": final["counts"],
            "agent_gaps": final.get("gaps"),
            "truth": truth["totals"],
            **result,
        }
    finally:
        if agent is not None and agent.poll() is None:
            agent.kill()
        view.close()
    draw_shelfmap(view.shelfmap, work)
    return bool(result["ok"])


def draw_shelfmap(doc: dict[str, Any] | None, work: Path) -> None:
    """Save the retained shelf map and draw it with ``shelfscan-agent shelfmap`` (a picture for people)."""
    if doc is None:
        print("demo: note: no shelf map arrived", flush=True)
        return
    saved = work / "shelfmap.json"
    saved.write_text(json.dumps(doc, indent=2) + "\n")
    print("\nshelf map (shelfscan-agent shelfmap):", flush=True)
    run_cli(["edge.cli", "shelfmap", str(saved), "--out", str(work / "shelfmap.png")], "drawing the shelf map")


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    t_start = time.monotonic()
    for key, value in (QUICK if args.quick else DEFAULTS).items():
        if getattr(args, key, None) is None:
            setattr(args, key, value)
    work = Path(args.work).resolve()
    for sub in ("data", "facings", "bundles", "detector-bundles", "detector-eval", "state", "video"):
        shutil.rmtree(work / sub, ignore_errors=True)
    work.mkdir(parents=True, exist_ok=True)
    summary: dict[str, Any] = {"work": str(work), "quick": args.quick, "times_s": {}}
    broker_proc = None
    try:
        t = stage(1, "data")
        data = make_data(args, work)
        print(
            f"data ready in {time.monotonic() - t:.0f} s: {data} (classifier), {work / 'facings'} (detector)",
            flush=True,
        )
        classifier = train_classifier(args, data, work, summary)
        detector = train_detector(args, work, summary)
        t = stage(6, "render a dense shelf pass from held-out photos (trainer.shelf_video)")
        video, truth = render(args, data, work)
        summary["times_s"]["video"] = round(time.monotonic() - t)

        stage(7, "MQTT broker")
        if args.mqtt_url:
            url = parse_broker_url(args.mqtt_url)
            print(f"using {args.mqtt_url}", flush=True)
        else:
            port = embedded.free_port()
            broker_proc = embedded.start(port)
            url = parse_broker_url(f"mqtt://127.0.0.1:{port}")
            print(f"embedded amqtt broker on 127.0.0.1:{port} (MQTT_URL=mqtt://host:port uses yours)", flush=True)
        ok = run_agent(args, work, (classifier, detector), video, truth, url, summary)
    except StageError as exc:
        print(f"demo: {exc}", file=sys.stderr)
        return 2
    finally:
        if broker_proc is not None:
            embedded.stop(broker_proc)
    summary["total_s"] = round(time.monotonic() - t_start)
    (work / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    verdict = "yes" if ok else "NO: " + "; ".join(summary["problems"])
    print(
        f"\ncounts and gaps meet the bar: {verdict}\n(demo took {summary['total_s']} s; everything is in {work}: "
        "run/report.html, detector-run/report.html, bundles/, detector-bundles/, video/, agent.log, "
        "scan.json, shelfmap.png, summary.json)"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
