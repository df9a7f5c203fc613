"""``shelfscan-train``: transfer learning on product photos (workstation, TensorFlow)."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence

from edge.errors import ShelfscanError


def build_parser() -> argparse.ArgumentParser:
    from trainer.backbones import BACKBONES
    from trainer.run import default_cache_dir

    p = argparse.ArgumentParser(
        prog="shelfscan-train",
        description="Retrain a backbone's head (and optionally its top blocks) on a folder-per-class "
        "dataset, with a bottleneck cache that keeps working when augmentation is on.",
    )
    p.add_argument("data", help="dataset folder: <class>/ images, or train/ [val/ test/] with <class>/ inside")
    p.add_argument("--out", required=True, help="run directory to write (model.keras, metrics.json, report.html, ...)")
    p.add_argument("--csv", help="CSV of image path or id, label (e.g. HackerEarth train.csv); images under DATA")
    p.add_argument("--backbone", choices=sorted(BACKBONES), default="inception_v3")
    p.add_argument("--weights", default="imagenet", help="imagenet (Keras cache), none, or a backbone .h5 file")
    p.add_argument("--input-size", type=int, help="square input size (default: the backbone's, 299 or 224)")
    p.add_argument("--interpolation", default="bilinear_antialias", help="resize filter (edge preprocessing)",
                   choices=["bilinear_antialias", "bilinear", "area", "nearest"])  # fmt: skip
    p.add_argument("--val-pct", type=float, default=10.0, help="validation share when DATA has no val/ (hash split)")
    p.add_argument("--test-pct", type=float, default=0.0, help="test share when DATA has no val/ (hash split)")
    p.add_argument("--augment-views", type=int, default=0, metavar="K", help="cached augmented views per image")
    p.add_argument("--epochs", type=int, default=100, help="head epochs (early stopping on val loss)")
    p.add_argument("--learning-rate", type=float, default=1e-3)
    p.add_argument("--hidden", type=int, default=512, help="hidden units in the head (0: softmax layer only)")
    p.add_argument("--dropout", type=float, default=0.5)
    p.add_argument("--label-smoothing", type=float, default=0.1)
    p.add_argument(
        "--standardize-features",
        choices=["auto", "on", "off"],
        default="auto",
        help="standardize features in the head (auto: only with --weights none)",
    )
    p.add_argument("--balance", choices=["weights", "sample", "none"], default="weights",
                   help="imbalanced classes: loss weights, oversampling, or nothing")  # fmt: skip
    p.add_argument("--fine-tune-epochs", type=int, default=0, help="0 = head only")
    p.add_argument("--fine-tune-lr", type=float, default=1e-5)
    p.add_argument("--fine-tune-after", help="unfreeze layers after this one (default: top two blocks)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--cache-dir", default=str(default_cache_dir()))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--strategy", choices=["default", "mirrored", "multiworker"], default="default",
                   help="tf.distribute strategy (multiworker reads TF_CONFIG)")  # fmt: skip
    p.add_argument("--json", action="store_true", help="print the metrics summary as JSON")
    p.add_argument("-v", "--verbose", action="store_true")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(message)s")
    from trainer.augment import AugmentConfig
    from trainer.finetune import FineTuneConfig
    from trainer.head import HeadConfig
    from trainer.run import TrainConfig, train

    cfg = TrainConfig(
        data=args.data, out=args.out, csv=args.csv, backbone=args.backbone, weights=args.weights,
        input_size=args.input_size, interpolation=args.interpolation, val_pct=args.val_pct, test_pct=args.test_pct,
        batch_size=args.batch_size, cache_dir=args.cache_dir, seed=args.seed, strategy=args.strategy,
        augment=AugmentConfig(views=args.augment_views, seed=args.seed),
        head=HeadConfig(epochs=args.epochs, learning_rate=args.learning_rate, dropout=args.dropout, hidden=args.hidden,
                        label_smoothing=args.label_smoothing, balance=args.balance,
                        standardize=args.standardize_features),
        finetune=FineTuneConfig(epochs=args.fine_tune_epochs, learning_rate=args.fine_tune_lr,
                                after_layer=args.fine_tune_after, batch_size=args.batch_size),
    )  # fmt: skip
    try:
        metrics = train(cfg)
    except ShelfscanError as exc:
        print(f"shelfscan-train: error: {exc}", file=sys.stderr)
        return 2
    summary = {split: {k: metrics[split][k] for k in ("images", "top1", "top5", "macro_f1")}
               for split in ("val", "test") if split in metrics}  # fmt: skip
    summary |= {"run_dir": args.out, "timings": metrics["timings"], "skipped": len(metrics["skipped"])}
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        if args.weights == "none":
            print("*** RANDOM WEIGHTS (--weights none): accuracy below is not representative ***")
        for split in ("val", "test"):
            if split in summary:
                s = summary[split]
                print(f"{split}: {s['images']} images   top-1 {100 * s['top1']:.2f} %   top-5 {100 * s['top5']:.2f} %")
        print(f"run directory: {args.out} (report.html, metrics.json, model.keras)   {metrics['timings']['total_s']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
