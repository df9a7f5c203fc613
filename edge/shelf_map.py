"""The facing counter's shelf map: per row, the reported facings and gaps along the shelf, in pixels and metres.

:func:`row_map` writes one row of :meth:`edge.shelf_counter.FacingCounter.shelfmap` (the document a
planogram-compliance tool compares with its plan); :class:`PoseFit` turns world pixels into metres
by fitting odometry (``x_m``) against the counting line's world position.

Kept apart from :mod:`edge.shelf_counter` because this is output formatting over finished
results: it reads the rows and gaps the counter settled and changes nothing.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

from edge.shelf_events import GapFound
from edge.shelf_rows import Row


class PoseFit:
    """Least-squares ``x_m = a + b * world_x`` from (counting line position, odometry) pairs."""

    def __init__(self) -> None:
        self.n, self.sx, self.sy, self.sxx, self.sxy = 0, 0.0, 0.0, 0.0, 0.0

    def add(self, x: float, y: float) -> None:
        self.n += 1
        self.sx, self.sy, self.sxx, self.sxy = self.sx + x, self.sy + y, self.sxx + x * x, self.sxy + x * y

    def metres(self, x: float) -> float | None:
        if self.n < 2:
            return None
        var = self.sxx - self.sx * self.sx / self.n
        if var < 1.0 * self.n:  # under a pixel of travel: no scale to fit
            return None
        b = (self.sxy - self.sx * self.sy / self.n) / var
        return round((self.sy - b * self.sx) / self.n + b * x, 4)


def row_map(row: Row, index: int, gaps: Sequence[GapFound], fit: PoseFit, median_width: float) -> dict[str, Any]:
    """Row ``index`` (top to bottom) of the shelf map: its reported facings and its ``gaps`` ordered along the
    shelf, in world pixels, in metres too when ``fit`` can tell them, with its counts."""
    items: list[dict[str, Any]] = []
    for p in row.placed:
        f = p.event
        if f is None:
            continue
        item: dict[str, Any] = {
            "type": "facing",
            "track_id": f.track_id,
            "label": f.label,
            "score": f.score,
            "x0": f.world_box[0],
            "x1": f.world_box[2],
            "frame_index": f.frame_index,
            "t": f.t,
        }
        if f.pose is not None and isinstance(f.pose.get("x_m"), int | float):
            item["count_x_m"] = float(f.pose["x_m"])
        items.append(item)
    for g in gaps:
        if g.row == row.id:
            items.append(
                {
                    "type": "gap",
                    "x0": g.x0,
                    "x1": g.x1,
                    "width_facings": g.width_facings,
                    "left_track": g.left_track,
                    "right_track": g.right_track,
                    "frame_index": g.frame_index,
                    "t": g.t,
                }
            )
    items.sort(key=lambda item: (item["x0"] + item["x1"]) / 2)
    for item in items:
        x0_m, x1_m = fit.metres(item["x0"]), fit.metres(item["x1"])
        if x0_m is not None and x1_m is not None:
            item["x0_m"], item["x1_m"] = x0_m, x1_m
    reported = [p.event.label for p in row.placed if p.event]
    return {
        "row": row.id,
        "index": index,
        "y": round(row.centre(), 1),
        "median_width": round(median_width, 1),
        "facings": len(reported),
        "gaps": sum(g.row == row.id for g in gaps),
        "counts": dict(sorted(Counter(reported).items())),
        "items": items,
    }
