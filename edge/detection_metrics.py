"""Detector accuracy against box truth: COCO-style AP50 and AP50:95, and counting error.

Pure numpy, class-agnostic (every truth box is a facing, every prediction a claim of one),
following the COCO evaluation (``pycocotools`` ``COCOeval``) for one category and one area
range, without its ``maxDets`` cap (the detector's own ``max_detections`` applies):

* per IoU threshold ``t``, predictions of all images are taken best score first; each is
  matched to the unmatched truth box of its image with the highest IoU, if that IoU is at
  least ``t`` (a true positive), otherwise it is a false positive: a second box on an
  already-found facing is a false positive, a facing nobody found lowers recall;
* precision is made monotone (each point takes the best precision at any higher recall) and
  read at the 101 recall points ``0, 0.01, ..., 1`` (0 beyond the highest recall reached);
  AP is their mean;
* AP50 uses ``t = 0.5``; AP50:95 averages ``t = 0.50, 0.55, ..., 0.95``.

Counting is what the shelf agent reports, so it gets its own figure: the mean absolute
difference between predicted and true box counts per image.

AP needs the whole precision-recall curve, so it is computed from boxes down to
:data:`EVAL_SCORE_FLOOR`; counts are what the agent would report, at the operating threshold.
:func:`detection_report` does both from one set of low-threshold predictions. The AP code was
checked against ``pycocotools`` on a random set (tests/test_detector.py keeps that case).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from edge.detections import Detections, box_iou

IOU_THRESHOLDS = tuple(round(0.5 + 0.05 * k, 2) for k in range(10))
EVAL_SCORE_FLOOR = 0.05  # boxes kept for AP: low enough for the whole curve, high enough to stay cheap
RECALL_POINTS = np.linspace(0.0, 1.0, 101)


def _check(predictions: Sequence[Detections], truths: Sequence[np.ndarray]) -> list[np.ndarray]:
    if len(predictions) != len(truths):
        raise ValueError(f"{len(predictions)} prediction sets for {len(truths)} images")
    return [np.asarray(t, np.float32).reshape(-1, 4) for t in truths]


def match_at(predictions: Sequence[Detections], truths: Sequence[np.ndarray], iou_threshold: float) -> np.ndarray:
    """True-positive flags of all predictions, ordered best score first across images (ties: image order)."""
    truth_boxes = _check(predictions, truths)
    if not predictions:
        return np.zeros(0, bool)
    scores = np.concatenate([p.scores for p in predictions])
    image = np.concatenate([np.full(len(p), i) for i, p in enumerate(predictions)])
    local = np.concatenate([np.arange(len(p)) for p in predictions])
    order = np.argsort(-scores, kind="stable")
    ious = [box_iou(p.xyxy, t) for p, t in zip(predictions, truth_boxes, strict=True)]
    taken = [np.zeros(len(t), bool) for t in truth_boxes]
    hits = np.zeros(len(order), bool)
    for rank, k in enumerate(order):
        i, j = int(image[k]), int(local[k])
        if not len(taken[i]):
            continue
        row = np.where(taken[i], -1.0, ious[i][j])
        best = int(np.argmax(row))
        if row[best] >= iou_threshold:
            taken[i][best] = True
            hits[rank] = True
    return hits


def average_precision(predictions: Sequence[Detections], truths: Sequence[np.ndarray], iou_threshold: float) -> float:
    """101-point interpolated AP at one IoU threshold; ``nan`` when there are no truth boxes."""
    positives = sum(len(t) for t in _check(predictions, truths))
    if positives == 0:
        return float("nan")
    hits = match_at(predictions, truths, iou_threshold)
    if hits.size == 0:
        return 0.0
    tp = np.cumsum(hits)
    recall = tp / positives
    precision = tp / np.arange(1, hits.size + 1)
    envelope = np.maximum.accumulate(precision[::-1])[::-1]
    at = np.searchsorted(recall, RECALL_POINTS, side="left")
    return float(np.where(at < hits.size, envelope[np.minimum(at, hits.size - 1)], 0.0).mean())


def count_errors(predictions: Sequence[Detections], truths: Sequence[np.ndarray]) -> np.ndarray:
    """Per image: predicted count minus true count (positive: too many boxes)."""
    truth_boxes = _check(predictions, truths)
    return np.array([len(p) - len(t) for p, t in zip(predictions, truth_boxes, strict=True)], np.int64)


@dataclass(frozen=True)
class DetectionReport:
    """AP50, AP50:95 (and AP per IoU threshold), count error, and the counts behind it."""

    images: int
    truth_boxes: int
    predicted_boxes: int
    ap50: float
    ap50_95: float
    ap_by_iou: dict[float, float]
    count_mae: float
    counts: list[tuple[int, int]]  # (predicted, truth) per image

    def to_dict(self) -> dict[str, Any]:
        def num(v: float) -> float | None:
            return None if np.isnan(v) else round(v, 6)

        return {
            "images": self.images,
            "truth_boxes": self.truth_boxes,
            "predicted_boxes": self.predicted_boxes,
            "ap50": num(self.ap50),
            "ap50_95": num(self.ap50_95),
            "ap_by_iou": {f"{t:.2f}": num(v) for t, v in self.ap_by_iou.items()},
            "count_mae": num(self.count_mae),
            "counts": [{"predicted": p, "truth": t} for p, t in self.counts],
        }


def evaluate_detections(predictions: Sequence[Detections], truths: Sequence[np.ndarray]) -> DetectionReport:
    """All the figures for one set of images (``predictions[i]`` against ``truths[i]``, boxes ``x0, y0, x1, y1``)."""
    truth_boxes = _check(predictions, truths)
    by_iou = {t: average_precision(predictions, truth_boxes, t) for t in IOU_THRESHOLDS}
    errors = count_errors(predictions, truth_boxes)
    return DetectionReport(
        images=len(predictions),
        truth_boxes=sum(len(t) for t in truth_boxes),
        predicted_boxes=sum(len(p) for p in predictions),
        ap50=by_iou[0.5],
        ap50_95=float(np.mean(list(by_iou.values()))),
        ap_by_iou=by_iou,
        count_mae=float(np.abs(errors).mean()) if len(errors) else float("nan"),
        counts=[(len(p), len(t)) for p, t in zip(predictions, truth_boxes, strict=True)],
    )


def whole_count_errors(
    predictions: Sequence[Detections],
    whole: Sequence[np.ndarray],
    sizes: Sequence[tuple[int, int]],
    margin: float = 1.0,
) -> np.ndarray:
    """Per image: boxes clear of the image border minus true facings wholly in view.

    A facing cut by the border counts in the truth when at least half of it is in view; near
    half, whether it should count is a coin toss that no detector can win (most of the strict
    count error of the facing detector is there). This figure leaves both sides of that toss
    out -- truth facings cut by the border (``whole`` False) and boxes touching the border
    (within ``margin`` pixels; ``sizes`` are (width, height)) -- and counts everything else.
    """
    out = []
    for p, w, (width, height) in zip(predictions, whole, sizes, strict=True):
        b = p.xyxy
        clear = (b[:, 0] > margin) & (b[:, 1] > margin) & (b[:, 2] < width - margin) & (b[:, 3] < height - margin)
        out.append(int(clear.sum()) - int(np.count_nonzero(w)))
    return np.array(out, np.int64)


def detection_report(
    predictions: Sequence[Detections],
    truths: Sequence[np.ndarray],
    score_threshold: float,
    whole: Sequence[np.ndarray] | None = None,
    sizes: Sequence[tuple[int, int]] | None = None,
) -> dict[str, Any]:
    """AP from every prediction given (decode at :data:`EVAL_SCORE_FLOOR`), counts at ``score_threshold``.

    The dict of :meth:`DetectionReport.to_dict` whose ``predicted_boxes``, ``counts`` and
    ``count_mae`` describe the boxes scoring at least ``score_threshold``, plus that threshold;
    given which truth facings are ``whole`` (not cut by the border) and the image ``sizes``,
    also ``count_mae_whole`` (:func:`whole_count_errors`).
    """
    full = evaluate_detections(predictions, truths)
    kept = [p.above(score_threshold) for p in predictions]
    errors = count_errors(kept, truths)
    counted = {
        "predicted_boxes": sum(len(p) for p in kept),
        "count_mae": round(float(np.abs(errors).mean()), 6) if len(errors) else None,
        "counts": [{"predicted": len(p), "truth": len(p) - int(e)} for p, e in zip(kept, errors, strict=True)],
        "score_threshold": score_threshold,
    }
    if whole is not None and sizes is not None:
        counted["count_mae_whole"] = round(float(np.abs(whole_count_errors(kept, whole, sizes)).mean()), 6)
    return full.to_dict() | counted
