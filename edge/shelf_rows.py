"""Shelf rows for the facing counter: which row a box belongs to, and the out-of-stock gap between two neighbours.

Rows are clusters of world y centres (:func:`edge.shelf_events.cluster_rows` for the first boxes,
then the nearest row within ``row_gap`` row heights); a :class:`Row` keeps its counted facings
ordered along the shelf. An empty span between two counted neighbours of a row wider than
``gap_share`` of the row's median facing width is one gap: the rule of
``trainer/shelf_composer.row_gaps``, which writes the truth.

Kept apart from :mod:`edge.shelf_counter` because this is the geometry of one row, the same
whatever the tracks and the counting line do: the counter decides *when* a gap is certain, these
functions say *whether* there is one and where.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edge.facing_tracks import Placed, Track
from edge.shelf_events import FacingCounted, GapFound, cluster_rows, to_box


@dataclass(eq=False)
class Row:
    id: int
    ys: deque[float] = field(default_factory=lambda: deque(maxlen=64))
    heights: deque[float] = field(default_factory=lambda: deque(maxlen=64))
    placed: list[Placed] = field(default_factory=list)  # ordered by world x centre
    centres: list[float] = field(default_factory=list)  # their world x centres, for bisect

    def centre(self) -> float:
        return float(np.median(self.ys)) if self.ys else 0.0

    def height(self) -> float:
        return float(np.median(self.heights)) if self.heights else 0.0


def seed_rows(world: np.ndarray, row_gap: float) -> list[Row]:
    """The first boxes define the rows in view, numbered top to bottom; later rows get the next ids."""
    yc = (world[:, 1] + world[:, 3]) / 2
    heights = world[:, 3] - world[:, 1]
    rows = cluster_rows(yc.tolist(), heights.tolist(), row_gap)
    seeded = []
    for r in range(max(rows) + 1):
        members = [i for i, k in enumerate(rows) if k == r]
        seeded.append(Row(r, deque(yc[members].tolist(), 64), deque(heights[members].tolist(), 64)))
    return seeded


def row_for(rows: list[Row], world_box: np.ndarray, row_gap: float) -> Row:
    """The row nearest ``world_box``'s centre within ``row_gap`` heights, or a new one appended to ``rows``."""
    y = float(world_box[1] + world_box[3]) / 2
    h = float(world_box[3] - world_box[1])
    best, best_d = None, float("inf")
    for row in rows:
        d = abs(y - row.centre())
        if d <= row_gap * max(row.height(), h) and d < best_d:
            best, best_d = row, d
    if best is None:
        best = Row(len(rows))
        rows.append(best)
    return best


def median_width(row: Row, tracks: Iterable[Track]) -> float:
    """The row's median facing width: its counted facings, and its live ``tracks`` while it has fewer than 3."""
    widths = [p.world_box[2] - p.world_box[0] for p in row.placed]
    if len(widths) < 3:
        widths += [float(np.median(t.widths)) for t in tracks if t.row == row.id and t.widths]
    return float(np.median(widths)) if widths else 0.0


def find_gap(
    row: Row,
    left: FacingCounted,
    right: FacingCounted,
    tracks: Iterable[Track],
    gap_share: float,
    last: tuple[int, float, dict[str, Any] | None],
) -> GapFound | None:
    """The gap between two reported neighbours of ``row`` when the span between them is wider than
    ``gap_share`` median widths, found at ``last`` (frame index, time, pose); None when there is none."""
    span = right.world_box[0] - left.world_box[2]
    median = median_width(row, tracks)
    if median <= 0 or span <= gap_share * median:
        return None
    frame_index, t, pose = last
    top = min(left.world_box[1], right.world_box[1])
    bottom = max(left.world_box[3], right.world_box[3])
    return GapFound(
        row.id,
        left.world_box[2],
        right.world_box[0],
        round(span / median, 3),
        left.label,
        right.label,
        left.track_id,
        right.track_id,
        to_box((left.world_box[2], top, right.world_box[0], bottom)),
        frame_index,
        t,
        pose,
    )
