"""Frame-to-frame association of facing boxes in shelf (world) coordinates.

Shifted by the camera's world offset (:mod:`edge.motion`), a facing's box barely moves from
one frame to the next whatever the robot does, so a track's last world box is its prediction:
no Kalman filter, no velocity. Greedy matching by IoU, best pair first, is then enough: the
true match overlaps by 0.8-0.95, an identical neighbour touching it by ~0 (it sits a whole
facing width away), so neighbours cannot swap. Why this and not a tracker library, with the
measurements: docs/tracking.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from edge.detections import box_iou


class Associator(Protocol):
    """What the counter needs from a tracker: one track id per box (``-1``: not tracked), ids never reused."""

    def update(self, world_xyxy: np.ndarray, scores: np.ndarray) -> np.ndarray: ...

    def reset(self) -> None: ...


def greedy_match(iou: np.ndarray, threshold: float) -> list[tuple[int, int]]:
    """Pairs ``(row, col)`` of ``iou`` taken best first, each row and column once, all at least ``threshold``.

    Ties are broken by position (row-major), so the result is deterministic.
    """
    if iou.size == 0:
        return []
    flat = iou.ravel()
    order = np.argsort(-flat, kind="stable")
    order = order[flat[order] >= threshold]
    cols = iou.shape[1]
    used_r: set[int] = set()
    used_c: set[int] = set()
    pairs = []
    for k in order.tolist():
        r, c = divmod(k, cols)
        if r not in used_r and c not in used_c:
            used_r.add(r)
            used_c.add(c)
            pairs.append((r, c))
    return pairs


@dataclass
class _Live:
    box: np.ndarray  # last world box
    missed: int = 0


class WorldTracker:
    """Greedy IoU association of world boxes; a track survives ``max_missed`` frames without a box.

    Measured with 6 / 22 boxes per frame: about 50 / 100 us per :meth:`update` on one x86 core (docs/tracking.md).
    """

    def __init__(self, match_iou: float = 0.3, max_missed: int = 3) -> None:
        self.match_iou = match_iou
        self.max_missed = max_missed
        self.reset()

    def reset(self) -> None:
        self._live: dict[int, _Live] = {}
        self._next_id = 1

    @property
    def live_ids(self) -> list[int]:
        return list(self._live)

    def update(self, world_xyxy: np.ndarray, scores: np.ndarray | None = None) -> np.ndarray:
        """Track ids for this frame's world boxes ``(N, 4)``, in their order; unmatched boxes start tracks."""
        boxes = np.asarray(world_xyxy, np.float32).reshape(-1, 4)
        ids = np.full(len(boxes), -1, np.int64)
        keys = list(self._live)
        if keys and len(boxes):
            prior = np.stack([self._live[k].box for k in keys])
            for r, c in greedy_match(box_iou(prior, boxes), self.match_iou):
                ids[c] = keys[r]
        matched = set(ids[ids >= 0].tolist())
        for k in keys:
            if k not in matched:
                track = self._live[k]
                track.missed += 1
                if track.missed > self.max_missed:
                    del self._live[k]
        for i in range(len(boxes)):
            if ids[i] < 0:
                ids[i] = self._next_id
                self._next_id += 1
                self._live[int(ids[i])] = _Live(boxes[i].copy())
            else:
                track = self._live[int(ids[i])]
                track.box, track.missed = boxes[i].copy(), 0
        return ids
