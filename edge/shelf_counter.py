"""Facings counted once each, per shelf row, with out-of-stock gaps and a shelf map (pure logic, no I/O).

Per frame the agent hands over the facing detector's boxes, one classification per box and the
camera's world offset (:class:`edge.motion.MotionTracker`: ``world = frame + offset``). In world
coordinates a shelf stands still, so:

- boxes are associated into tracks by world IoU (:class:`edge.tracking.WorldTracker`), which keeps
  identical touching neighbours apart and survives a missed detection or two;
- a track counts once, when the counting line (a vertical line at ``line`` of the frame width)
  passes its world centre. Besides each track's own flag, every counted facing stays on the
  shelf map in world coordinates, and a new track overlapping a counted facing of its row is
  that facing again: a robot that stops for seconds (tracks broken by jitter) or backs up and
  drives on (old facings seen by new tracks) never counts one twice;
- facings the line never passes are counted too (``count_edges``): those already behind it
  when the scan starts (or when the robot reverses) as soon as the motion says they are
  behind, those still ahead of it when the scan ends at :meth:`FacingCounter.finish`;
- a facing's label is the score-weighted vote of its crops' classifications, settled once it
  has ``settle_votes`` of them or its track ends (only then is it reported: more votes, fewer
  mistakes); a weak or split vote is reported as ``unknown`` rather than guessed;
- rows are clusters of world y centres, so counts, gaps and positions are per row;
- an empty span between two counted neighbours of a row wider than ``gap_share`` of the row's
  median facing width is one out-of-stock gap: the rule of ``trainer/shelf_composer.row_gaps``,
  which writes the truth. It is reported once, when both neighbours are reported and no
  uncounted track stands between them.

How it was chosen and measured: docs/tracking.md.
"""

from __future__ import annotations

import bisect
from collections import Counter, deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edge.config import CountingConfig
from edge.detections import Detections, box_iou
from edge.shelf_events import UNKNOWN, Box, Event, FacingCounted, GapFound, cluster_rows, to_box
from edge.tracking import Associator, WorldTracker


@dataclass(eq=False)
class _Track:
    id: int
    row: int
    world_box: np.ndarray  # last world box
    box: np.ndarray  # last frame box
    last_frame: int
    hits: int = 0
    votes: Counter[str] = field(default_factory=Counter)  # label -> summed score
    vote_counts: Counter[str] = field(default_factory=Counter)
    side: int = 0  # which side of the counting line its centre is on: -1 left, +1 right
    crossed: bool = False
    counted: bool = False  # counted, or found to be a counted facing
    ended: bool = False
    widths: deque[float] = field(default_factory=lambda: deque(maxlen=8))
    best_world: np.ndarray | None = None  # the world box seen nearest the counting line, preferably not cut
    best_box: np.ndarray | None = None
    best_frame: int = -1  # the frame best_box is from
    best_d: float = float("inf")

    @property
    def cx(self) -> float:
        box = self.world_box if self.best_world is None else self.best_world
        return float(box[0] + box[2]) / 2


@dataclass(eq=False)
class _Placed:
    """A counted facing on the shelf map, reported once its label settles."""

    tracks: list[_Track]  # the track that counted it, then any later track found to be it
    row: int
    world_box: Box
    box: Box
    frame_index: int
    t: float
    pose: dict[str, Any] | None
    how: str
    box_frame: int
    event: FacingCounted | None = None

    @property
    def cx(self) -> float:
        return (self.world_box[0] + self.world_box[2]) / 2


@dataclass(eq=False)
class _Row:
    id: int
    ys: deque[float] = field(default_factory=lambda: deque(maxlen=64))
    heights: deque[float] = field(default_factory=lambda: deque(maxlen=64))
    placed: list[_Placed] = field(default_factory=list)  # ordered by world x centre
    centres: list[float] = field(default_factory=list)  # their world x centres, for bisect

    def centre(self) -> float:
        return float(np.median(self.ys)) if self.ys else 0.0

    def height(self) -> float:
        return float(np.median(self.heights)) if self.heights else 0.0


class _PoseFit:
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


