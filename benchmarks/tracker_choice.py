"""Tracker choice for facing counting (docs/tracking.md): the in-house world-coordinate association
against maintained libraries, on the synthetic shelf streams of tests/shelf_streams.py.

Per tracker and stream: time per association update, identity errors against the truth (a track
covering two facings; a facing split over several tracks) and what the facing counter makes of
the ids (count error, facings counted twice or missed, gaps). Libraries get the boxes in frame
pixels (how they are used out of the box) and in world pixels (our camera offset added, the
equivalent of their camera-motion options). They are never project dependencies; run each in
a throwaway venv next to numpy, OpenCV and pydantic:

    python -m venv /tmp/tk/norfair && /tmp/tk/norfair/bin/pip install norfair pydantic pillow
    PYTHONPATH=. /tmp/tk/norfair/bin/python -m benchmarks.tracker_choice --trackers world,norfair
    PYTHONPATH=. /tmp/tk/trackers/bin/python -m benchmarks.tracker_choice --trackers bytetrack,sort

Prints one JSON document.
"""

from __future__ import annotations

import argparse
import json
import time
from collections import Counter, defaultdict
from typing import Any

import numpy as np

from edge.config import CountingConfig
from edge.shelf_counter import FacingCounter
from edge.tracking import WorldTracker
from tests.shelf_streams import Frame, TruthShelf, build_shelf, pan, still, stream

MAX_MISSED = CountingConfig().max_missed
SPARSE = ["AAA_CCCHHH_EEEDDDD_CC"]  # one row: ~7 boxes per frame
DENSE = ["BBBBIIIFFF_FFBBBIII", "DDDDFFF_FFIIIIBBBFF", "BBBFFFFIII_IIDDDBBB"]  # three rows: ~20 boxes per frame


def scenarios() -> dict[str, tuple[TruthShelf, list[Frame]]]:
    """Named streams: constant pan, stop-and-go, reversing robot, missed detections, dense shelf."""
    shelf = build_shelf(["AAAB_CCDD_DEEEFF", "FFFFGG_HHH_IIJJJ"])
    sparse, dense = build_shelf(SPARSE), build_shelf(DENSE, pitch=150)
    rng = np.random.default_rng(7)
    dropped = {(int(i), int(k)) for i, k in zip(rng.integers(0, 28, 60), rng.integers(0, 60, 60), strict=True)}
    hard = {"jitter": 2.0, "bob": 4.0, "zoom": 0.03}
    return {
        "pan": (shelf, list(stream(shelf, pan(-100, 900, 24), seed=1, **hard))),
        "stop_and_go": (
            shelf,
            list(stream(shelf, pan(-100, 400, 24) + still(400, 30) + pan(400, 900, 24), seed=2, jitter=2.5, bob=4.0)),
        ),
        "reverse": (
            shelf,
            list(stream(shelf, pan(-100, 700, 24) + pan(700, 300, 20) + pan(300, 1000, 24), seed=3, **hard)),
        ),
        "missed": (shelf, list(stream(shelf, pan(-100, 900, 24), seed=4, miss=lambda i, k: (i, k) in dropped, **hard))),
        "fast_pan": (shelf, list(stream(shelf, pan(-100, 900, 40), seed=5, **hard))),
        "sparse": (sparse, list(stream(sparse, pan(-100, 1400, 24), seed=6, **hard))),
        "dense": (dense, list(stream(dense, pan(-100, 1100, 24), seed=8, **hard))),
    }


class FrameMode:
    """Wraps a library adapter that wants frame pixels: the counter hands world boxes, this takes the offset off."""

    def __init__(self, inner: Any) -> None:
        self.inner, self.offset = inner, (0.0, 0.0)

    def update(self, world_xyxy: np.ndarray, scores: np.ndarray) -> np.ndarray:
        ox, oy = self.offset
        return self.inner.update(world_xyxy - np.array([ox, oy, ox, oy], np.float32), scores)

    def reset(self) -> None:
        self.inner.reset()


class Norfair:
    def __init__(self, world_transform: bool) -> None:
        self.world_transform = world_transform
        self.offset = (0.0, 0.0)
        self.reset()

    def reset(self) -> None:
        from norfair import Tracker

        self.tracker = Tracker(
            distance_function="iou", distance_threshold=1 - 0.3, hit_counter_max=MAX_MISSED + 1, initialization_delay=0
        )

    def update(self, xyxy: np.ndarray, scores: np.ndarray) -> np.ndarray:
        from norfair import Detection
        from norfair.camera_motion import TranslationTransformation

        dets = [
            Detection(points=b.reshape(2, 2).astype(np.float64), scores=np.array([s, s]))
            for b, s in zip(xyxy, scores, strict=True)
        ]
        if self.world_transform:  # norfair's own camera motion: abs = rel - movement_vector
            ox, oy = self.offset
            transform = TranslationTransformation(np.array([-ox, -oy]))
            objects = self.tracker.update(dets, coord_transformations=transform)
        else:
            objects = self.tracker.update(dets)
        ids = np.full(len(dets), -1, np.int64)
        index = {id(d): i for i, d in enumerate(dets)}
        for obj in objects:
            i = index.get(id(obj.last_detection))
            if i is not None:
                ids[i] = obj.id
        return ids


