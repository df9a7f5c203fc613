"""Detector runs (``task: detect``) -> TFLite variants -> detect bundles, judged by AP50 through the edge runtime.

The same table of variants and the same export wrapper as classifiers; what differs is the
data: int8 calibration runs on composed shelves (or a folder of shelf images), and the gate
compares each variant's AP50 on a box-truth set (``shelves.json``, docs/detector.md) with the
Keras model's, decoded by the one edge decoder.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from converter.compare import Column, fixed, runtime_row
from edge.detection_metrics import EVAL_SCORE_FLOOR, detection_report
from edge.detector import Detector
from edge.errors import ShelfscanError
from edge.preprocess import Preprocessor, PreprocessSpec, read_image
from edge.progress import Progress

log = logging.getLogger(__name__)


def calibration_frames(run: Any, folder: Path | None, count: int, seed: int = 0) -> list[np.ndarray]:
    """BGR frames for int8 calibration: images from ``folder``, or shelves composed from the run's train photos."""
    if folder is not None:
        from converter.calibration import pick_images

        return [read_image(p) for p in pick_images(folder, count, seed)]
    from trainer.dataset import load_dataset
    from trainer.detector import FRAME
    from trainer.shelf_composer import PhotoLibrary, compose

    cfg = run.config
    if not cfg.get("data"):
        raise ShelfscanError(f"{run.root}: config.json names no data folder; pass --calibration DIR")
    ds = load_dataset(cfg["data"], val_pct=cfg.get("val_pct", 10.0), test_pct=cfg.get("test_pct", 0.0), verify=False)
    library = PhotoLibrary([(ds.classes[s.label], s.path) for s in ds.splits["train"]], f"{cfg['data']} (train)")
    # A seed the trainer never used, so calibration shelves are new compositions of train photos.
    return [compose(library, *FRAME, seed + 1000, i).image for i in range(count)]


def representative(frames: list[np.ndarray], spec: PreprocessSpec) -> Any:
    """``TFLiteConverter.representative_dataset`` over frames, through the edge preprocessing."""

    def generate() -> Iterator[list[np.ndarray]]:
        pre = Preprocessor(spec, "float32")
        with Progress(len(frames), "int8 calibration") as bar:
            for frame in frames:
                yield [pre.from_bgr(frame).copy()]
                bar.update()

    return generate


@dataclass(frozen=True)
class EvalSet:
    """A composed set: image paths, truth boxes, which facings are whole (not cut by the border), image sizes."""

    paths: list[Path]
    boxes: list[np.ndarray]
    whole: list[np.ndarray]
    sizes: list[tuple[int, int]]


def read_eval_set(folder: Path) -> EvalSet:
    """The images and truth of a composed set (``shelves.json``)."""
    from trainer.shelf_composer import TRUTH_NAME, read_truth

    truth_path = folder / TRUTH_NAME
    if not truth_path.is_file():
        raise ShelfscanError(f"{folder}: no {TRUTH_NAME} (a detector is evaluated on a set with box truth)")
    images = read_truth(truth_path)["images"]
    return EvalSet(
        [folder / img["file"] for img in images],
        [np.array([f["box"] for f in img["facings"]], np.float32).reshape(-1, 4) for img in images],
        [np.array(["full_box" not in f for f in img["facings"]], bool) for img in images],
        [(int(img["width"]), int(img["height"])) for img in images],
    )


def _summary(report: dict[str, Any]) -> dict[str, Any]:
    return {k: report.get(k) for k in ("images", "ap50", "ap50_95", "count_mae", "count_mae_whole")}


def keras_reference(run: Any, eval_set: EvalSet) -> dict[str, Any]:
    """The Keras model's figures on the eval set, decoded by the edge decoder."""
    from edge.detect_decode import decode_centernet, frame_map

    det = run.config["detection"]
    pre = Preprocessor(run.spec, "float32")
    predictions = []
    for path in eval_set.paths:
        frame = read_image(path)
        heat, boxes = run.model(pre.from_bgr(frame), training=False)
        fmap = frame_map(frame.shape[0], frame.shape[1], run.spec)
        predictions.append(
            decode_centernet(
                np.asarray(heat),
                np.asarray(boxes),
                det["stride"],
                fmap,
                score_threshold=EVAL_SCORE_FLOOR,
                nms_iou=det["nms_iou"],
                max_detections=det["max_detections"],
            )
        )
    return _summary(
        detection_report(predictions, eval_set.boxes, det["score_threshold"], eval_set.whole, eval_set.sizes)
    )


def evaluate_detector_variant(bundle: Path, eval_set: EvalSet | None, runs: int) -> dict[str, Any]:
    """Size, load time, invoke latency at 1 and 2 threads, and AP50 / count error through the edge Detector."""
    det, row = runtime_row(bundle, runs, Detector.from_bundle)
    if eval_set is not None:
        threshold = det.settings.score_threshold
        scan = Detector.from_bundle(bundle, threads=2, score_threshold=EVAL_SCORE_FLOOR)
        with Progress(len(eval_set.paths), f"evaluate {bundle.name}") as bar:
            predictions = []
            for p in eval_set.paths:
                predictions.append(scan.detect_path(p))
                bar.update()
        row |= _summary(detection_report(predictions, eval_set.boxes, threshold, eval_set.whole, eval_set.sizes))
    return row


COLUMNS: tuple[Column, ...] = (
    ("AP50", "ap50", fixed(".4f")),
    ("AP50:95", "ap50_95", fixed(".4f")),
    ("count error", "count_mae", fixed(".3f")),
    ("whole facings", "count_mae_whole", fixed(".3f")),
)
