"""Converter acceptance figures.

1. The MobileNetV2 Freiburg model from the trainer: every variant evaluated through the edge
   runtime on the run's held-out test split (int8 and int8-pw top-1 vs Keras, size vs fp32).
2. InceptionV3 (random weights, 25 classes, calibrated on 100 Freiburg images): int8 vs fp32
   invoke median at 2 threads, measured alternately in the same process.
Run: python -m benchmarks.converter_bench --run runs/freiburg-mnv2
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import tempfile
from pathlib import Path

from benchmarks.report import alternating_invoke_ms, write_report

SHARED = Path(os.environ.get("SHELFSCAN_SHARED", Path(__file__).resolve().parents[2] / "shared"))
FREIBURG = SHARED / "datasets" / "freiburg_groceries"
REPO = Path(__file__).resolve().parents[1]


def inception_run(tmp: Path) -> Path:
    """A trainer-shaped run directory around a random-weight InceptionV3 classifier."""
    import keras

    from edge.preprocess import PreprocessSpec
    from trainer.head import build_classifier

    keras.utils.set_random_seed(0)
    base = keras.applications.InceptionV3(include_top=False, weights=None, input_shape=(299, 299, 3))
    model, _ = build_classifier(base, 25, 0.5, 512)
    run = tmp / "inception_v3-random"
    run.mkdir()
    model.save(run / "model.keras")
    labels = sorted(d.name for d in (FREIBURG / "train").iterdir())
    (run / "labels.txt").write_text("\n".join(labels) + "\n")
    (run / "preprocessing.json").write_text(PreprocessSpec(height=299, width=299).model_dump_json())
    (run / "config.json").write_text(json.dumps({"backbone": "inception_v3", "weights": "none"}))
    return run


def main() -> None:
    from converter.cli import main as convert
    from edge.runtime import Classifier

    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument(
        "--run",
        default=str(REPO / "runs" / "freiburg-mnv2"),
        help="MobileNetV2 Freiburg run directory (make bench: the fine-tuned run of trainer_bench)",
    )
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    tmp = Path(tempfile.mkdtemp(prefix="shelfscan-convbench-"))
    out = tmp / "mnv2"
    rc = convert(
        [
            args.run,
            "--out",
            str(out),
            "--variants",
            "fp32,fp16,dynamic,int8,int8-pw",
            "--eval",
            "test",
            "--bench-runs",
            "30",
        ]
    )
    mnv2 = json.loads((out / "comparison.json").read_text())
    inc_run = inception_run(tmp)
    inc_out = tmp / "inc"
    # random weights, for latency and size only: calibration images from train/, nothing evaluated
    convert(
        [
            str(inc_run),
            "--out",
            str(inc_out),
            "--variants",
            "fp32,int8",
            "--calibration",
            str(FREIBURG / "train"),
            "--calibration-count",
            "100",
            "--bench-runs",
            "10",
        ]
    )
    bundles = {v: inc_out / f"inception_v3-random-{v}" for v in ("fp32", "int8")}
    lat = alternating_invoke_ms(Classifier.from_bundle, bundles, 2, (299, 299), runs=10, digits=2)
    sizes = {v: json.loads((p / "manifest.json").read_text())["model"]["size_bytes"] for v, p in bundles.items()}
    rows = mnv2["variants"]
    results = {
        "mobilenet_v2_freiburg": mnv2,
        "gate_exit_status": rc,
        "int8_minus_keras_top1_points": round(100 * (rows["int8"]["top1"] - mnv2["keras"]["top1"]), 2),
        "int8_size_ratio": round(rows["int8"]["size_bytes"] / rows["fp32"]["size_bytes"], 4),
        "int8_pw_minus_keras_top1_points": round(100 * (rows["int8-pw"]["top1"] - mnv2["keras"]["top1"]), 2),
        "int8_pw_size_ratio": round(rows["int8-pw"]["size_bytes"] / rows["fp32"]["size_bytes"], 4),
        "inception_v3_random": {
            "invoke_ms_2t": lat,
            "int8_over_fp32": round(lat["int8"] / lat["fp32"], 3),
            "size_bytes": sizes,
        },
    }
    from converter.compare import markdown_table

    paragraphs = [
        f"## MobileNetV2, Freiburg Groceries (run `{args.run}`), evaluated through the edge runtime on "
        f"{mnv2['eval_source']}",
        markdown_table(rows, mnv2["keras"]),
        f"int8 top-1 − Keras top-1: **{results['int8_minus_keras_top1_points']} points**; "
        f"int8 size / fp32 size: **{results['int8_size_ratio']}**. int8-pw (per-tensor 1x1 convolutions): "
        f"**{results['int8_pw_minus_keras_top1_points']} points**, size **{results['int8_pw_size_ratio']}**; "
        f"gate exit status {rc}.",
        "## InceptionV3 (random weights), 2 threads, invoke medians measured alternately",
        f"fp32 {lat['fp32']} ms, int8 {lat['int8']} ms: "
        f"int8/fp32 = **{results['inception_v3_random']['int8_over_fp32']}**"
        f" (sizes {sizes['fp32'] / 1e6:.1f} MB and {sizes['int8'] / 1e6:.1f} MB).",
    ]
    body = "\n\n".join(paragraphs) + "\n"
    print(write_report("converter", "Converter figures", results, body).read_text())


if __name__ == "__main__":
    main()