class FacingCounter:
    """Counts facings from per-frame boxes, labels and camera offsets; see the module docstring.

    ``frame_width`` places the counting line (``update`` may pass it once the first frame is
    known). ``associator`` replaces the built-in :class:`~edge.tracking.WorldTracker` (any object
    giving one track id per world box, ``-1`` for untracked boxes, ids never reused). Per frame with
    6 / 22 boxes an :meth:`update` costs about 0.1 / 0.3 ms on one x86 core, the tracker included (docs/tracking.md).
    """

    def __init__(
        self,
        config: CountingConfig | None = None,
        frame_width: int = 640,
        associator: Associator | None = None,
        ignore: frozenset[str] = frozenset(),
    ) -> None:
        self.config = config or CountingConfig()
        self.frame_width = frame_width
        # Labels that are not products (a classifier's "background"): a box whose crops vote for one is
        # a detector's mistake, e.g. on an empty slot, and is dropped, so the gap it covered shows.
        self.ignore = ignore
        self._tracker = associator or WorldTracker(self.config.match_iou, self.config.max_missed)
        self.reset()

    def reset(self) -> None:
        """Forget everything (a new scan); the next offsets start a new world."""
        self._tracker.reset()
        self._tracks: dict[int, _Track] = {}
        self._ghosts: list[_Track] = []  # ended, confirmed, never counted: may still be passed or counted at the end
        self._rows: list[_Row] = []
        self._unsettled: list[_Placed] = []
        self._facings: list[FacingCounted] = []
        self._gaps: list[GapFound] = []
        self._candidates: list[tuple[_Row, _Placed, _Placed]] = []
        self._direction = 0  # +1: the counting line moves right in the world (offset grows), -1 left, 0 unknown
        self._anchor_x: float | None = None
        self._line_x = 0.0
        self._pose_fit = _PoseFit()
        self._last: tuple[int, float, dict[str, Any] | None] = (0, 0.0, None)
        self.frames = 0
        self.duplicates = 0  # tracks that turned out to be an already counted facing
        self.rejected = 0  # boxes whose crops voted for an ignored label: not facings
        self.ended: str | None = None
        self.last_ids: list[int] = []  # the track id of each box of the last update (-1: untracked)

    # -- results ---------------------------------------------------------------------------------

    @property
    def counts(self) -> dict[str, int]:
        """Reported facings per label (``unknown`` included), labels sorted."""
        return dict(sorted(Counter(f.label for f in self._facings).items()))

    @property
    def row_counts(self) -> dict[int, dict[str, int]]:
        """Reported facings per row id (rows top to bottom) and label."""
        return {
            r.id: dict(sorted(Counter(p.event.label for p in r.placed if p.event).items()))
            for r in self._ordered_rows()
        }

    @property
    def total(self) -> int:
        return len(self._facings)

    @property
    def unknown(self) -> int:
        return sum(f.label == UNKNOWN for f in self._facings)

    @property
    def pending(self) -> int:
        """Facings counted whose label has not settled yet (reported later, at the latest by :meth:`finish`)."""
        return len(self._unsettled)

    @property
    def facings(self) -> tuple[FacingCounted, ...]:
        return tuple(self._facings)

    @property
    def gaps(self) -> tuple[GapFound, ...]:
        return tuple(self._gaps)

    @property
    def direction(self) -> int:
        """Which way the counting line travels along the shelf: +1 right, -1 left, 0 not moved yet."""
        return self._direction

    @property
    def live_tracks(self) -> int:
        return len(self._tracks)

    @property
    def open_track_ids(self) -> set[int]:
        """Tracks that may still be reported as a facing (live, ended uncounted, counted unsettled): whoever keeps
        something per track (the pipeline's evidence crops) may forget the others."""
        return {*self._tracks, *(t.id for t in self._ghosts), *(p.tracks[0].id for p in self._unsettled)}

    # -- per frame --------------------------------------------------------------------------------

    def update(
        self,
        frame_index: int,
        t: float,
        detections: Detections,
        labels: Sequence[tuple[str | None, float]],
        offset: tuple[float, float],
        pose: dict[str, Any] | None = None,
        frame_width: int | None = None,
    ) -> list[Event]:
        """Feed one frame; returns the facings and gaps reported by it.

        ``labels`` holds one ``(label, score)`` per detection; a ``None`` label or a score of 0
        (a crop that failed to classify) casts no vote. ``offset`` is the camera's world offset
        for this frame, ``pose`` the robot's odometry (``x_m`` in metres lets the shelf map give
        metres), carried into the events as it is.
        """
        if len(labels) != len(detections):
            raise ValueError(f"{len(detections)} detections but {len(labels)} labels")
        if frame_width is not None:
            self.frame_width = frame_width
        cfg = self.config
        self.frames += 1
        pose = dict(pose) if pose is not None else None
        self._last = (frame_index, t, pose)
        ox, oy = float(offset[0]), float(offset[1])
        world = detections.xyxy.astype(np.float64) + np.array([ox, oy, ox, oy])
        ids = np.asarray(self._tracker.update(world.astype(np.float32), detections.scores), np.int64)
        self.last_ids = ids.tolist()
        if not self._rows and len(world):
            self._seed_rows(world)
        for i, tid in enumerate(ids.tolist()):
            if tid >= 0:
                self._observe(tid, world[i], detections.xyxy[i], labels[i], frame_index)
        self._update_direction(ox)
        self._line_x = cfg.line * self.frame_width + ox
        if pose is not None and isinstance(pose.get("x_m"), int | float):
            self._pose_fit.add(self._line_x, float(pose["x_m"]))
        due = []
        for track in [*self._tracks.values(), *self._ghosts]:
            if track.counted:
                continue
            side = 1 if track.cx >= self._line_x else -1
            track.crossed |= track.side != 0 and side != track.side
            track.side = side
            behind = cfg.count_edges and self._direction != 0 and side == -self._direction
            if track.hits >= cfg.min_hits and (track.crossed or behind):
                due.append(track)
        for track in self._along_motion(due):
            self._place(track, "line" if track.crossed else "edge")
        self._end_tracks(frame_index)
        return self._report(final=False)

    def finish(self, reason: str = "stop") -> list[Event]:
        """The scan ended (``reason``: stop, interval, end of video...): report everything still open.

        With ``count_edges``, confirmed tracks never counted (still ahead of the line) count now,
        each checked against the shelf map; every counted facing is reported with the votes it
        has, and the gaps between them. The results stay for :meth:`shelfmap` until :meth:`reset`.
        """
        if self.config.count_edges:
            tracks = [*self._tracks.values(), *self._ghosts]
            for track in self._along_motion([t for t in tracks if not t.counted and t.hits >= self.config.min_hits]):
                self._place(track, "end")
        for track in self._tracks.values():
            track.ended = True
        self._tracks.clear()
        self._ghosts.clear()
        self._tracker.reset()
        self.ended = reason
        return self._report(final=True)

    # -- the shelf map ----------------------------------------------------------------------------

    def shelfmap(self) -> dict[str, Any]:
        """Per row, top to bottom, the reported facings and gaps ordered along the shelf, with positions.

        Positions are world pixels (``x0``, ``x1``). When the poses carried ``x_m`` over some
        travel, a straight-line fit of odometry against the counting line's world position gives
        metres too (``x0_m``, ``x1_m``); a facing counted with a pose also carries that pose's
        ``x_m`` as ``count_x_m`` (where the robot was as the facing crossed the line). This is what
        a planogram-compliance tool compares with its plan.
        """
        fit = self._pose_fit
        rows = []
        for index, row in enumerate(self._ordered_rows()):
            items: list[dict[str, Any]] = []
            for p in row.placed:
                f = p.event
                if f is None:
                    continue
                item = {
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
            for g in self._gaps:
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
            rows.append(
                {
                    "row": row.id,
                    "index": index,
                    "y": round(row.centre(), 1),
                    "median_width": round(self._median_width(row), 1),
                    "facings": len(reported),
                    "gaps": sum(g.row == row.id for g in self._gaps),
                    "counts": dict(sorted(Counter(reported).items())),
                    "items": items,
                }
            )
        return {
            "units": "px",
            "metres": fit.metres(0.0) is not None,
            "direction": self._direction,
            "facings": self.total,
            "gaps": len(self._gaps),
            "unknown": self.unknown,
            "counts": self.counts,
            "duplicates": self.duplicates,
            "ended": self.ended,
            "rows": rows,
        }

    # -- internals --------------------------------------------------------------------------------

    def _ordered_rows(self) -> list[_Row]:
        return sorted(self._rows, key=lambda r: (r.centre(), r.id))

    def _seed_rows(self, world: np.ndarray) -> None:
        """The first boxes define the rows in view, numbered top to bottom; later rows get the next ids."""
        yc = (world[:, 1] + world[:, 3]) / 2
        heights = world[:, 3] - world[:, 1]
        rows = cluster_rows(yc.tolist(), heights.tolist(), self.config.row_gap)
        for r in range(max(rows) + 1):
            members = [i for i, k in enumerate(rows) if k == r]
            self._rows.append(_Row(r, deque(yc[members].tolist(), 64), deque(heights[members].tolist(), 64)))

    def _row_for(self, world_box: np.ndarray) -> _Row:
        y = float(world_box[1] + world_box[3]) / 2
        h = float(world_box[3] - world_box[1])
        best, best_d = None, float("inf")
        for row in self._rows:
            d = abs(y - row.centre())
            if d <= self.config.row_gap * max(row.height(), h) and d < best_d:
                best, best_d = row, d
        if best is None:
            best = _Row(len(self._rows))
            self._rows.append(best)
        return best

    def _observe(
        self, tid: int, world_box: np.ndarray, box: np.ndarray, label: tuple[str | None, float], frame_index: int
    ) -> None:
        track = self._tracks.get(tid)
        box = np.asarray(box, np.float64)
        if track is None:
            track = _Track(tid, self._row_for(world_box).id, world_box, box, frame_index)
            self._tracks[tid] = track
        track.world_box, track.box, track.last_frame = world_box, box, frame_index
        d = abs(float(box[0] + box[2]) / 2 - self.config.line * self.frame_width)
        if box[0] <= 1.0 or box[2] >= self.frame_width - 1.0:
            d += self.frame_width  # cut by the frame's border: any whole view is better
        if d <= track.best_d:
            track.best_world, track.best_box, track.best_d, track.best_frame = world_box, box, d, frame_index
        track.hits += 1
        track.widths.append(float(world_box[2] - world_box[0]))
        row = self._rows[track.row]
        row.ys.append(float(world_box[1] + world_box[3]) / 2)
        row.heights.append(float(world_box[3] - world_box[1]))
        name, score = label
        if name is not None and score > 0:
            track.votes[name] += float(score)
            track.vote_counts[name] += 1

    def _update_direction(self, ox: float) -> None:
        if self._anchor_x is None:
            self._anchor_x = ox
        travel = ox - self._anchor_x
        if abs(travel) >= max(self.config.direction_px, 1e-9):
            self._direction = 1 if travel > 0 else -1
            self._anchor_x = ox
        elif self._direction and travel * self._direction > 0:
            self._anchor_x = ox  # still moving the same way: follow, so a reversal shows after direction_px

    def _along_motion(self, tracks: list[_Track]) -> list[_Track]:
        """In the order the line passes them (left to right while it moves right), ids breaking ties."""
        sign = self._direction or 1
        return sorted(tracks, key=lambda t: (sign * t.cx, t.id))

    def _end_tracks(self, frame_index: int) -> None:
        """Tracks unseen for more than ``max_missed`` frames end; confirmed uncounted ones become ghosts
        (still counted if the line passes where they were, or at the end of the scan)."""
        for track in [t for t in self._tracks.values() if frame_index - t.last_frame > self.config.max_missed]:
            del self._tracks[track.id]
            track.ended = True
            if not track.counted and track.hits >= self.config.min_hits:
                self._ghosts.append(track)

    def _place(self, track: _Track, how: str) -> None:
        """Count ``track`` onto the shelf map, unless its row already has this facing."""
        track.counted = True
        if track in self._ghosts:
            self._ghosts.remove(track)
        row = self._rows[track.row]
        world_box = to_box(track.world_box if track.best_world is None else track.best_world)
        box = to_box(track.box if track.best_box is None else track.best_box)
        box_frame = track.last_frame if track.best_box is None else track.best_frame
        if row.placed:
            ious = box_iou(np.array([world_box], np.float32), np.array([p.world_box for p in row.placed], np.float32))
            k = int(ious.argmax())
            if ious[0, k] >= self.config.duplicate_iou:
                self.duplicates += 1
                row.placed[k].tracks.append(track)  # its crops still vote, while the label is open
                return
        frame_index, t, pose = self._last
        placed = _Placed([track], row.id, world_box, box, frame_index, t, pose, how, box_frame)
        k = bisect.bisect(row.centres, placed.cx)
        row.centres.insert(k, placed.cx)
        row.placed.insert(k, placed)
        self._unsettled.append(placed)
        for a, b in ((k - 1, k), (k, k + 1)):
            if a >= 0 and b < len(row.placed):
                self._candidates.append((row, row.placed[a], row.placed[b]))

    def _vote(self, placed: _Placed) -> tuple[str, float, dict[str, float], int]:
        votes: Counter[str] = Counter()
        counts: Counter[str] = Counter()
        for track in placed.tracks:
            votes.update(track.votes)
            counts.update(track.vote_counts)
        n, total = sum(counts.values()), sum(votes.values())
        rounded = {k: round(v, 4) for k, v in sorted(votes.items())}
        if n == 0 or total <= 0:
            return UNKNOWN, 0.0, rounded, n
        label, weight = max(votes.items(), key=lambda kv: (kv[1], kv[0]))
        score = round(weight / counts[label], 4)
        if n < self.config.min_votes or weight / total <= self.config.min_agreement:
            return UNKNOWN, score, rounded, n
        return label, score, rounded, n

    def _report(self, final: bool) -> list[Event]:
        """Facings whose label settled, then the gaps that became certain."""
        events: list[Event] = []
        for placed in list(self._unsettled):
            label, score, votes, n = self._vote(placed)
            if label in self.ignore and (final or n >= self.config.settle_votes or placed.tracks[0].ended):
                self._reject(placed)
                continue
            if final or n >= self.config.settle_votes or placed.tracks[0].ended:
                placed.event = FacingCounted(
                    placed.tracks[0].id,
                    label,
                    score,
                    votes,
                    placed.row,
                    placed.box,
                    placed.world_box,
                    placed.frame_index,
                    placed.t,
                    placed.pose,
                    placed.how,
                    placed.box_frame,
                )
                self._unsettled.remove(placed)
                self._facings.append(placed.event)
                events.append(placed.event)
        waiting = []
        for row, left, right in self._candidates:
            if left not in row.placed:
                continue  # rejected since
            idx = row.placed.index(left)
            if idx + 1 >= len(row.placed) or row.placed[idx + 1] is not right:
                continue  # a facing was counted between them since
            if left.event is None or right.event is None or (not final and self._occupied(row, left, right)):
                waiting.append((row, left, right))
                continue
            gap = self._gap(row, left.event, right.event)
            if gap is not None:
                events.append(gap)
        self._candidates = waiting
        return events

    def _reject(self, placed: _Placed) -> None:
        """Take a settled non-product off the shelf map; its two neighbours become gap candidates again."""
        self._unsettled.remove(placed)
        self.rejected += 1
        row = next(r for r in self._rows if r.id == placed.row)
        k = row.placed.index(placed)
        del row.placed[k]
        del row.centres[k]
        if 0 < k < len(row.placed):
            self._candidates.append((row, row.placed[k - 1], row.placed[k]))

    def _occupied(self, row: _Row, left: _Placed, right: _Placed) -> bool:
        """An uncounted track (live, or ended unpassed) stands between the two: it may still count."""
        x0, x1 = left.world_box[2], right.world_box[0]
        tracks = [*self._tracks.values(), *self._ghosts]
        return any(t.row == row.id and not t.counted and x0 < t.cx < x1 for t in tracks)

    def _median_width(self, row: _Row) -> float:
        widths = [p.world_box[2] - p.world_box[0] for p in row.placed]
        if len(widths) < 3:
            widths += [float(np.median(t.widths)) for t in self._tracks.values() if t.row == row.id and t.widths]
        return float(np.median(widths)) if widths else 0.0

    def _gap(self, row: _Row, left: FacingCounted, right: FacingCounted) -> GapFound | None:
        span = right.world_box[0] - left.world_box[2]
        median = self._median_width(row)
        if median <= 0 or span <= self.config.gap_share * median:
            return None
        frame_index, t, pose = self._last
        top = min(left.world_box[1], right.world_box[1])
        bottom = max(left.world_box[3], right.world_box[3])
        gap = GapFound(
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
        self._gaps.append(gap)
        return gap
