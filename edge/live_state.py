"""What the metrics endpoint and the live page read: the agent's state, refreshed on its inference thread.

The pipeline's per-scan state (counts, tracks) belongs to the inference thread, which changes it
on every frame; reading it from a web thread could meet a dict in the middle of a change. So the
inference thread itself copies what the onlookers show, after a frame, and only every
``snapshot_interval_s`` (counts) or only while someone watches the live page (the frame and its
boxes). The frame is kept by reference, never copied or encoded here: the frame loop pays an
append and a few assignments per frame, the web threads pay for drawing and JPEG encoding.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from edge.frame_rate import FrameRate

if TYPE_CHECKING:
    from edge.agent import Agent

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Box:
    """One detection to draw: frame pixels, its label (None: not classified) and score."""

    x0: int
    y0: int
    x1: int
    y1: int
    label: str | None
    score: float


@dataclass(frozen=True)
class LiveFrame:
    """The latest frame (a reference: never written to) and what the pipeline made of it."""

    image: np.ndarray
    ts: float
    index: int  # frames processed before it: tells viewers whether it changed
    boxes: tuple[Box, ...] = ()  # detect_classify: every facing in the frame
    top: tuple[tuple[str, float], ...] = ()  # classify: the smoothed top labels of the whole frame


@dataclass(frozen=True)
class Snapshot:
    """The agent's state as the inference thread last copied it."""

    mode: str = ""
    models: dict[str, dict[str, str]] = field(default_factory=dict)
    scan_id: str | None = None
    counts: dict[str, Any] = field(default_factory=dict)  # the pipeline's counts() (counts, facings, gaps, ...)
    shelfmap: dict[str, Any] | None = None  # detect_classify, while someone watches the live page


class LiveState:
    """Copies of the agent's state for other threads; :meth:`frame_done` is the agent's frame tap."""

    def __init__(
        self,
        agent: Agent,
        snapshot_interval_s: float = 0.5,
        watch_s: float = 5.0,
        fps_window_s: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.agent = agent
        self.snapshot_interval_s, self.watch_s, self.fps_window_s = snapshot_interval_s, watch_s, fps_window_s
        self.clock = clock
        self._rate = FrameRate(fps_window_s, clock)
        self._watched_until = 0.0
        self._last_snapshot = -1e9
        self._last_shelfmap = -1e9
        self._failures = 0
        self.frame: LiveFrame | None = None
        self.snapshot = Snapshot()

    # -- the inference thread -------------------------------------------------------------------
    def frame_done(self, image: np.ndarray, ts: float) -> None:
        """After each processed frame. Never raises: an onlooker must not stop the frame loop."""
        try:
            now = self.clock()
            self._rate.tick()
            if now < self._watched_until:
                self.frame = LiveFrame(image, ts, self.agent.frames_done, *self._overlay())
            if now - self._last_snapshot >= self.snapshot_interval_s:
                self._last_snapshot = now
                self.refresh(now)
        except Exception:  # pragma: no cover - a bug here is logged, never fatal
            self._failures += 1
            if self._failures in (1, 100):
                log.exception("live state update failed")

    def refresh(self, now: float | None = None) -> None:
        """Copy the agent's counts, models and scan (the inference thread, or before it runs)."""
        now = self.clock() if now is None else now
        agent, pipeline = self.agent, self.agent.pipeline
        shelfmap = self.snapshot.shelfmap
        mapper = getattr(pipeline, "shelfmap", None)
        if mapper is not None and now < self._watched_until and now - self._last_shelfmap >= 2.0:
            self._last_shelfmap = now
            shelfmap = mapper()
        scan = agent.scan
        self.snapshot = Snapshot(
            mode=str(pipeline.mode),
            models=pipeline.models(),
            scan_id=None if scan is None else str(scan["scan_id"]),
            counts=pipeline.counts(),
            shelfmap=shelfmap,
        )

    def _overlay(self) -> tuple[tuple[Box, ...], tuple[tuple[str, float], ...]]:
        pipeline = self.agent.pipeline
        last = getattr(pipeline, "last_boxes", None)
        if last is not None:
            xyxy, labels = last
            pairs = zip(np.asarray(xyxy).tolist(), labels, strict=False)
            boxes = tuple(
                Box(int(x0), int(y0), int(x1), int(y1), label, float(score))
                for (x0, y0, x1, y1), (label, score) in pairs
            )
            return boxes, ()
        top_k = getattr(pipeline, "top_k", None)
        if top_k is not None:
            return (), tuple((p.label, float(p.score)) for p in top_k(3))
        return (), ()

    # -- any thread -----------------------------------------------------------------------------
    def watch(self) -> None:
        """Someone has the live page open: keep the latest frame and the shelf map for the next ``watch_s``.

        A frame kept from an earlier visit is forgotten, so the page never opens on an old picture.
        """
        now = self.clock()
        if now >= self._watched_until:
            self.frame = None
        self._watched_until = now + self.watch_s

    def wait_frame(self, timeout: float) -> LiveFrame | None:
        """The latest frame; when there is none yet (the page just opened), wait up to ``timeout`` for one."""
        deadline = time.monotonic() + timeout  # a real wait, whatever clock the state is given
        while self.frame is None and time.monotonic() < deadline:
            time.sleep(0.02)
        return self.frame

    def fps(self) -> float:
        """Frames per second over the last ``fps_window_s`` (0 when no frame came in that time)."""
        return self._rate.fps()
