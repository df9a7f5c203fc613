"""Boxes found in one frame, as one small composable value (in the spirit of ``supervision``).

A :class:`Detections` is three parallel arrays, so filtering, sorting and suppression are
array indexing rather than loops over objects: ``dets[dets.scores >= 0.5]``, ``dets[:10]``.
Coordinates are frame pixels, ``x1``/``y1`` exclusive, the convention of ``shelves.json``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

_NO_BOXES = np.zeros((0, 4), np.float32)
_NO_SCORES = np.zeros(0, np.float32)


@dataclass(frozen=True, eq=False)
class Detections:
    """``xyxy`` float32 ``(N, 4)`` in frame pixels, ``scores`` float32 ``(N,)``, optional ``class_id`` int ``(N,)``.

    Class-agnostic detectors (the facing detector) leave ``class_id`` as ``None``.
    """

    xyxy: np.ndarray
    scores: np.ndarray
    class_id: np.ndarray | None = None

    def __post_init__(self) -> None:
        n = len(self.scores)
        if self.xyxy.shape != (n, 4) or self.scores.shape != (n,):
            raise ValueError(f"xyxy must be (N, 4) and scores (N,); got {self.xyxy.shape} and {self.scores.shape}")
        if self.class_id is not None and self.class_id.shape != (n,):
            raise ValueError(f"class_id must be ({n},), got {self.class_id.shape}")

    @classmethod
    def empty(cls) -> Detections:
        return cls(_NO_BOXES, _NO_SCORES)

    @classmethod
    def from_arrays(cls, xyxy: Any, scores: Any, class_id: Any = None) -> Detections:
        """Build from any array-likes, converting to the canonical dtypes."""
        boxes = np.asarray(xyxy, np.float32).reshape(-1, 4)
        ids = None if class_id is None else np.asarray(class_id, np.int64).reshape(-1)
        return cls(boxes, np.asarray(scores, np.float32).reshape(-1), ids)

    @classmethod
    def merge(cls, parts: Sequence[Detections]) -> Detections:
        """Concatenate; ``class_id`` survives only when every part has it."""
        if not parts:
            return cls.empty()
        ids = None
        if all(p.class_id is not None for p in parts):
            ids = np.concatenate([p.class_id for p in parts])
        return cls(np.concatenate([p.xyxy for p in parts]), np.concatenate([p.scores for p in parts]), ids)

    def __len__(self) -> int:
        return len(self.scores)

    def __getitem__(self, index: int | slice | np.ndarray | Sequence[int]) -> Detections:
        """Select by boolean mask, index array, slice or one index (which keeps it a ``Detections``)."""
        if isinstance(index, int | np.integer):
            index = [int(index)]
        ids = None if self.class_id is None else self.class_id[index]
        return Detections(self.xyxy[index], self.scores[index], ids)

    @property
    def area(self) -> np.ndarray:
        area: np.ndarray = (self.xyxy[:, 2] - self.xyxy[:, 0]) * (self.xyxy[:, 3] - self.xyxy[:, 1])
        return area

    def above(self, score_threshold: float) -> Detections:
        """The boxes scoring at least ``score_threshold``."""
        return self[self.scores >= score_threshold]

    def best(self, k: int) -> Detections:
        """At most ``k`` boxes, best score first (stable among equal scores)."""
        order = np.argsort(-self.scores, kind="stable")[:k]
        return self[order]

    def to_list(self, labels: Sequence[str] | None = None, digits: int = 2) -> list[dict[str, Any]]:
        """JSON-ready rows: ``box`` (x0, y0, x1, y1), ``score``, and ``class_id``/``label`` when known."""
        rows = []
        for i in range(len(self)):
            row: dict[str, Any] = {
                "box": [round(float(v), digits) for v in self.xyxy[i]],
                "score": round(float(self.scores[i]), 6),
            }
            if self.class_id is not None:
                cid = int(self.class_id[i])
                row["class_id"] = cid
                if labels is not None:
                    row["label"] = labels[cid] if 0 <= cid < len(labels) else f"class {cid}"
            rows.append(row)
        return rows


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Intersection over union of every box in ``a`` ``(N, 4)`` with every box in ``b`` ``(M, 4)``: ``(N, M)``.

    Boxes are ``x0, y0, x1, y1`` with exclusive ends, so the area is ``(x1 - x0) * (y1 - y0)``
    (no ``+ 1``). Empty boxes have IoU 0 with everything.
    """
    a = np.asarray(a, np.float32).reshape(-1, 4)
    b = np.asarray(b, np.float32).reshape(-1, 4)
    ix = np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0])
    iy = np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1])
    inter = np.clip(ix, 0, None) * np.clip(iy, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    iou: np.ndarray = np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
    return iou


def nms(detections: Detections, iou: float) -> Detections:
    """Greedy class-agnostic non-maximum suppression; the result is sorted by score, best first.

    A box is dropped when its IoU with a better kept box is above ``iou`` (ties in score: the
    earlier box wins). This is ``cv2.dnn.NMSBoxes`` (float ``Rect2d`` boxes, the same IoU as
    :func:`box_iou`): measured at 20 / 100 / 300 candidate boxes it took 10 / 43 / 219 us
    against 320 / 1600 / 5150 us for a numpy loop over kept boxes, with identical results.
    OpenCV drops scores that are not above its threshold, so it is handed ranks instead of
    scores: only the order matters to greedy suppression. Boxes must have positive width
    and height (the decoders drop empty ones).
    """
    n = len(detections)
    if n <= 1:
        return detections
    order = np.argsort(-detections.scores, kind="stable")
    xywh = detections.xyxy[order].astype(np.float64)
    xywh[:, 2:] -= xywh[:, :2]
    ranks = np.arange(n, 0, -1, dtype=np.float32)
    # arg-type: OpenCV's generated stubs type the boxes and scores as Sequences; its binding takes the
    # (n, 4) float64 and (n,) float32 arrays directly, which is what makes this fast (no Python lists).
    kept = cv2.dnn.NMSBoxes(xywh, ranks, 0.0, float(iou))  # type: ignore[arg-type]
    keep = np.sort(np.asarray(kept, np.int64).reshape(-1))
    return detections[order[keep]]
