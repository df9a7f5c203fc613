"""Detector outputs to boxes in frame pixels: pure numpy functions, one per output format.

The formats are defined in docs/detector.md. Both decoders end in frame pixels through the
same :class:`FrameMap`, built from :func:`edge.preprocess.crop_box`, so a box lands where the
object is whatever the preprocessing did (``stretch`` or ``center_crop``, any crop fraction).
"""

from __future__ import annotations

from typing import NamedTuple

import cv2
import numpy as np

from edge.adapters import dequantize
from edge.detections import Detections, nms
from edge.preprocess import PreprocessSpec, crop_box

_PEAK_KERNEL = np.ones((3, 3), np.uint8)
Quant = tuple[float, int]  # (scale, zero_point); scale 0 means float data


class FrameMap(NamedTuple):
    """Model-input pixels to frame pixels: ``frame_x = offset_x + input_x * scale_x`` (likewise y)."""

    scale_x: float
    scale_y: float
    offset_x: float
    offset_y: float
    frame_width: int
    frame_height: int
    input_width: int
    input_height: int


def frame_map(frame_height: int, frame_width: int, spec: PreprocessSpec) -> FrameMap:
    """The map for frames of this size: the crop window ``spec`` takes, stretched over the model input."""
    y0, y1, x0, x1 = crop_box(frame_height, frame_width, spec)
    return FrameMap(
        (x1 - x0) / spec.width,
        (y1 - y0) / spec.height,
        float(x0),
        float(y0),
        frame_width,
        frame_height,
        spec.width,
        spec.height,
    )


def to_frame(xyxy: np.ndarray, fmap: FrameMap) -> np.ndarray:
    """Boxes in input pixels ``(N, 4)`` to frame pixels, clipped to the frame (float32, a new array)."""
    out = np.empty((len(xyxy), 4), np.float32)
    out[:, 0::2] = xyxy[:, 0::2] * fmap.scale_x + fmap.offset_x
    out[:, 1::2] = xyxy[:, 1::2] * fmap.scale_y + fmap.offset_y
    np.clip(out[:, 0::2], 0, fmap.frame_width, out=out[:, 0::2])
    np.clip(out[:, 1::2], 0, fmap.frame_height, out=out[:, 1::2])
    return out


def _nonempty(xyxy: np.ndarray) -> np.ndarray:
    return (xyxy[:, 2] > xyxy[:, 0]) & (xyxy[:, 3] > xyxy[:, 1])


def heatmap_peaks(heatmap: np.ndarray, score_threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """Rows and columns of cells that are the maximum of their 3x3 neighbourhood and at least the threshold.

    ``cv2.dilate`` with a 3x3 kernel is that max-pool (cells beyond the border never win);
    equal neighbours are both peaks, as in CenterNet, and suppression settles them.
    """
    pooled = cv2.dilate(heatmap, _PEAK_KERNEL)
    rows, cols = np.nonzero((heatmap == pooled) & (heatmap >= score_threshold))
    return rows, cols


def decode_centernet(
    heatmap: np.ndarray,
    boxes: np.ndarray,
    stride: int,
    fmap: FrameMap,
    *,
    score_threshold: float = 0.3,
    nms_iou: float = 0.5,
    max_detections: int = 100,
    heatmap_quantization: Quant = (0.0, 0),
    boxes_quantization: Quant = (0.0, 0),
) -> Detections:
    """Decode the centernet outputs ``heatmap`` ``(1, h, w, 1)`` and ``boxes`` ``(1, h, w, 4)`` (raw tensors).

    A peak at cell ``(i, j)`` with distances ``l, t, r, b`` is the input-pixel box
    ``((j + .5 - l) * s, (i + .5 - t) * s, (j + .5 + r) * s, (i + .5 + b) * s)``, mapped to the
    frame, clipped, suppressed at ``nms_iou`` and cut to the ``max_detections`` best. Quantized
    tensors are dequantized here; box distances only at the peaks, so the work is per peak,
    not per cell. Negative distances (quantization noise) count as 0; empty boxes are dropped.
    """
    rows, cols = heatmap.shape[-3:-1] if heatmap.ndim == 4 else heatmap.shape
    scores = dequantize(heatmap.reshape(rows, cols), *heatmap_quantization)
    ys, xs = heatmap_peaks(np.ascontiguousarray(scores), score_threshold)
    if ys.size == 0:
        return Detections.empty()
    ltrb = np.maximum(dequantize(boxes.reshape(rows, cols, 4)[ys, xs], *boxes_quantization), 0.0)
    cx, cy = xs.astype(np.float32) + 0.5, ys.astype(np.float32) + 0.5
    xyxy = np.stack([cx - ltrb[:, 0], cy - ltrb[:, 1], cx + ltrb[:, 2], cy + ltrb[:, 3]], axis=1) * stride
    xyxy = to_frame(xyxy, fmap)
    keep = _nonempty(xyxy)
    found = Detections(xyxy[keep], scores[ys, xs][keep])
    return nms(found, nms_iou)[:max_detections]


def decode_postprocess(
    boxes: np.ndarray,
    classes: np.ndarray,
    scores: np.ndarray,
    count: np.ndarray,
    fmap: FrameMap,
    *,
    score_threshold: float = 0.3,
    max_detections: int = 100,
    quantization: dict[str, Quant] | None = None,
) -> Detections:
    """Decode TFLite detection post-processing outputs: boxes ``(1, N, 4)``, classes, scores ``(1, N)``, count.

    Boxes are normalized ``ymin, xmin, ymax, xmax`` over the model input. Only the first
    ``count`` slots are read (the rest is padding, often uninitialised memory); boxes below
    ``score_threshold`` are dropped and at most ``max_detections`` kept, best first. The op has
    already suppressed overlaps, so there is no second suppression here. ``quantization`` maps
    an output role to ``(scale, zero_point)`` for the rare model whose outputs are quantized.
    """
    q = quantization or {}
    n = int(dequantize(count.reshape(-1)[:1], *q.get("count", (0.0, 0)))[0])
    n = max(0, min(n, scores.size))
    sc = dequantize(scores.reshape(-1)[:n], *q.get("scores", (0.0, 0)))
    keep = np.flatnonzero(sc >= score_threshold)
    yxyx = dequantize(boxes.reshape(-1, 4)[keep], *q.get("boxes", (0.0, 0)))
    xyxy = yxyx[:, [1, 0, 3, 2]] * np.array([fmap.input_width, fmap.input_height] * 2, np.float32)
    xyxy = to_frame(xyxy, fmap)
    ids = np.rint(dequantize(classes.reshape(-1)[keep], *q.get("classes", (0.0, 0)))).astype(np.int64)
    nonempty = _nonempty(xyxy)
    return Detections(xyxy[nonempty], sc[keep][nonempty], ids[nonempty]).best(max_detections)
