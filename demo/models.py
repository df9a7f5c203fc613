"""The demo's models: the classifier and the facing detector trained, then converted to int8 bundles.

Stages 2 to 5 of ``make demo``, each the real command a user runs (``shelfscan-train``,
``shelfscan-convert``); the settings that make them fit the demo's time are explained where they are set.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from demo.stages import run_cli, stage
from demo.weights import DETECTOR_BACKBONE, random_weights_banner, resolve_weights

# Measured on the quick set (300 shelves): batch 32 (the trainer's default) left the detector far from
# trained, val AP50 0.53 after 8 epochs; batch 8, 12 epochs in about the same time, 0.99.
DETECTOR_BATCH = 8
# The classifier names crops of a moving shelf camera, not photos: one cached view per photo as the
# camera crops a facing (trimmed, facing-sized, blurred, exposed, noisy). Measured with random
# InceptionV3 weights on 437 crops of shelves composed from the test photos: top-1 93.6 % without,
# 98.9 % with it (a misread photo is a misread run of up to five identical facings).
CAMERA_VIEWS = ("--augment-views", "1", "--augment-camera")


def weights_for(choice: str | None, backbone: str, role: str, real_data: bool) -> str:
    weights = resolve_weights(choice, backbone)
    print(f"{role} weights: {weights}", flush=True)
    if weights == "none":
        print(random_weights_banner(backbone, real_data, role), flush=True)
    return weights


def train_classifier(args: argparse.Namespace, data: Path, work: Path, summary: dict[str, Any]) -> Path:
    """Stages 2 and 3: shelfscan-train, then an int8 bundle through shelfscan-convert."""
    t = stage(2, f"train the {args.backbone} classifier (shelfscan-train)")
    weights = weights_for(args.weights, args.backbone, "classifier", bool(args.data))
    cmd = [
        "trainer.cli",
        str(data),
        "--out",
        str(work / "run"),
        "--backbone",
        args.backbone,
        "--weights",
        weights,
        "--cache-dir",
        str(work / "cache"),
        "--seed",
        str(args.seed),
        *CAMERA_VIEWS,
    ]
    if args.input_size:
        cmd += ["--input-size", str(args.input_size)]
    run_cli(cmd, "classifier training")
    summary["weights"] = {"classifier": weights}
    summary["times_s"]["train"] = round(time.monotonic() - t)

    t = stage(3, "convert the classifier to an int8 bundle, evaluated through the edge runtime (shelfscan-convert)")
    convert_int8(work / "run", work / "bundles", data / "val", "demo", args.calibration_count, "classifier", "accuracy")
    summary["classifier_top1"] = _variant(work / "bundles", "top1")
    summary["times_s"]["convert"] = round(time.monotonic() - t)
    return work / "bundles" / "demo-int8"


def train_detector(args: argparse.Namespace, work: Path, summary: dict[str, Any]) -> Path:
    """Stages 4 and 5: shelfscan-train --task detect on shelves composed from the product photos, then an
    int8 detect bundle rated on shelves composed from the val photos (AP50)."""
    facings = work / "facings"
    t = stage(4, "train the facing detector on composed shelves (shelfscan-train --task detect)")
    weights = weights_for(args.detector_weights, DETECTOR_BACKBONE, "detector", bool(args.data))
    run_cli(
        [
            "trainer.cli",
            str(facings),
            "--task",
            "detect",
            "--out",
            str(work / "detector-run"),
            "--weights",
            weights,
            "--train-shelves",
            str(args.train_shelves),
            "--val-shelves",
            str(args.val_shelves),
            "--epochs",
            str(args.detector_epochs),
            "--batch-size",
            str(DETECTOR_BATCH),
            "--seed",
            str(args.seed),
        ],
        "detector training",
    )
    summary["weights"]["detector"] = weights
    summary["times_s"]["train_detector"] = round(time.monotonic() - t)

    t = stage(
        5, "convert the detector to an int8 bundle, rated on shelves composed from val photos (shelfscan-convert)"
    )
    shelves = work / "detector-eval"
    photos = next(facings / s for s in ("val", "test", "train") if (facings / s).is_dir())  # DATA= may lack val/
    run_cli(
        [
            "trainer.cli",
            str(photos),
            "--compose",
            str(args.eval_shelves),
            "--seed",
            str(101 + args.seed),
            "--out",
            str(shelves),
        ],
        "composing the evaluation shelves",
    )
    convert_int8(
        work / "detector-run",
        work / "detector-bundles",
        shelves,
        "demo-facings",
        args.calibration_count,
        "detector",
        "AP50",
    )
    summary["detector_ap50"] = ap50 = _variant(work / "detector-bundles", "ap50")
    if ap50 is not None:
        print(f"int8 detector: AP50 {ap50:.3f} on {args.eval_shelves} shelves composed from val photos", flush=True)
    summary["times_s"]["convert_detector"] = round(time.monotonic() - t)
    return work / "detector-bundles" / "demo-facings-int8"


def convert_int8(
    run: Path, bundles: Path, eval_source: Path, name: str, calibration_count: int, model: str, gate: str
) -> None:
    """shelfscan-convert's int8 bundle ``name`` of a run, rated on ``eval_source``, for the classifier and the
    detector alike; a failed 1-point gate (status 1) is said and let through: the demo goes on with the bundle."""
    rc = run_cli(
        [
            "converter.cli",
            str(run),
            "--out",
            str(bundles),
            "--variants",
            "int8",
            "--eval",
            str(eval_source),
            "--calibration-count",
            str(calibration_count),
            "--name",
            name,
            "--bench-runs",
            "10",
        ],
        f"{model} conversion",
        ok=(0, 1),
    )
    if rc == 1:
        print(f"demo: note: the int8 {model} failed the 1-point {gate} gate; the demo goes on with it", flush=True)


def _variant(bundles: Path, key: str) -> float | None:
    """The int8 variant's figure from shelfscan-convert's comparison.json (None when it has none)."""
    try:
        doc = json.loads((bundles / "comparison.json").read_text())
        return doc["variants"]["int8"][key]
    except (OSError, ValueError, KeyError):
        return None
