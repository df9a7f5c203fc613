"""Synthetic box streams: a ground-truth shelf (exact world boxes) seen by a panning camera.

What the facing detector and the classifier would hand the counter, frame by frame, with the
hard parts switchable: touching identical neighbours, empty slots, box jitter, a motion
estimate that drifts, vertical bob and slight zoom, missed detections, noisy labels. Used by
tests/test_facing_counter.py and the tracker comparison in docs/tracking.md.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np

from edge.detections import Detections
from trainer.shelf_composer import row_gaps
from trainer.shelf_types import Facing

NAMES = {
    "A": "beans",
    "B": "cereal",
    "C": "coffee",
    "D": "milk",
    "E": "pasta",
    "F": "tea",
    "G": "juice",
    "H": "rice",
    "I": "sugar",
    "J": "water",
}
WIDTHS = {"A": 80, "B": 64, "C": 92, "D": 72, "E": 84, "F": 70, "G": 76, "H": 88, "I": 66, "J": 78}
HEIGHTS = {"A": 100, "B": 120, "C": 96, "D": 110, "E": 104, "F": 90, "G": 116, "H": 98, "I": 106, "J": 112}
Box = tuple[float, float, float, float]


@dataclass(frozen=True)
class TruthFacing:
    id: int
    label: str
    row: int
    box: Box  # world pixels


@dataclass(frozen=True)
class TruthGap:
    row: int
    x0: float
    x1: float
    left: int  # truth facing ids
    right: int


@dataclass
class TruthShelf:
    facings: list[TruthFacing] = field(default_factory=list)
    gaps: list[TruthGap] = field(default_factory=list)

    def counts(self, ids: Sequence[int] | None = None) -> dict[str, int]:
        out: dict[str, int] = {}
        for f in self.facings:
            if ids is None or f.id in ids:
                out[f.label] = out.get(f.label, 0) + 1
        return dict(sorted(out.items()))

    def row_counts(self) -> dict[int, dict[str, int]]:
        out: dict[int, dict[str, int]] = {}
        for f in self.facings:
            row = out.setdefault(f.row, {})
            row[f.label] = row.get(f.label, 0) + 1
        return {r: dict(sorted(c.items())) for r, c in sorted(out.items())}


def build_shelf(
    rows: Sequence[str],
    x_start: float = 0.0,
    floor0: float = 170.0,
    pitch: float = 190.0,
    run_gap: float = 4.0,
    slot: float = 80.0,
) -> TruthShelf:
    """Rows top to bottom from strings: a letter is a facing (same letters touch), ``_`` an empty slot.

    Facings of a row stand on its board (``floor0 + row * pitch``); two runs are ``run_gap`` apart.
    The gaps are what ``trainer.shelf_composer.row_gaps`` (the truth writer) says they are.
    """
    shelf = TruthShelf()
    for r, spec in enumerate(rows):
        floor = floor0 + r * pitch
        x, prev = x_start, None
        members: list[TruthFacing] = []
        for ch in spec:
            if ch == "_":
                x += slot + run_gap
                prev = None
                continue
            if prev is not None and ch != prev:
                x += run_gap
            w, h = WIDTHS[ch], HEIGHTS[ch]
            f = TruthFacing(len(shelf.facings), NAMES[ch], r, (x, floor - h, x + w, floor))
            shelf.facings.append(f)
            members.append(f)
            x += w
            prev = ch
        truth = row_gaps([Facing(f.box, f.label, r, "") for f in members], r, floor - 120, floor)
        by_x1 = {f.box[2]: f.id for f in members}
        by_x0 = {f.box[0]: f.id for f in members}
        shelf.gaps += [TruthGap(r, g.box[0], g.box[2], by_x1[g.box[0]], by_x0[g.box[2]]) for g in truth]
    return shelf


def pan(x0: float, x1: float, speed: float) -> list[float]:
    """Camera x offsets from ``x0`` to ``x1`` (inclusive) at ``speed`` px per frame, either way."""
    n = max(1, round(abs(x1 - x0) / speed))
    return [x0 + (x1 - x0) * k / n for k in range(n + 1)]


def still(x: float, frames: int) -> list[float]:
    return [x] * frames


@dataclass
class Frame:
    index: int
    t: float
    detections: Detections
    labels: list[tuple[str | None, float]]
    offset: tuple[float, float]  # what the motion estimate says (true offset plus drift)
    true_offset: tuple[float, float]
    truth_ids: list[int]  # the truth facing of each detection


Labeler = Callable[[TruthFacing, int, np.random.Generator], tuple[str | None, float]]


def clean_labels(f: TruthFacing, k: int, rng: np.random.Generator) -> tuple[str | None, float]:
    return f.label, float(rng.uniform(0.7, 0.95))


def noisy_labels(wrong: float) -> Labeler:
    """The right label most of the time; with probability ``wrong`` another one, less sure."""
    others = sorted(NAMES.values())

    def label(f: TruthFacing, k: int, rng: np.random.Generator) -> tuple[str | None, float]:
        if rng.random() < wrong:
            return str(rng.choice([o for o in others if o != f.label])), float(rng.uniform(0.4, 0.7))
        return f.label, float(rng.uniform(0.6, 0.95))

    return label


def stream(
    shelf: TruthShelf,
    xs: Sequence[float],
    seed: int = 0,
    width: int = 640,
    height: int = 480,
    jitter: float = 1.0,
    drift: float = 0.3,
    bob: float = 0.0,
    zoom: float = 0.0,
    fps: float = 10.0,
    miss: Callable[[int, int], bool] | None = None,
    labeler: Labeler = clean_labels,
    min_visible: float = 0.5,
) -> Iterator[Frame]:
    """Frames of the camera at x offsets ``xs`` (world = frame + offset).

    ``jitter``: box corner noise (px, sigma); ``drift``: per-frame random walk of the motion
    estimate's error (px, sigma); ``bob``: vertical camera sway amplitude (px); ``zoom``: relative
    scale sway about the frame centre; ``miss(truth_id, frame)`` drops a detection. Boxes are
    clipped to the frame, like the detector's, and listed when ``min_visible`` of them is in view.
    """
    rng = np.random.default_rng(seed)
    err = np.zeros(2)
    world = np.array([f.box for f in shelf.facings], np.float64).reshape(-1, 4)
    centre = np.array([width / 2, height / 2, width / 2, height / 2])
    for k, x in enumerate(xs):
        oy = bob * np.sin(k / 6.0)
        z = 1.0 + zoom * np.sin(k / 17.0)
        boxes = (world - np.array([x, oy, x, oy]) - centre) * z + centre
        boxes = boxes + rng.normal(0.0, jitter, boxes.shape) if jitter else boxes
        clipped = np.clip(boxes, [0, 0, 0, 0], [width, height, width, height])
        area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
        seen = np.clip(clipped[:, 2] - clipped[:, 0], 0, None) * np.clip(clipped[:, 3] - clipped[:, 1], 0, None)
        keep = [i for i in range(len(world)) if seen[i] >= min_visible * area[i] and not (miss and miss(i, k))]
        if k:
            err += rng.normal(0.0, drift, 2)
        labels = [labeler(shelf.facings[i], k, rng) for i in keep]
        order = rng.permutation(len(keep))  # the detector's order means nothing
        keep = [keep[i] for i in order]
        labels = [labels[i] for i in order]
        dets = Detections.from_arrays(clipped[keep].reshape(-1, 4), rng.uniform(0.5, 0.95, len(keep)))
        yield Frame(k, k / fps, dets, labels, (x + err[0], oy + err[1]), (x, oy), keep)