class Roboflow:
    """``trackers`` (Roboflow; the ByteTrack that left ``supervision``) ByteTrack or SORT."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.reset()

    def reset(self) -> None:
        from trackers import ByteTrackTracker, SORTTracker

        common = {"lost_track_buffer": MAX_MISSED, "frame_rate": 30.0, "minimum_consecutive_frames": 1}
        if self.kind == "bytetrack":
            self.tracker = ByteTrackTracker(
                track_activation_threshold=0.3, minimum_iou_threshold=0.3, high_conf_det_threshold=0.5, **common
            )
        else:
            self.tracker = SORTTracker(track_activation_threshold=0.3, minimum_iou_threshold=0.3, **common)

    def update(self, xyxy: np.ndarray, scores: np.ndarray) -> np.ndarray:
        import supervision as sv

        out = self.tracker.update(sv.Detections(xyxy=xyxy.astype(np.float32), confidence=scores.astype(np.float32)))
        ids = np.full(len(xyxy), -1, np.int64)
        for box, tid in zip(out.xyxy, out.tracker_id, strict=True):
            hit = np.flatnonzero(np.all(np.abs(xyxy - box) < 1e-3, axis=1))
            if len(hit) and tid >= 0:
                ids[hit[0]] = tid
        return ids


def make(name: str) -> Any:
    world = name.endswith("@world")
    base = name.removesuffix("@world")
    if base == "world":
        return WorldTracker(CountingConfig().match_iou, MAX_MISSED)
    if base == "norfair":
        return Norfair(world_transform=world) if world else FrameMode(Norfair(world_transform=False))
    inner = Roboflow(base)
    return inner if world else FrameMode(inner)


def identity_errors(frames: list[Frame], ids_per_frame: list[np.ndarray]) -> dict[str, int]:
    facings_of: dict[int, set[int]] = defaultdict(set)
    tracks_of: dict[int, set[int]] = defaultdict(set)
    for frame, ids in zip(frames, ids_per_frame, strict=True):
        for truth, tid in zip(frame.truth_ids, ids.tolist(), strict=True):
            if tid >= 0:
                facings_of[tid].add(truth)
                tracks_of[truth].add(tid)
    return {
        "merged": sum(len(v) - 1 for v in facings_of.values()),
        "split": sum(len(v) - 1 for v in tracks_of.values()),
    }


def run(name: str, shelf: TruthShelf, frames: list[Frame]) -> dict[str, Any]:
    tracker = make(name)
    ids_log: list[np.ndarray] = []
    spent: list[float] = []

    class Timed:
        def update(self, world_xyxy: np.ndarray, scores: np.ndarray) -> np.ndarray:
            t0 = time.perf_counter()
            ids = tracker.update(world_xyxy, scores)
            spent.append(time.perf_counter() - t0)
            ids_log.append(np.asarray(ids))
            return ids

        def reset(self) -> None:
            tracker.reset()

    counter = FacingCounter(associator=Timed())
    total: list[float] = []
    for frame in frames:
        if hasattr(tracker, "offset"):
            tracker.offset = frame.offset
        t0 = time.perf_counter()
        counter.update(frame.index, frame.t, frame.detections, frame.labels, frame.offset)
        total.append(time.perf_counter() - t0)
    counter.finish("end")
    truth_of: dict[int, Counter[int]] = defaultdict(Counter)
    for frame, ids in zip(frames, ids_log, strict=True):
        for truth, tid in zip(frame.truth_ids, ids.tolist(), strict=True):
            truth_of[tid][truth] += 1
    counted = Counter(truth_of[f.track_id].most_common(1)[0][0] for f in counter.facings if truth_of[f.track_id])
    truth = shelf.counts()
    labels = set(truth) | set(counter.counts)
    hits = [
        [t for t in shelf.gaps if t.row == g.row and abs((g.x0 + g.x1 - t.x0 - t.x1) / 2) < (t.x1 - t.x0) / 2]
        for g in counter.gaps
    ]
    boxes = [len(f.detections) for f in frames]
    return {
        "boxes_per_frame": round(float(np.mean(boxes)), 1),
        "track_us_p50": round(float(np.median(spent)) * 1e6, 1),
        "counter_us_p50": round(float(np.median(total)) * 1e6, 1),
        **identity_errors(frames, ids_log),
        "count_error": sum(abs(counter.counts.get(k, 0) - truth.get(k, 0)) for k in labels),
        "counted_twice": sum(n - 1 for n in counted.values() if n > 1),
        "missed": sum(1 for f in shelf.facings if f.id not in counted),
        "gaps_found": f"{len({id(t) for h in hits for t in h})}/{len(shelf.gaps)}",
        "false_gaps": sum(not h for h in hits),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trackers", default="world", help="comma list: world, norfair, bytetrack, sort (@world)")
    args = parser.parse_args()
    names = [n for name in args.trackers.split(",") for n in ((name,) if name == "world" else (name, f"{name}@world"))]
    streams = scenarios()
    results: dict[str, dict[str, Any]] = {}
    for name in names:
        results[name] = {s: run(name, shelf, frames) for s, (shelf, frames) in streams.items()}
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
