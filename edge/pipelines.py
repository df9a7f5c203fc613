"""Frame pipelines: what the agent does with one camera frame, one object per mode.

``shelfscan-agent run`` and ``shelfscan-agent bench`` call the same object, so the benchmark
measures exactly the agent's frame path. A pipeline owns its models and its per-scan state,
turns a frame into :class:`Report` s (a sighting, a counted facing, a gap) that the agent
publishes, and times its own stages.

- ``classify``: the whole frame is one product view (a sighting is a confident run of frames);
  right for single-product views, wrong for real shelves with touching identical facings.
- ``detect_classify``: the facing detector finds every facing, the classifier names each crop,
  the camera's motion and a tracker count each physical facing once (``edge.shelf_counter``).
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from edge.compat import StrEnum
from edge.config import InferenceConfig
from edge.runtime import Classifier, Prediction
from edge.sightings import SightingTracker, Smoother


class PipelineMode(StrEnum):
    CLASSIFY = "classify"
    DETECT_CLASSIFY = "detect_classify"


class ReportKind(StrEnum):
    """What a pipeline reports; each is a message type of the same name (docs/schemas)."""

    SIGHTING = "sighting"
    FACING = "facing"
    GAP = "gap"


@dataclass(frozen=True)
class Report:
    kind: ReportKind
    body: dict[str, Any]


class StageClock:
    """Durations of the last ``keep`` frames per stage; the agent's stats and the bench read the same numbers."""

    def __init__(self, stages: tuple[str, ...], keep: int = 500) -> None:
        self.stages = (*stages, "frame")
        self.samples: dict[str, deque[float]] = {s: deque(maxlen=keep) for s in self.stages}

    def add(self, stage: str, seconds: float) -> None:
        self.samples[stage].append(seconds)

    def percentiles_ms(self, *qs: int) -> dict[str, dict[str, float | None]]:
        out: dict[str, dict[str, float | None]] = {}
        for stage, values in self.samples.items():
            arr = np.fromiter(values, float) * 1e3 if values else None
            out[stage] = {f"p{q}": None if arr is None else round(float(np.percentile(arr, q)), 3) for q in qs}
        return out

    def clear(self) -> None:
        for values in self.samples.values():
            values.clear()


class FramePipeline(Protocol):
    """What the agent and the bench need from a pipeline."""

    mode: PipelineMode
    clock: StageClock

    def process(self, frame: np.ndarray, ts: float, pose: dict[str, Any] | None = None) -> list[Report]: ...
    def confidence(self) -> float | None: ...
    def start_scan(self) -> None: ...
    def end_scan(self) -> list[Report]: ...
    def counts(self) -> dict[str, Any]: ...
    def labels(self) -> list[str]: ...
    def models(self) -> dict[str, dict[str, str]]: ...
    def resize_kernels(self) -> dict[str, str]: ...


class ClassifyPipeline:
    """Whole-frame classification: smoothed scores -> sightings -> counts of sightings per label."""

    mode = PipelineMode.CLASSIFY

    def __init__(self, classifier: Classifier, inference: InferenceConfig) -> None:
        self.classifier = classifier
        self.inference = inference
        self.smoother = Smoother(inference.smoothing_frames)
        self.tracker = SightingTracker(
            inference.score_threshold, inference.min_frames, frozenset(inference.ignore_labels)
        )
        self.clock = StageClock(("preprocess", "invoke", "post"))
        self.scanning = False
        self._smoothed: np.ndarray | None = None
        self._confidence: float | None = None

    def process(self, frame: np.ndarray, ts: float, pose: dict[str, Any] | None = None) -> list[Report]:
        clf = self.classifier
        t0 = time.perf_counter()
        clf.preprocessor.from_bgr(frame)
        t1 = time.perf_counter()
        clf.run_model()
        t2 = time.perf_counter()
        scores = clf.output_scores()
        self._confidence = float(scores.max())
        self._smoothed = smoothed = self.smoother.update(scores)
        reports = []
        if self.scanning:
            best = int(smoothed.argmax())
            done = self.tracker.update(clf.labels[best], float(smoothed[best]), ts)
            if done is not None:
                reports.append(sighting_report(done))
        t3 = time.perf_counter()
        for stage, value in (("preprocess", t1 - t0), ("invoke", t2 - t1), ("post", t3 - t2), ("frame", t3 - t0)):
            self.clock.add(stage, value)
        return reports

    def confidence(self) -> float | None:
        """The last frame's top-1 score, unsmoothed (a rollout's canary compares models by it)."""
        return self._confidence

    def top_k(self, k: int) -> list[Prediction]:
        """The smoothed top-``k`` of the last frame (per-frame classification messages)."""
        return [] if self._smoothed is None else self.classifier.predictions(self._smoothed, k)

    def start_scan(self) -> None:
        self.tracker.reset()
        self.smoother.reset()
        self.scanning = True

    def end_scan(self) -> list[Report]:
        done = self.tracker.close()
        self.scanning = False
        return [] if done is None else [sighting_report(done)]

    def counts(self) -> dict[str, Any]:
        return {"counts": dict(sorted(self.tracker.counts.items()))}

    def labels(self) -> list[str]:
        return [lb for lb in self.classifier.labels if lb not in self.inference.ignore_labels]

    def models(self) -> dict[str, dict[str, str]]:
        return {"classifier": self.classifier.bundle.model_id}

    def resize_kernels(self) -> dict[str, str]:
        return {"classifier": self.classifier.preprocessor.resize_kernel}

    def swap(self, classifier: Classifier) -> None:
        """A reloaded model: the open run of frames is dropped, the scan's counts are kept."""
        self.classifier = classifier
        self.smoother.reset()
        self.tracker.current = None


def sighting_report(s: Any) -> Report:
    from edge.messages import rfc3339

    return Report(
        ReportKind.SIGHTING,
        {
            "label": s.label,
            "mean_score": round(s.mean_score, 4),
            "max_score": round(s.max_score, 4),
            "frames": s.frames,
            "first_ts": rfc3339(s.first_ts),
            "last_ts": rfc3339(s.last_ts),
        },
    )
