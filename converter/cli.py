"""``shelfscan-convert``: a trainer run -> TFLite variants -> validated, evaluated, gated bundles."""

from __future__ import annotations

import argparse
import functools
import json
import logging
import os
import sys
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edge import __version__
from edge.errors import ShelfscanError
from edge.logsetup import add_verbosity_help, configure_logging, pop_verbosity

if TYPE_CHECKING:
    from converter.held_out import EvalImages


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="shelfscan-convert",
        description="Convert a shelfscan-train run to TFLite bundles, evaluate each through the edge runtime, "
        "and fail when a variant loses more than --max-drop top-1 (detectors: AP50) points against the Keras model. "
        "'shelfscan-convert publish BUNDLE ...' rolls a signed bundle out to devices over MQTT (see publish -h).",
    )
    p.add_argument("run_dir", nargs="?", help="shelfscan-train run directory (model.keras, labels.txt, ...)")
    p.add_argument("--out", help="directory for the bundles and comparison.{md,json}")
    p.add_argument(
        "--variants", default="fp32,fp16,dynamic,int8", help="comma-separated, from: fp32,fp16,dynamic,int8,int8-pw"
    )
    p.add_argument("--io", choices=["uint8", "int8", "float32"], default="uint8", help="int8 variant input/output type")
    p.add_argument(
        "--calibration",
        help="images for int8 calibration (default: the run's train split; detectors: shelves composed from them)",
    )
    p.add_argument("--calibration-count", type=int, default=300)
    p.add_argument(
        "--eval",
        help="what every variant is evaluated and gated on: 'test' or 'val' (the run's split), "
        "or a folder-per-class tree; default: the run's test split, else its val split (with a warning); "
        "detectors: a composed set with shelves.json",
    )
    p.add_argument(
        "--max-drop",
        type=float,
        default=1.0,
        help="allowed drop in points vs Keras: top-1, or AP50 for detectors (default 1.0)",
    )
    p.add_argument("--name", help="bundle name (default: the run directory's name)")
    p.add_argument("--version", default=datetime.now(timezone.utc).strftime("%Y.%m.%d-%H%M"), help="bundle version")
    p.add_argument("--sign-key", help="ed25519 private key (PEM) to sign every bundle with")
    p.add_argument("--make-key", metavar="PATH", help="write a new ed25519 key pair to PATH and PATH.pub, then exit")
    p.add_argument("--bench-runs", type=int, default=30, help="invokes per latency figure")
    p.add_argument("--json", action="store_true", help="print the comparison as JSON")
    add_verbosity_help(p)
    return p


def keras_reference(run: Any, evals: EvalImages) -> tuple[dict[str, int], dict[str, float]]:
    """Keras predictions on the eval images (same files, same order as the edge evaluation)."""
    import numpy as np

    from converter.calibration import load_eval_arrays
    from edge.evaluate import match_classes
    from trainer.metrics import top_k_accuracy

    mapping = match_classes(sorted({f for _, f in evals.items}), run.labels)
    paths = [p for p, _ in evals.items]
    truth = np.array([mapping.get(f, -1) for _, f in evals.items])
    probs = run.model.predict(load_eval_arrays(paths, run.spec), batch_size=32, verbose=0)
    keras_top1 = {str(p): int(i) for p, i in zip(paths, probs.argmax(axis=1), strict=True)}
    summary = {"top1": top_k_accuracy(probs, truth, 1), "top5": top_k_accuracy(probs, truth, 5)}
    return keras_top1, summary


