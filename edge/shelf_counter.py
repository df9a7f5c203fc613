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

This module keeps the counting itself: when a track counts, when a label and a gap are
reported. What it keeps per track and per counted facing, and the label vote, are in
:mod:`edge.facing_tracks`; rows and the gap rule in :mod:`edge.shelf_rows`; the shelf map's
rows and the metres fit in :mod:`edge.shelf_map`.

How it was chosen and measured: docs/tracking.md.
"""

from __future__ import annotations

import bisect
from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np

from edge.config import CountingConfig
from edge.detections import Detections, box_iou
from edge.facing_tracks import Placed, Track, vote
from edge.shelf_events import UNKNOWN, Event, FacingCounted, GapFound, to_box

# Box and cluster_rows live in edge.shelf_events; still importable from here, as before the split (issue #20)
from edge.shelf_events import Box as Box
from edge.shelf_events import cluster_rows as cluster_rows
from edge.shelf_map import PoseFit, row_map
from edge.shelf_rows import Row, find_gap, median_width, row_for, seed_rows
from edge.tracking import Associator, WorldTracker


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
        self._tracks: dict[int, Track] = {}
        self._ghosts: list[Track] = []  # ended, confirmed, never counted: may still be passed or counted at the end
        self._rows: list[Row] = []
        self._unsettled: list[Placed] = []
        self._facings: list[FacingCounted] = []
        self._gaps: list[GapFound] = []
        self._candidates: list[tuple[Row, Placed, Placed]] = []
        self._direction = 0  # +1: the counting line moves right in the world (offset grows), -1 left, 0 unknown
        self._anchor_x: float | None = None
        self._line_x = 0.0
        self._pose_fit = PoseFit()
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
            self._rows.extend(seed_rows(world, self.config.row_gap))
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
        rows = [
            row_map(row, index, self._gaps, fit, median_width(row, self._tracks.values()))
            for index, row in enumerate(self._ordered_rows())
        ]
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

    def _ordered_rows(self) -> list[Row]:
        return sorted(self._rows, key=lambda r: (r.centre(), r.id))

    def _observe(
        self, tid: int, world_box: np.ndarray, box: np.ndarray, label: tuple[str | None, float], frame_index: int
    ) -> None:
        track = self._tracks.get(tid)
        box = np.asarray(box, np.float64)
        if track is None:
            track = Track(tid, row_for(self._rows, world_box, self.config.row_gap).id, world_box, box, frame_index)
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

    def _along_motion(self, tracks: list[Track]) -> list[Track]:
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

    def _place(self, track: Track, how: str) -> None:
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
        placed = Placed([track], row.id, world_box, box, frame_index, t, pose, how, box_frame)
        k = bisect.bisect(row.centres, placed.cx)
        row.centres.insert(k, placed.cx)
        row.placed.insert(k, placed)
        self._unsettled.append(placed)
        for a, b in ((k - 1, k), (k, k + 1)):
            if a >= 0 and b < len(row.placed):
                self._candidates.append((row, row.placed[a], row.placed[b]))

    def _report(self, final: bool) -> list[Event]:
        """Facings whose label settled, then the gaps that became certain."""
        events: list[Event] = []
        for placed in list(self._unsettled):
            label, score, votes, n = vote(placed, self.config)
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
            gap = find_gap(row, left.event, right.event, self._tracks.values(), self.config.gap_share, self._last)
            if gap is not None:
                self._gaps.append(gap)
                events.append(gap)
        self._candidates = waiting
        return events

    def _reject(self, placed: Placed) -> None:
        """Take a settled non-product off the shelf map; its two neighbours become gap candidates again."""
        self._unsettled.remove(placed)
        self.rejected += 1
        row = next(r for r in self._rows if r.id == placed.row)
        k = row.placed.index(placed)
        del row.placed[k]
        del row.centres[k]
        if 0 < k < len(row.placed):
            self._candidates.append((row, row.placed[k - 1], row.placed[k]))

    def _occupied(self, row: Row, left: Placed, right: Placed) -> bool:
        """An uncounted track (live, or ended unpassed) stands between the two: it may still count."""
        x0, x1 = left.world_box[2], right.world_box[0]
        tracks = [*self._tracks.values(), *self._ghosts]
        return any(t.row == row.id and not t.counted and x0 < t.cx < x1 for t in tracks)
