"""``shelfscan-train``: transfer learning on product photos (workstation, TensorFlow)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

from edge.errors import ShelfscanError
from edge.logsetup import add_verbosity_help, configure_logging, pop_verbosity


def _size(text: str) -> int | tuple[int, int]:
    try:
        if "x" in text:
            h, w = (int(v) for v in text.lower().split("x"))
            return (h, w)
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not N or HxW") from None


def build_parser() -> argparse.ArgumentParser:
    from trainer.augment import AugmentConfig
    from trainer.backbones import BACKBONES
    from trainer.detector import DetectorConfig
    from trainer.finetune import FineTuneConfig
    from trainer.head import HeadConfig
    from trainer.run import TrainConfig

    # One source of defaults: the config dataclasses the run is built from; --help shows them.
    run, head, tune, aug = (
        _defaults(TrainConfig),
        _defaults(HeadConfig),
        _defaults(FineTuneConfig),
        _defaults(AugmentConfig),
    )

    p = argparse.ArgumentParser(
        formatter_class=_DefaultsShown,
        prog="shelfscan-train",
        description="Retrain a backbone's head (and optionally its top blocks) on a folder-per-class "
        "dataset, with a bottleneck cache that keeps working when augmentation is on.",
    )
    p.add_argument("data", help="dataset folder: <class>/ images, or train/ [val/ test/] with <class>/ inside")
    p.add_argument(
        "--task",
        choices=["classify", "detect"],
        default="classify",
        help="classify: a product classifier; detect: the class-agnostic facing detector, trained on "
        "shelves composed from the same photos (docs/detector.md)",
    )
    p.add_argument("--out", required=True, help="run directory to write (model.keras, metrics.json, report.html, ...)")
    p.add_argument("--csv", help="CSV of image path or id, label (e.g. HackerEarth train.csv); images under DATA")
    p.add_argument(
        "--backbone",
        choices=sorted(BACKBONES),
        help="feature extractor (classify default: inception_v3; detect: mobilenet_v2 only)",
    )
    p.add_argument("--weights", default=run["weights"], help="imagenet (Keras cache), none, or a backbone .h5 file")
    p.add_argument(
        "--input-size",
        type=_size,
        metavar="N|HxW",
        help="input size: classify takes a square N (default: the backbone's, 299 or 224); "
        "detect takes HxW (default 240x320, for 4:3 frames)",
    )
    p.add_argument(
        "--interpolation",
        default=run["interpolation"],
        help="resize filter (edge preprocessing)",
        choices=["bilinear_antialias", "bilinear", "area", "nearest"],
    )
    p.add_argument(
        "--val-pct", type=float, default=run["val_pct"], help="validation share when DATA has no val/ (hash split)"
    )
    p.add_argument(
        "--test-pct",
        type=float,
        default=run["test_pct"],
        help="test share held out by file-name hash when DATA has no test/ (from train/ + val/, or the "
        "one folder); no early stopping, selection or calibration sees it; 0 for none",
    )
    p.add_argument(
        "--augment-views", type=int, default=aug["views"], metavar="K", help="cached augmented views per image"
    )
    p.add_argument(
        "--augment-camera",
        action="store_true",
        help="every other view as a shelf camera sees a facing (trimmed, small, blurred, exposed, "
        "noisy): for classifiers of detect_classify crops",
    )
    p.add_argument(
        "--epochs",
        type=int,
        help=f"head epochs (classify, default {head['epochs']}) or detector epochs (detect, default "
        f"{DetectorConfig.epochs}); early stopping on val loss either way",
    )
    p.add_argument(
        "--learning-rate",
        type=float,
        default=head["learning_rate"],
        help="head (classify) or neck (detect) learning rate",
    )
    p.add_argument(
        "--hidden", type=int, default=head["hidden"], help="hidden units in the head (0: softmax layer only)"
    )
    p.add_argument("--dropout", type=float, default=head["dropout"], help="head dropout")
    p.add_argument("--label-smoothing", type=float, default=head["label_smoothing"], help="head label smoothing")
    p.add_argument(
        "--standardize-features",
        choices=["auto", "on", "off"],
        default=head["standardize"],
        help="standardize features in the head (auto: only with --weights none)",
    )
    p.add_argument(
        "--balance",
        choices=["weights", "sample", "none"],
        default=head["balance"],
        help="imbalanced classes: loss weights, oversampling, or nothing",
    )
    p.add_argument("--fine-tune-epochs", type=int, default=tune["epochs"], help="0 = head only")
    p.add_argument("--fine-tune-lr", type=float, default=tune["learning_rate"], help="fine-tuning learning rate")
    p.add_argument("--fine-tune-after", help="unfreeze layers after this one (default: top two blocks)")
    p.add_argument("--batch-size", type=int, default=run["batch_size"], help="extraction and fine-tuning batch")
    p.add_argument("--cache-dir", default=run["cache_dir"], help="bottleneck cache")
    p.add_argument("--seed", type=int, default=run["seed"], help="splits, augmentation, composition")
    p.add_argument(
        "--strategy",
        choices=["default", "mirrored", "multiworker"],
        default=run["strategy"],
        help="tf.distribute strategy: mirrored uses every local GPU; multiworker is refused with the "
        "reason (Keras 3 cannot fit under it)",
    )
    det = p.add_argument_group("facing detector (--task detect; backbone: mobilenet_v2)")
    det.add_argument(
        "--train-shelves", type=int, default=DetectorConfig.train_shelves, help="shelves composed from the train photos"
    )
    det.add_argument(
        "--val-shelves",
        type=int,
        default=DetectorConfig.val_shelves,
        help="shelves composed from the val photos (early stopping and the reported AP)",
    )
    det.add_argument(
        "--compose",
        type=int,
        metavar="N",
        help="only write N shelves composed from the photos in DATA (a class tree) with their box "
        "truth (shelves.json) into --out, e.g. an evaluation set; --seed picks the set",
    )
    det.add_argument(
        "--dense-runs",
        action="store_true",
        help="with --compose: only runs of 3-6 touching identical facings, no empty slots",
    )
    det.add_argument(
        "--score-threshold",
        type=float,
        help="detection score threshold written into the bundle (default: the one with the lowest "
        "count error on the val shelves)",
    )
    p.add_argument("--json", action="store_true", help="print the metrics summary as JSON")
    add_verbosity_help(p)
    return p


class _DefaultsShown(argparse.HelpFormatter):
    """Each option's help ends with its default, unless it has none or already says it."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if action.default in (None, False, 0, argparse.SUPPRESS) and not isinstance(action.default, float):
            return text
        return text if "default" in text or not action.option_strings else f"{text} (default: %(default)s)"


