"""The ``detect_classify`` frame pipeline: detect every facing, classify each crop, track, count once.

Per frame: the facing detector finds boxes; each box, grown and clipped by the crop rule the
detect bundle records (``detection.crop_margin``, ``detection.crop_resize``), goes through the
classifier's own preprocessing and model; the camera's motion (``edge.motion``) puts the boxes
in shelf coordinates, where ``edge.shelf_counter`` tracks them and counts each facing once as it
crosses the counting line, finds the gaps and keeps the shelf map.

Crops are classified one at a time on the classifier's batch-1 interpreter: resizing the input
tensor to a batch re-allocates the interpreter whenever the number of facings changes.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from typing import Any

import numpy as np

from edge.config import CountingConfig, InferenceConfig
from edge.detector import Detector
from edge.errors import ShelfscanError
from edge.evidence import CropKeeper
from edge.motion import MotionTracker
from edge.pipelines import PipelineMode, Report, ReportKind, StageClock
from edge.runtime import Classifier
from edge.shelf_counter import FacingCounter
from edge.shelf_events import FacingCounted, GapFound

log = logging.getLogger(__name__)


def crop_boxes(xyxy: np.ndarray, margin: float, width: int, height: int) -> np.ndarray:
    """Integer crop windows ``(N, 4)``: boxes grown by ``margin`` of their size on every side, clipped."""
    if len(xyxy) == 0:
        return np.zeros((0, 4), np.int64)
    grow = (xyxy[:, 2:] - xyxy[:, :2]) * margin
    grown = np.concatenate([xyxy[:, :2] - grow, xyxy[:, 2:] + grow], axis=1)
    out: np.ndarray = np.rint(grown).astype(np.int64)
    np.clip(out[:, 0::2], 0, width, out=out[:, 0::2])
    np.clip(out[:, 1::2], 0, height, out=out[:, 1::2])
    return out


class DetectClassifyPipeline:
    mode = PipelineMode.DETECT_CLASSIFY

    def __init__(
        self, detector: Detector, classifier: Classifier, inference: InferenceConfig, counting: CountingConfig
    ) -> None:
        self.inference, self.counting = inference, counting
        self.clock = StageClock(("detect", "crops", "classify", "track"))
        self.motion = MotionTracker()
        self.counter = FacingCounter(counting, ignore=frozenset(inference.ignore_labels))
        self.facings_per_frame: deque[int] = deque(maxlen=1000)
        self.crop_failures = 0
        self.scanning = False
        self.frame_index = 0
        # the last frame's boxes (frame pixels, xyxy) and their labels: the live page draws them
        self.last_boxes: tuple[np.ndarray, list[tuple[str | None, float]]] = (np.zeros((0, 4), np.float32), [])
        # Evidence (edge.evidence, set by the agent when enabled): each open track's best crop, so a facing
        # reported later as unknown or weak still has the picture it was counted from.
        self.crops: CropKeeper | None = None
        self.swap(detector=detector, classifier=classifier)

    def swap(self, detector: Detector | None = None, classifier: Classifier | None = None) -> None:
        """New models (a reload); tracks and counts of the scan go on."""
        if detector is not None:
            self.detector = detector
        if classifier is not None:
            self.classifier = classifier
        settings = self.detector.settings
        self.margin = settings.crop_margin
        self.crop_pre = self.classifier.crop_preprocessor(settings.crop_resize)
        self._ignore = frozenset(self.inference.ignore_labels)

    def process(self, frame: np.ndarray, ts: float, pose: dict[str, Any] | None = None) -> list[Report]:
        t0 = time.perf_counter()
        dets = self.detector.detect_bgr(frame)
        t1 = time.perf_counter()
        h, w = frame.shape[:2]
        windows = crop_boxes(dets.xyxy, self.margin, w, h)
        crops = [frame[y0:y1, x0:x1] for x0, y0, x1, y1 in windows.tolist()]
        t2 = time.perf_counter()
        labels: list[tuple[str | None, float]] = []
        for crop in crops:
            labels.append(self._classify(crop))
        t3 = time.perf_counter()
        self.last_boxes = (dets.xyxy, labels)
        reports: list[Report] = []
        offset = self.motion.update(frame, dets.xyxy).offset
        if self.scanning:
            events = self.counter.update(self.frame_index, ts, dets, labels, offset, pose, frame_width=w)
            reports = [_report(e) for e in events]
            if self.crops is not None:
                self._keep_crops(frame, crops, labels, events)
        t4 = time.perf_counter()
        self.frame_index += 1
        self.facings_per_frame.append(len(dets))
        for stage, value in (
            ("detect", t1 - t0),
            ("crops", t2 - t1),
            ("classify", t3 - t2),
            ("track", t4 - t3),
            ("frame", t4 - t0),
        ):
            self.clock.add(stage, value)
        return reports

    def confidence(self) -> float | None:
        """The mean top-1 score of the last frame's crops (None: no facing in it), for a rollout's canary."""
        scores = [score for label, score in self.last_boxes[1] if label is not None]
        return sum(scores) / len(scores) if scores else None

    def _classify(self, crop: np.ndarray) -> tuple[str | None, float]:
        """One crop's top-1; a crop that cannot be classified casts no vote and is counted in stats."""
        try:
            if crop.shape[0] < 2 or crop.shape[1] < 2:
                raise ShelfscanError(f"crop of {crop.shape[1]}x{crop.shape[0]} pixels")
            self.crop_pre.from_bgr(crop)
            if self.inference.flip_crops:  # the crop and its mirror image, scores averaged (inference.flip_crops)
                scores = self.classifier.scores_prepared(self.crop_pre.buffer)
                self.crop_pre.from_bgr(np.ascontiguousarray(crop[:, ::-1]))
                scores += self.classifier.scores_prepared(self.crop_pre.buffer)
                best = self.classifier.predictions(scores / 2, 1)[0]
            else:
                best = self.classifier.classify_prepared(self.crop_pre.buffer, 1)[0]
        except (ShelfscanError, ValueError) as exc:
            self.crop_failures += 1
            log.debug("crop not classified: %s", exc)
            return None, 0.0
        return best.label, best.score  # an ignored label votes too: a track it wins is no facing (the counter)

    def _keep_crops(
        self,
        frame: np.ndarray,
        crops: list[np.ndarray],
        labels: list[tuple[str | None, float]],
        events: list[FacingCounted | GapFound],
    ) -> None:
        """Offer this frame's crops per track; keep only tracks still open or reported just now (the agent takes
        those right after this frame)."""
        assert self.crops is not None
        ids = self.counter.last_ids
        self.crops.offer(
            self.frame_index, frame, ((tid, crops[i], labels[i][1]) for i, tid in enumerate(ids) if tid >= 0)
        )
        reported = {e.track_id for e in events if isinstance(e, FacingCounted)}
        self.crops.retain(self.counter.open_track_ids | reported)

    def start_scan(self) -> None:
        if self.crops is not None:
            self.crops.clear()
        self.counter.reset()
        self.motion.reset()
        self.scanning = True

    def end_scan(self) -> list[Report]:
        self.scanning = False
        return [_report(e) for e in self.counter.finish()]

    def counts(self) -> dict[str, Any]:
        c = self.counter
        rows = [{"row": r, "counts": dict(sorted(counts.items()))} for r, counts in sorted(c.row_counts.items())]
        return {
            "counts": dict(sorted(c.counts.items())),
            "facings": c.total,
            "gaps": len(c.gaps),
            "unknown": c.unknown,
            "rows": rows,
        }

    def shelfmap(self) -> dict[str, Any]:
        return self.counter.shelfmap()

    def labels(self) -> list[str]:
        return [lb for lb in self.classifier.labels if lb not in self._ignore]

    def models(self) -> dict[str, dict[str, str]]:
        return {"classifier": self.classifier.bundle.model_id, "detector": self.detector.bundle.model_id}

    def resize_kernels(self) -> dict[str, str]:
        return {
            "classifier": self.classifier.preprocessor.resize_kernel,
            "detector": self.detector.preprocessor.resize_kernel,
        }

    def stats(self) -> dict[str, Any]:
        """Extra figures for the agent's stats message."""
        per_frame = float(np.mean(self.facings_per_frame)) if self.facings_per_frame else 0.0
        return {
            "facings_per_frame": round(per_frame, 2),
            "crop_failures": self.crop_failures,
            "tracks": self.counter.live_tracks,
            "rejected": self.counter.rejected,
        }


def _report(event: FacingCounted | GapFound) -> Report:
    kind = ReportKind.FACING if isinstance(event, FacingCounted) else ReportKind.GAP
    return Report(kind, event.to_dict())
