"""What the facing counter reports: counted facings, out-of-stock gaps, and the row clustering they carry.

Kept apart from :mod:`edge.shelf_counter` (the tracking and counting logic) because these are the
contract its consumers read: the frame pipeline turns them into ``facing`` and ``gap`` messages,
the evidence ring names unknown facings by them, the tests build them; none of them needs the
counter's state.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, ClassVar

import numpy as np

UNKNOWN = "unknown"
Box = tuple[float, float, float, float]  # x0, y0, x1, y1, x1/y1 exclusive


def to_box(values: Any) -> Box:
    x0, y0, x1, y1 = (round(float(v), 2) for v in values)
    return x0, y0, x1, y1


def plain_value(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


@dataclass(frozen=True)
class FacingCounted:
    """One physical facing, counted once. ``how``: ``line`` (the counting line passed it), ``edge``
    (behind the line without being passed: in view when the scan started or the robot reversed),
    ``end`` (still ahead of the line when the scan ended). Frame, time and pose are those of the
    moment it counted; ``box`` is its best view (nearest the counting line, preferably not cut by the
    frame border), in frame ``box_frame_index``; the label was settled later (``settle_votes``)."""

    track_id: int
    label: str  # the vote's winner, or "unknown"
    score: float  # mean classifier score of the winner's votes (0 without votes)
    votes: dict[str, float]  # label -> summed classifier score
    row: int
    box: Box  # frame pixels
    world_box: Box  # shelf (world) pixels
    frame_index: int
    t: float
    pose: dict[str, Any] | None = None
    how: str = "line"
    box_frame_index: int = -1  # the frame ``box`` is from
    kind: ClassVar[str] = "facing"

    def to_dict(self) -> dict[str, Any]:
        return {"event": self.kind, **{k: plain_value(v) for k, v in asdict(self).items()}}


@dataclass(frozen=True)
class GapFound:
    """An out-of-stock gap in a row: the empty world span ``x0..x1`` between two counted neighbours."""

    row: int
    x0: float
    x1: float
    width_facings: float  # the span in median facing widths of the row
    left_label: str
    right_label: str
    left_track: int
    right_track: int
    world_box: Box  # x0, the neighbours' top, x1, their bottom
    frame_index: int  # when it was found
    t: float
    pose: dict[str, Any] | None = None
    kind: ClassVar[str] = "gap"

    def to_dict(self) -> dict[str, Any]:
        return {"event": self.kind, **{k: plain_value(v) for k, v in asdict(self).items()}}


Event = FacingCounted | GapFound


def cluster_rows(y_centres: Sequence[float], heights: Sequence[float], gap: float = 0.5) -> list[int]:
    """Row index per box, rows numbered top to bottom: sorted y centres split where two neighbours
    are more than ``gap`` median box heights apart (facings of one row stand on one board, so their
    centres differ by a fraction of a height; the next row is a board and a row height away)."""
    ys = np.asarray(y_centres, np.float64)
    if len(ys) == 0:
        return []
    limit = gap * float(np.median(np.asarray(heights, np.float64)))
    order = np.argsort(ys, kind="stable")
    breaks = np.concatenate([[0], np.diff(ys[order]) > limit]).cumsum()
    rows = np.empty(len(ys), np.int64)
    rows[order] = breaks
    out: list[int] = rows.tolist()
    return out
