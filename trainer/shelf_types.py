"""What a composed shelf is: the composer's style ranges, the shelf image with its facing and gap truth.

:class:`Shelf` (a BGR image, its :class:`Facing` boxes, :class:`Gap` spans and row bands) is what
:func:`trainer.shelf_composer.compose_canvas` draws, the camera (:mod:`trainer.composer_camera`)
films and ``shelves.json`` records; :class:`ShelfStyle` holds the ranges they are drawn from.

Kept apart from :mod:`trainer.shelf_composer` because every stage of the composer, the camera
and the shelf-pass video pass these around: a module of their own lets each stage import them
without importing the others.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

Box = tuple[float, float, float, float]  # x0, y0, x1, y1 in pixels, x1/y1 exclusive


@dataclass(frozen=True)
class ShelfStyle:
    """Ranges the composer draws from; sizes in pixels are for a 640-pixel-wide image and scale with it."""

    rows: tuple[int, int] = (1, 3)  # shelf rows in view
    run_length: tuple[int, int] = (1, 6)  # identical facings side by side
    facing_gap_px: tuple[int, int] = (0, 8)  # between facings of one run
    run_gap_px: tuple[int, int] = (0, 14)  # between two runs
    empty_prob: float = 0.15  # chance that an empty slot of about one facing follows a run (~4 % of slots)
    fill: tuple[float, float] = (0.7, 0.95)  # facing height / free height of the row
    size_jitter: float = 0.12  # relative width jitter around the photo's aspect
    zoom: tuple[float, float] = (1.0, 1.3)
    perspective: float = 0.035  # corner jitter, share of the image size
    motion_blur_px: tuple[int, int] = (0, 9)
    noise: tuple[float, float] = (0.0, 6.0)
    exposure: tuple[float, float] = (0.65, 1.3)
    min_visible: float = 0.5  # a facing cut by the border is listed when this share is in view

    def dense_runs(self) -> ShelfStyle:
        """Only runs of 3 to 6 identical facings touching each other, no empty slots (the hard case)."""
        return replace(self, run_length=(3, 6), facing_gap_px=(0, 0), run_gap_px=(0, 0), empty_prob=0.0)


@dataclass
class Facing:
    box: Box  # what is in view (clipped to the image)
    label: str
    row: int
    photo: str
    full: Box | None = None  # the whole facing, also where the image border cuts it (None: same as box)

    @property
    def extent(self) -> Box:
        """The whole (amodal) box: what the detector learns, so a cut facing's centre says if it is half in view."""
        return self.full or self.box


@dataclass
class Gap:
    box: Box
    row: int


@dataclass
class Shelf:
    """A composed shelf image (BGR) and its truth."""

    image: np.ndarray
    facings: list[Facing] = field(default_factory=list)
    gaps: list[Gap] = field(default_factory=list)
    rows: list[tuple[float, float]] = field(default_factory=list)  # y0, y1 of each row

    def to_dict(self, file: str) -> dict[str, Any]:
        h, w = self.image.shape[:2]
        return {
            "file": file,
            "width": w,
            "height": h,
            "facings": [
                {"box": _r(f.box), "label": f.label, "row": f.row, "photo": f.photo}
                | ({"full_box": _r(f.full)} if f.full else {})
                for f in self.facings
            ],
            "gaps": [{"box": _r(g.box), "row": g.row} for g in self.gaps],
            "rows": [{"y0": round(a, 1), "y1": round(b, 1)} for a, b in self.rows],
        }


def _r(box: Box) -> list[float]:
    return [round(float(v), 2) for v in box]
