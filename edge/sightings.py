"""From per-frame scores to sightings and per-scan counts (pure logic, no I/O).

Scores are averaged over the last N frames; a run of at least M consecutive frames whose
smoothed top label is the same and above the threshold is one sighting of that product. A
sighting closes when the label changes or confidence drops, and then counts once.
"""

from __future__ import annotations

from collections import Counter, deque
from dataclasses import dataclass, field

import numpy as np


@dataclass
class Sighting:
    label: str
    first_ts: float
    last_ts: float
    frames: int = 0
    score_sum: float = 0.0
    max_score: float = 0.0

    @property
    def mean_score(self) -> float:
        return self.score_sum / max(self.frames, 1)  # no frame yet: no score either, 0.0

    def add(self, ts: float, score: float) -> None:
        self.last_ts, self.frames = ts, self.frames + 1
        self.score_sum += score
        self.max_score = max(self.max_score, score)


class Smoother:
    """Mean of the last ``n`` score vectors."""

    def __init__(self, n: int) -> None:
        self.window: deque[np.ndarray] = deque(maxlen=n)
        self._sum: np.ndarray | None = None

    def update(self, scores: np.ndarray) -> np.ndarray:
        scores = scores.astype(np.float64)
        if self._sum is None or self._sum.shape != scores.shape:
            self.window.clear()
            self._sum = np.zeros_like(scores)
        if len(self.window) == self.window.maxlen:
            self._sum -= self.window[0]
        self.window.append(scores)
        self._sum += scores
        return self._sum / len(self.window)

    def reset(self) -> None:
        self.window.clear()
        self._sum = None


@dataclass
class SightingTracker:
    threshold: float
    min_frames: int
    ignore: frozenset[str] = frozenset()
    current: Sighting | None = None
    counts: Counter[str] = field(default_factory=Counter)

    def update(self, label: str, score: float, ts: float) -> Sighting | None:
        """Feed one smoothed top-1; returns a sighting when one has just been confirmed and closed."""
        confident = score >= self.threshold and label not in self.ignore
        if self.current is not None and (not confident or label != self.current.label):
            done = self.close()
            if confident:
                self.current = Sighting(label, ts, ts)
                self.current.add(ts, score)
            return done
        if confident:
            if self.current is None:
                self.current = Sighting(label, ts, ts)
            self.current.add(ts, score)
        return None

    def reset(self) -> None:
        """A new scan: no open run, no counts."""
        self.current = None
        self.counts.clear()

    def close(self) -> Sighting | None:
        """End the open run (scan stop, shutdown); it counts if it was long enough."""
        run, self.current = self.current, None
        if run is not None and run.frames >= self.min_frames:
            self.counts[run.label] += 1
            return run
        return None