def convert(args: argparse.Namespace) -> int:
    from converter import detect
    from converter.calibration import pick_images, representative_dataset
    from converter.compare import CLASSIFY_COLUMNS, evaluate_variant, gate, markdown_table
    from converter.held_out import calibration_images, eval_images
    from converter.source import load_run
    from converter.variants import export, parse_variants
    from edge.bundle import write_bundle
    from edge.signing import sign_bundle

    log = logging.getLogger("shelfscan.convert")
    if not args.run_dir or not args.out:
        raise ShelfscanError("need RUN_DIR and --out DIR")
    variants = parse_variants(args.variants)
    run = load_run(args.run_dir)
    detector = run.task == "detect"
    out = Path(args.out)
    name = args.name or run.root.name
    data = None
    if any(v.calibrated for v in variants):
        if detector:
            folder = Path(args.calibration) if args.calibration else None
            data = detect.representative(detect.calibration_frames(run, folder, args.calibration_count), run.spec)
        else:
            calib = Path(args.calibration) if args.calibration else calibration_images(run)
            data = representative_dataset(pick_images(calib, args.calibration_count), run.spec)
    eval_dir = Path(args.eval) if args.eval else None
    eval_set = detect.read_eval_set(eval_dir) if detector and eval_dir else None
    evals = None if detector else eval_images(run, args.eval)
    if detector:
        keras_top1, keras = {}, (detect.keras_reference(run, eval_set) if eval_set else None)
    else:
        keras_top1, keras = keras_reference(run, evals) if evals else ({}, None)
    rows: dict[str, dict[str, Any]] = {}
    training = {
        k: run.config.get(k) for k in ("task", "backbone", "weights", "weights_id", "input_size", "seed", "data")
    }
    task_fields: dict[str, Any] = {"task": "detect", "detection": run.config["detection"]} if detector else {}
    for v in variants:
        flatbuffer, seconds = export(v, run.model, data, args.io)
        dest = out / f"{name}-{v.name}"
        trained = {
            f"trainer_{split}": {k: run.metrics[split].get(k) for k in ("top1", "top5", "ap50", "ap50_95")}
            for split in ("val", "test")
            if split in run.metrics
        }
        prov = {"source_model_sha256": run.model_sha256, "training": training, "metrics": trained}
        write = functools.partial(
            write_bundle,
            dest,
            flatbuffer,
            run.labels,
            run.spec,
            name=name,
            version=args.version,
            backbone=run.backbone,
            variant=v.name,
            overwrite=True,
            **task_fields,
        )
        write(provenance=prov)  # the edge runtime evaluates the bundle as written
        if detector:
            evaluation = detect.evaluate_detector_variant(dest, eval_set, args.bench_runs)
        else:
            evaluation = evaluate_variant(dest, evals.items if evals else None, keras_top1, args.bench_runs)
        rows[v.name] = {"export_s": round(seconds, 1), **evaluation}
        prov["metrics"] |= {"edge_eval": rows[v.name], "keras_eval": keras}
        write(provenance=prov)  # again, with its evaluation in the provenance
        if args.sign_key:
            log.info("signed %s with key %s", dest, sign_bundle(dest, args.sign_key))
    metric = "AP50" if detector else "top-1"
    key = "ap50" if detector else "top1"
    failed = gate(rows, keras[key] if keras else None, args.max_drop, key)
    table = markdown_table(rows, keras, detect.COLUMNS if detector else CLASSIFY_COLUMNS)
    doc = {
        "run_dir": str(run.root),
        "task": run.task,
        "converter_version": __version__,
        "keras": keras,
        "variants": rows,
        "gate_metric": metric,
        "max_drop_points": args.max_drop,
        "eval_split": evals.split if evals else ("composed" if eval_set else None),
        "eval_source": evals.source if evals else (str(eval_dir) if eval_set else None),
        "gate_failed": failed,
    }
    (out / "comparison.json").write_text(json.dumps(doc, indent=2) + "\n")
    if evals:
        table = f"Evaluated on {evals.source}.\n\n{table}"
    (out / "comparison.md").write_text(f"# {name}: TFLite variants\n\n{table}\n")
    print(json.dumps(doc, indent=2) if args.json else table)
    if failed:
        print(
            f"shelfscan-convert: accuracy gate failed: {', '.join(failed)} lost more than {args.max_drop} "
            f"{metric} points against the Keras model",
            file=sys.stderr,
        )
        return 1
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["publish"]:  # shelfscan-convert publish BUNDLE ...: a rollout (converter/publish_cli.py)
        from converter.publish_cli import main as publish_main

        return publish_main(argv[1:])
    verbosity, rest = pop_verbosity(argv)
    args = build_parser().parse_args(rest)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    configure_logging(verbosity, logging.INFO, "%(levelname)s %(message)s")
    try:
        if args.make_key:
            from edge.signing import generate_key

            key, pub = generate_key(args.make_key)
            print(f"private key: {key}\npublic key:  {pub}  (give this one to the devices)")
            return 0
        return convert(args)
    except ShelfscanError as exc:
        print(f"shelfscan-convert: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