def _defaults(cls: Any) -> dict[str, Any]:
    """Field defaults of a config dataclass (default factories called)."""
    out = {}
    for f in dataclasses.fields(cls):
        if f.default is not dataclasses.MISSING:
            out[f.name] = f.default
        elif f.default_factory is not dataclasses.MISSING:
            out[f.name] = f.default_factory()
    return out


def _options(args: argparse.Namespace, *names: str) -> dict[str, Any]:
    """The config fields that take the option of the same name as it was given: each config lists its names
    once instead of a ``name=args.name`` line apiece."""
    return {name: getattr(args, name) for name in names}


def main(argv: Sequence[str] | None = None) -> int:
    verbosity, rest = pop_verbosity(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(rest)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    configure_logging(verbosity, logging.INFO, "%(levelname)s %(message)s")
    if args.compose is not None:
        return _compose(args)
    if args.task == "detect":
        return _detect(args)
    if isinstance(args.input_size, tuple):
        print(
            "shelfscan-train: error: --input-size HxW is for --task detect; classifiers take a square N",
            file=sys.stderr,
        )
        return 2
    args.backbone = args.backbone or "inception_v3"
    from trainer.augment import AugmentConfig
    from trainer.finetune import FineTuneConfig
    from trainer.head import HeadConfig
    from trainer.run import TrainConfig, train

    args.epochs = args.epochs or HeadConfig.epochs

    cfg = TrainConfig(
        **_options(
            args,
            "data",
            "out",
            "csv",
            "backbone",
            "weights",
            "input_size",
            "interpolation",
            "val_pct",
            "test_pct",
            "batch_size",
            "cache_dir",
            "seed",
            "strategy",
        ),
        augment=AugmentConfig(views=args.augment_views, seed=args.seed, camera=args.augment_camera),
        head=HeadConfig(
            **_options(args, "epochs", "learning_rate", "dropout", "hidden", "label_smoothing", "balance"),
            standardize=args.standardize_features,
        ),
        finetune=FineTuneConfig(
            epochs=args.fine_tune_epochs,
            learning_rate=args.fine_tune_lr,
            after_layer=args.fine_tune_after,
            batch_size=args.batch_size,
        ),
    )

    def summarize(metrics: dict[str, Any]) -> dict[str, Any]:
        summary = {
            split: {k: metrics[split][k] for k in ("images", "top1", "top5", "macro_f1")}
            for split in ("val", "test")
            if split in metrics
        }
        return summary | {"run_dir": args.out, "timings": metrics["timings"], "skipped": len(metrics["skipped"])}

    def lines(summary: dict[str, Any]) -> Iterator[str]:
        if args.weights == "none":
            yield "*** RANDOM WEIGHTS (--weights none): accuracy below is not representative ***"
        for split in ("val", "test"):
            if split in summary:
                s = summary[split]
                yield f"{split}: {s['images']} images   top-1 {100 * s['top1']:.2f} %   top-5 {100 * s['top5']:.2f} %"

    return _train_and_print(lambda: train(cfg), summarize, lines, args.json)


def _compose(args: argparse.Namespace) -> int:
    from trainer.photo_library import PhotoLibrary
    from trainer.shelf_composer import write_set
    from trainer.shelf_types import ShelfStyle

    try:
        library = PhotoLibrary.from_tree(args.data)
        style = ShelfStyle().dense_runs() if args.dense_runs else ShelfStyle()
        path = write_set(args.out, library, args.compose, seed=args.seed, style=style)
    except ShelfscanError as exc:
        print(f"shelfscan-train: error: {exc}", file=sys.stderr)
        return 2
    print(f"{args.compose} shelves and their box truth: {path}")
    return 0


def _detect(args: argparse.Namespace) -> int:
    from trainer.detector import DetectorConfig, train_detector

    if args.backbone not in (None, "mobilenet_v2"):
        print("shelfscan-train: error: the facing detector uses --backbone mobilenet_v2", file=sys.stderr)
        return 2
    height, width = (
        (args.input_size, args.input_size)
        if isinstance(args.input_size, int)
        else (args.input_size or (DetectorConfig.height, DetectorConfig.width))
    )
    epochs = args.epochs or DetectorConfig.epochs
    cfg = DetectorConfig(
        **_options(
            args,
            "data",
            "out",
            "weights",
            "train_shelves",
            "val_shelves",
            "learning_rate",
            "batch_size",
            "seed",
            "val_pct",
            "test_pct",
            "score_threshold",
        ),
        height=height,
        width=width,
        epochs=epochs,
    )

    def summarize(metrics: dict[str, Any]) -> dict[str, Any]:
        val = metrics["val"]
        return {
            "val": {k: val[k] for k in ("images", "truth_boxes", "ap50", "ap50_95", "count_mae")},
            "run_dir": args.out,
            "timings": metrics["timings"],
        }

    def lines(summary: dict[str, Any]) -> Iterator[str]:
        val = summary["val"]
        yield (
            f"val: {val['images']} composed shelves, {val['truth_boxes']} facings   AP50 {val['ap50']:.4f}   "
            f"AP50:95 {val['ap50_95']:.4f}   count error {val['count_mae']:.3f} per image"
        )

    return _train_and_print(lambda: train_detector(cfg), summarize, lines, args.json)


def _train_and_print(
    train: Callable[[], dict[str, Any]],
    summarize: Callable[[dict[str, Any]], dict[str, Any]],
    lines: Callable[[dict[str, Any]], Iterable[str]],
    as_json: bool,
) -> int:
    """Run a training and print its outcome: the error (exit 2), or the summary as JSON or as the task's lines
    and the run directory. Classifier and detector runs end alike; only their figures differ."""
    try:
        metrics = train()
    except ShelfscanError as exc:
        print(f"shelfscan-train: error: {exc}", file=sys.stderr)
        return 2
    summary = summarize(metrics)
    if as_json:
        print(json.dumps(summary, indent=2))
    else:
        for line in lines(summary):
            print(line)
        print(
            f"run directory: {summary['run_dir']} (report.html, metrics.json, model.keras)   "
            f"{summary['timings']['total_s']} s"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
