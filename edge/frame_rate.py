"""Frames per second over a sliding window: the one rate the agent's stats, its terminal line,
the live page and the metrics endpoint report (an average since start would hide a stall)."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable


class FrameRate:
    """Counts frames as they are done; :meth:`fps` is how many fell in the last ``window_s`` seconds, per second.

    Early on the window is the time since start, so the first figures are not diluted; when frames
    stop, the rate falls to 0 within one window. ``tick`` runs on the inference thread, ``fps`` on any.
    """

    def __init__(self, window_s: float = 10.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.window_s, self.clock = window_s, clock
        self.started = clock()
        self._times: deque[float] = deque(maxlen=4096)

    def tick(self) -> None:
        self._times.append(self.clock())

    def fps(self) -> float:
        now = self.clock()
        recent = sum(1 for t in tuple(self._times) if now - t <= self.window_s)
        return recent / max(min(self.window_s, now - self.started), 1e-9) if recent else 0.0
