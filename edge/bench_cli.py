"""``shelfscan-agent bench``: which variant, at how many threads, should this device run?"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
from pathlib import Path
from typing import Any

from edge.errors import ShelfscanError


def register(sub: Any, handlers: dict[str, Any]) -> None:
    from edge.cli_args import add_delegate_args, positive_int

    p = sub.add_parser(
        "bench",
        help="benchmark bundles on this device (per-stage latency, accuracy, recommendation)",
        description="Sweep every bundle x thread count through the agent's own frame path.",
    )
    p.add_argument(
        "bundles", nargs="+", metavar="BUNDLE_OR_DIR", help="classifier bundle directories, or folders of bundles"
    )
    p.add_argument(
        "--detector",
        metavar="BUNDLE",
        help="a facing detector bundle: bench the detect_classify pipeline (detect, crops, classify "
        "each crop, track, publish) with each classifier bundle",
    )
    p.add_argument("--threads", default="1,2", help="comma-separated thread counts (default 1,2)")
    p.add_argument("--runs", type=positive_int, default=100, help="measured frames per configuration")
    p.add_argument("--warmup", type=int, default=10, help="frames before measuring")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--source", metavar="VIDEO", help="decode frames from this video (default: --synthetic)")
    src.add_argument("--synthetic", action="store_true", help="a synthetic 640x480 JPEG frame (default)")
    p.add_argument("--eval", metavar="DIR", help="folder-per-class images: add top-1 and a recommendation")
    p.add_argument("--tolerance", type=float, default=1.0, help="top-1 points a faster variant may lose (default 1)")
    p.add_argument("--compare-raw", action="store_true", help="also time a bare invoke() loop and report overhead")
    add_delegate_args(p)
    p.add_argument("--json", action="store_true", help="print the report as one JSON document instead of the table")
    p.add_argument("--out", metavar="FILE", help="also write the JSON report to FILE (checked before the benchmark)")
    p.add_argument("--publish", action="store_true", help="send the report to <prefix>/<device_id>/bench")
    p.add_argument("--config", metavar="FILE", help="agent configuration with the broker for --publish")
    handlers["bench"] = run


def run(args: argparse.Namespace) -> int:
    from edge.bench import bundles_in, dumps, format_table, run_bench
    from edge.cli_args import delegate_from_args
    from edge.messages import envelope

    try:
        threads = sorted({int(t) for t in args.threads.split(",") if t.strip()})
    except ValueError:
        raise ShelfscanError(f"--threads: expected numbers like 1,2,4, got {args.threads!r}") from None
    if not threads or min(threads) < 1 or args.runs < 1:
        raise ShelfscanError("--threads and --runs must be positive")
    if args.publish and not args.config:
        raise ShelfscanError("--publish needs --config FILE (the agent configuration naming the broker)")
    if args.out:
        check_writable(Path(args.out))
    cfg = None
    if args.config:
        from edge.config import load_config

        cfg = load_config(args.config)
    detector = Path(args.detector) if args.detector else None
    delegate = delegate_from_args(args, cfg.model.delegate_spec() if cfg else None)  # bench what the agent runs
    report = run_bench(
        bundles_in(args.bundles),
        threads,
        args.runs,
        args.warmup,
        args.source,
        args.eval,
        args.compare_raw,
        args.tolerance,
        detector=detector,
        delegate=delegate,
    )
    device = cfg.device.id if cfg else socket.gethostname()
    doc = json.loads(envelope("bench", device, 0, None, **json.loads(dumps(report))))
    text = json.dumps(doc, indent=2)
    print(text if args.json else format_table(report))
    if args.out:
        Path(args.out).write_text(text + "\n")
    if args.publish and cfg is not None:
        publish_report(cfg, text.encode())
        print(f"published to {cfg.device.prefix}/{cfg.device.id}/bench", file=sys.stderr)
    return 0


def check_writable(path: Path) -> None:
    """Fail before a long benchmark, not after it, when its report could not be written."""
    folder = path.parent
    if path.is_dir():
        raise ShelfscanError(f"--out {path}: is a folder, not a file")
    if not folder.is_dir():
        raise ShelfscanError(f"--out {path}: folder {folder} does not exist")
    if not os.access(folder, os.W_OK):
        raise ShelfscanError(f"--out {path}: folder {folder} is not writable")


def publish_report(cfg: Any, payload: bytes) -> None:
    from edge.mqtt_client import new_client

    m = cfg.mqtt
    client = new_client(
        f"shelfscan-bench-{cfg.device.id}", protocol=m.protocol, username=m.username, password=m.password(), tls=m.tls
    )
    try:
        client.connect(cfg.mqtt.host, cfg.mqtt.port, keepalive=10)
    except OSError as exc:
        raise ShelfscanError(f"--publish: cannot reach broker {cfg.mqtt.host}:{cfg.mqtt.port} ({exc})") from None
    client.loop_start()
    info = client.publish(f"{cfg.device.prefix}/{cfg.device.id}/bench", payload, qos=1)
    info.wait_for_publish(10)
    client.loop_stop()
    client.disconnect()
    if not info.is_published():
        raise ShelfscanError("--publish: the broker did not acknowledge the report within 10 s")
